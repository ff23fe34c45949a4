"""Every logits processor we ship leaves the ``scores`` (and ``input_ids``) it is given untouched and returns a
new tensor, as transformers' own processors do: a processor later in the list, or the caller, may still read
the raw logits. Checked inside real ``generate`` calls (tiny models) and by direct calls on the edge paths."""

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from test_args import PROMPTS

from hf_stackshape import ARGSLogitsProcessor, CallableReward, CDLogitsProcessor, QHeadModel
from hf_stackshape.utils.sampling import KeyedSampler

pytestmark = pytest.mark.usefixtures("one_thread")


class _Snapshot(LogitsProcessor):
    """Placed just before the processor under test: remembers the tensors it passes on, and a copy of them."""

    def __call__(self, input_ids, scores):
        self.ids, self.ids_copy = input_ids, input_ids.clone()
        self.scores, self.scores_copy = scores, scores.clone()
        return scores


class _Check(LogitsProcessor):
    """Placed just after it: the tensors the processor was given still hold what they held before the call."""

    def __init__(self, snapshot):
        self.snapshot, self.steps, self.problems = snapshot, 0, []

    def __call__(self, input_ids, scores):
        snap = self.snapshot
        self.steps += 1
        if not torch.equal(snap.scores, snap.scores_copy):
            self.problems.append(f"step {self.steps}: the input scores were modified in place")
        if not torch.equal(snap.ids, snap.ids_copy):
            self.problems.append(f"step {self.steps}: input_ids were modified in place")
        if scores.data_ptr() == snap.scores.data_ptr():
            self.problems.append(f"step {self.steps}: returned the input scores tensor itself")
        return scores


def _generate_checked(model, tokenizer, proc, **kwargs):
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    snapshot = _Snapshot()
    check = _Check(snapshot)
    kwargs = {"max_new_tokens": 3, "do_sample": False, **kwargs}
    model.generate(**inputs, logits_processor=LogitsProcessorList([snapshot, proc, check]), **kwargs)
    assert check.steps == kwargs["max_new_tokens"]
    assert check.problems == []


def _direct_checked(proc, input_ids, scores):
    before_ids, before = input_ids.clone(), scores.clone()
    out = proc(input_ids, scores)
    assert torch.equal(scores, before), "the input scores were modified in place"
    assert torch.equal(input_ids, before_ids), "input_ids were modified in place"
    assert out.data_ptr() != scores.data_ptr()
    return out


@pytest.mark.parametrize(
    "settings, fast",
    [
        (dict(), True),  # the cached fast path
        (dict(use_cache=False), False),  # the naive path: candidates scored as text
        (dict(rm_input="raw", use_cache=False), False),  # raw ids through the reward model, no cache
        (dict(temperature=0.7, transform="raw"), True),
    ],
    ids=["fast", "naive-text", "naive-raw", "fast-temperature"],
)
def test_args_leaves_scores_untouched(tokenizer, tiny_lm, reward, settings, fast):
    with ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0, **settings) as proc:
        _generate_checked(tiny_lm, tokenizer, proc)
        assert proc.uses_fast_path is fast and proc.steps == 3


def test_args_text_reward_and_beam_search_leave_scores_untouched(tokenizer, tiny_lm):
    length = CallableReward(lambda response: float(len(response)))
    with ARGSLogitsProcessor(length, tokenizer=tokenizer, k=3, weight=0.5) as proc:
        _generate_checked(tiny_lm, tokenizer, proc, num_beams=2)


def test_args_edge_paths_leave_scores_untouched(tokenizer, reward):
    """Called directly: a padded vocabulary (wider scores than the tokenizer), then a finished row and a row
    whose scores are all -inf (the paths that copy rows of the input)."""
    inputs = tokenizer(PROMPTS[:3], return_tensors="pt", padding=True)
    ids = inputs["input_ids"]
    torch.manual_seed(0)
    proc = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    _direct_checked(proc, ids, torch.randn(3, len(tokenizer) + 8))
    step = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id], [17], [18]])], dim=1)
    scores = torch.randn(3, len(tokenizer) + 8)
    scores[2] = -float("inf")
    _direct_checked(proc, step, scores)
    assert proc.steps == 2 and proc.prompt_length == ids.shape[1]
    # The same without a pad token (finished rows then keep their scores).
    nopad = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0, use_cache=False)
    nopad.pad_token_id = None
    _direct_checked(nopad, ids, torch.randn(3, len(tokenizer)))
    _direct_checked(nopad, step, scores[:, : len(tokenizer)].clone())


def _cd_heads(tiny_lm, other_backbone):
    def randomised(qhead):
        torch.manual_seed(3)
        with torch.no_grad():
            for p in qhead.head.parameters():
                p.normal_(0.0, 1.0)
        return qhead

    return {
        "q-shared": randomised(QHeadModel.from_backbone(tiny_lm, head_type="q", rank=8)),
        "q-own": randomised(QHeadModel.from_backbone(other_backbone, head_type="q", rank=8)),
        "value": randomised(QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16)),
    }


@pytest.mark.parametrize("mode", ["q-shared", "q-own", "value"])
def test_cd_leaves_scores_untouched(tokenizer, tiny_lm, other_backbone, mode):
    qhead = _cd_heads(tiny_lm, other_backbone)[mode]
    with CDLogitsProcessor(qhead, k=3, weight=1.5, temperature=0.7, base_model=tiny_lm) as cd:
        assert cd.share_hidden_states == (mode == "q-shared")
        _generate_checked(tiny_lm, tokenizer, cd)
        _generate_checked(tiny_lm, tokenizer, cd, num_beams=2)


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(temperature=0.7, top_k=5, top_p=0.9), dict(temperature=1.3, min_p=0.05)],
    ids=["plain", "temperature-top_k-top_p", "min_p"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keyed_sampler_leaves_scores_untouched(tokenizer, tiny_lm, settings, dtype):
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (3, 5))
    sampler = KeyedSampler([1, 2, 3], **settings)
    for _ in range(2):
        out = _direct_checked(sampler, ids, torch.randn(3, 50).to(dtype))
        assert (out == 0).sum(-1).tolist() == [1, 1, 1]
    _generate_checked(tiny_lm, tokenizer, KeyedSampler([4, 5, 6, 7][: len(PROMPTS)], **settings))
