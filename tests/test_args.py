"""ARGS / SRS-ARGS inside ``model.generate`` against a plain reference loop written here.

The reference re-scores every candidate from text -- ``rm.score([prompt] * k, [decode(response + [v])])``,
a full re-encode without any cache -- and picks ``argmax(score + w * shaped)``. To make decode -> re-encode
the identity (so the text reference and the cached token-level fast path read the same tokens), the base
model is restricted to a whitelist of whole-word tokens (plus EOS) by a processor that runs before ARGS.
"""

import math

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from hf_stackshape import ARGSLogitsProcessor, CallableReward, HFRewardModel
from hf_stackshape.guidance import PrefixKVCache

WORDS = [" the", " cat", " dog", " sat", " on", " mat", " and", " a", " big", " red", " sun", " is", " it",
         " we", " go", " run", " fun", " day", " blue", " sky"]
PROMPTS = ["Tell me a story about a cat and a dog.", "Hi", "What is the sky?"]


def whole_word_ids(tokenizer):
    ids = []
    for word in WORDS:
        enc = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(enc) == 1:
            ids.append(enc[0])
    assert len(ids) >= 10
    return ids


class AllowOnly(LogitsProcessor):
    """Keeps only the given token ids (and can force EOS for one row at one step)."""

    def __init__(self, ids, eos=None, force_eos=None):
        self.ids = torch.tensor(ids)
        self.eos = eos
        self.force_eos = force_eos  # (row, number of generated tokens) -> EOS

    def restrict(self, scores, n_generated=None, row=None):
        out = torch.full_like(scores, -math.inf)
        out[..., self.ids] = scores[..., self.ids]
        if self.force_eos is not None and n_generated == self.force_eos[1] and row == self.force_eos[0]:
            out[..., :] = -math.inf
            out[..., self.eos] = 0.0
        return out

    def __call__(self, input_ids, scores):
        rows = [self.restrict(scores[i], input_ids.shape[1] - self.prompt_len, i) for i in range(len(scores))]
        return torch.stack(rows)


class Recorder(LogitsProcessor):
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, input_ids, scores):
        out = self.inner(input_ids, scores)
        self.calls.append((input_ids.clone(), scores.clone(), out.clone()))
        return out


def reference_step(rm, tokenizer, prompt, response, scores, k, weight, transform, threshold=None):
    """Candidates and fused scores for one row, by full text re-scoring (no cache)."""
    top = scores.topk(k)
    valid = torch.isfinite(top.values)
    texts = [tokenizer.decode(response + [v], skip_special_tokens=True) for v in top.indices.tolist()]
    rewards = rm.score([prompt] * k, texts)
    thr = None if threshold is None else torch.tensor([threshold])
    shaped = transform(rewards[None], weights=torch.softmax(top.values, -1)[None], mask=valid[None], threshold=thr)[0]
    fused = torch.where(valid, top.values + weight * shaped, torch.full_like(top.values, -math.inf))
    return top.indices, fused


def reference_greedy(lm, rm, tokenizer, allow, prompts, k, weight, transform, steps):
    eos = tokenizer.eos_token_id
    outs = []
    for row, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        response = []
        for _ in range(steps):
            with torch.no_grad():
                logits = lm(torch.tensor([ids + response])).logits[0, -1]
            scores = allow.restrict(logits, len(response), row)
            cands, fused = reference_step(rm, tokenizer, prompt, response, scores, k, weight, transform)
            response.append(int(cands[fused.argmax()]))
            if response[-1] == eos:
                break
        outs.append(response + [tokenizer.pad_token_id] * (steps - len(response)))
    return outs


def run_generate(lm, tokenizer, proc, allow, prompts, steps, **kwargs):
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    allow.prompt_len = inputs["input_ids"].shape[1]
    out = lm.generate(**inputs, logits_processor=LogitsProcessorList([allow, proc]), max_new_tokens=steps,
                      min_new_tokens=0, **kwargs)
    return out[:, inputs["input_ids"].shape[1]:]


def pad_to(rows, steps, pad):
    return [list(r) + [pad] * (steps - len(r)) for r in rows]


# ---------------------------------------------------------------------------------------------------


def test_validation_errors(tokenizer, reward):
    from transformers import LlamaForSequenceClassification

    from conftest import tiny_llama_config

    rm = reward
    with pytest.raises(ValueError, match="`k`"):
        ARGSLogitsProcessor(rm, k=0)
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        ARGSLogitsProcessor(rm, k=len(tokenizer) + 1)
    with pytest.raises(ValueError, match="lambda"):
        ARGSLogitsProcessor(rm, weight=-0.5)
    with pytest.raises(ValueError, match="Unknown reward transform"):
        ARGSLogitsProcessor(rm, transform="bogus")
    two = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=2)).eval()
    with pytest.raises(ValueError, match="num_labels"):
        ARGSLogitsProcessor((two, tokenizer))
    with pytest.raises(ValueError, match="tokenizer="):
        ARGSLogitsProcessor(CallableReward(len))
    with pytest.raises(ValueError, match="use_cache=True"):
        ARGSLogitsProcessor(CallableReward(len), tokenizer=tokenizer, use_cache=True)


@pytest.mark.parametrize(
    "transform,chat",
    [("raw", True), pytest.param("srs", True, marks=pytest.mark.slow), ("srs", False)],
)
def test_greedy_matches_reference_loop(tokenizer, tiny_lm, reward, transform, chat):
    """Batched, left-padded ARGS-greedy == the per-prompt reference loop, token for token (fast path)."""
    rm = HFRewardModel(reward.model, tokenizer, use_chat_template=chat)
    k, weight, steps = 4, 2.0, 6
    allow = AllowOnly(whole_word_ids(tokenizer) + [tokenizer.eos_token_id])
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform=transform)
    got = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, steps, do_sample=False)
    assert proc.uses_fast_path and proc.prefix_cache.stats["rebuilt"] == 0
    # The chosen candidate's KV is appended from the scoring forward, not recomputed, on most steps.
    assert proc.prefix_cache.stats["recycled"] >= 1
    ref = reference_greedy(tiny_lm, rm, tokenizer, allow, PROMPTS, k, weight, proc.transform, steps)
    assert pad_to(got.tolist(), steps, tokenizer.pad_token_id) == ref
    # The guidance matters: plain greedy under the same whitelist differs for some prompt.
    plain = run_generate(tiny_lm, tokenizer, ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=0.0),
                         allow, PROMPTS, steps, do_sample=False)
    assert plain.tolist() != got.tolist()


def test_eos_rows_stop_and_are_not_scored(tokenizer, tiny_lm, reward):
    rm = reward
    k, weight, steps = 3, 1.0, 5
    eos = tokenizer.eos_token_id
    allow = AllowOnly(whole_word_ids(tokenizer), eos=eos, force_eos=(1, 2))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="raw")
    rows_seen = []
    hook = rm.model.model.register_forward_pre_hook(lambda m, a, kw: rows_seen.append(kw["input_ids"].shape[0]),
                                                         with_kwargs=True)
    try:
        got = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, steps, do_sample=False)
    finally:
        hook.remove()
    assert got[1, 2].item() == eos and set(got[1, 3:].tolist()) == {tokenizer.pad_token_id}
    # Rows 0 and 2 are scored at every step; row 1 stops being scored once it ended.
    assert rows_seen == [3, 3, 3, 2, 2]
    assert proc.prefix_cache.batch_size == 2
    ref = reference_greedy(tiny_lm, rm, tokenizer, allow, PROMPTS, k, weight, proc.transform, steps)
    assert got.tolist() == ref


def test_cache_is_not_duplicated_per_candidate(tokenizer, tiny_lm, reward):
    rm = reward
    allow = AllowOnly(whole_word_ids(tokenizer))
    shapes = {}
    for k in (2, 8):
        proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=1.0)
        run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, 3, do_sample=False)
        cache = proc.prefix_cache
        head_len = proc._scorer.head_ids.shape[1]
        shapes[k] = tuple(cache.cache.layers[0].keys.shape)
        assert cache.batch_size == len(PROMPTS)
        # Only the accepted prefix stays cached: RM head + 2 committed tokens (the 3rd is never fed back).
        assert cache.seq_length == head_len + 2
        # Memory on the books: 2 (K, V) x layers x kv heads x head dim x 4 bytes per cached column and row.
        config = rm.model.config
        per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (config.hidden_size // config.num_attention_heads) * 4
        assert cache.bytes_per_token() == per_token
        assert cache.nbytes == len(PROMPTS) * (head_len + 2) * per_token
        assert cache.bytes_per_row == (head_len + 2) * per_token
        # The peak also held the k candidate groups of the last step (1 candidate token each: no chat tail).
        groups = k * (1 + len(proc._scorer.tail_ids))
        assert cache.peak_nbytes == len(PROMPTS) * (head_len + 2 + groups) * per_token
    assert shapes[2] == shapes[8] and shapes[2][0] == len(PROMPTS)


def _replay(calls, rm, tokenizer, proc, prompts, k, weight, thresholds=None, rows_per_prompt=1):
    """Every step of every unfinished row equals the single-row text reference."""
    prompt_len = calls[0][0].shape[1]
    checked = 0
    for input_ids, scores_in, scores_out in calls:
        for row in range(input_ids.shape[0]):
            response = input_ids[row, prompt_len:].tolist()
            if tokenizer.eos_token_id in response:
                continue
            p = row // rows_per_prompt
            thr = None if thresholds is None else float(thresholds[p])
            cands, fused = reference_step(rm, tokenizer, prompts[p], response, scores_in[row], k, weight,
                                          proc.transform, thr)
            torch.testing.assert_close(scores_out[row, cands], fused, atol=1e-4, rtol=1e-4)
            assert int(torch.isfinite(scores_out[row]).sum()) == int(torch.isfinite(fused).sum())
            checked += 1
    return checked


@pytest.mark.slow
def test_beam_search_and_num_return_sequences(tokenizer, tiny_lm, reward):
    rm = reward
    k, weight, steps, beams = 3, 1.0, 4, 3
    # Per-prompt m*(x) near the rewards themselves, so the sigmoid is not flat.
    thresholds = rm.score(PROMPTS, [" the cat sat", " a big dog", " we go"]) + torch.tensor([0.05, -0.02, 0.0])
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="srs", thresholds=thresholds)
    rec = Recorder(proc)
    got = run_generate(tiny_lm, tokenizer, rec, allow, PROMPTS, steps, num_beams=beams, num_return_sequences=2,
                       do_sample=False)
    assert proc.uses_fast_path
    assert proc.prefix_cache.stats["reordered"] > 0  # beams did move between rows
    assert _replay(rec.calls, rm, tokenizer, proc, PROMPTS, k, weight, thresholds, rows_per_prompt=beams) > 0
    # Each prompt alone gives the same beams.
    for i, prompt in enumerate(PROMPTS):
        alone = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="srs",
                                    thresholds=thresholds[i : i + 1])
        one = run_generate(tiny_lm, tokenizer, alone, allow, [prompt], steps, num_beams=beams,
                           num_return_sequences=2, do_sample=False)
        assert one.tolist() == got[2 * i : 2 * i + 2, : one.shape[1]].tolist()

    # num_return_sequences with ARGS-stochastic: every sampled row, every step, against the reference.
    torch.manual_seed(0)
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="srs")
    rec = Recorder(proc)
    run_generate(tiny_lm, tokenizer, rec, allow, PROMPTS[:2], steps, do_sample=True, num_return_sequences=3)
    assert _replay(rec.calls, rm, tokenizer, proc, PROMPTS[:2], k, weight, rows_per_prompt=3) == 2 * 3 * steps


def test_reuse_across_generate_calls(tokenizer, tiny_lm, reward):
    rm = reward
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=3, weight=1.0)
    first = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, 3, do_sample=False)
    second = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS[1:], 3, do_sample=False)
    again = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, 3, do_sample=False)
    fresh = run_generate(tiny_lm, tokenizer, ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=3, weight=1.0), allow,
                         PROMPTS[1:], 3, do_sample=False)
    assert second.tolist() == fresh.tolist() and again.tolist() == first.tolist()
    # Explicit per-call inputs are bound to their generate call.
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    bound = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=3, weight=1.0).set_prompt(inputs, prompts=PROMPTS)
    run_generate(tiny_lm, tokenizer, bound, allow, PROMPTS, 2, do_sample=False)
    with pytest.raises(ValueError, match="set_prompt"):
        run_generate(tiny_lm, tokenizer, bound, allow, PROMPTS[1:], 2, do_sample=False)


@pytest.mark.slow
def test_explicit_prompts_are_what_the_rm_reads(tokenizer, tiny_lm, reward):
    """A chat-formatted base input with `prompts=` scores like the reference on the raw prompts."""
    rm = reward
    k, weight, steps = 3, 1.0, 3
    chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS[:2]]
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, prompts=PROMPTS[:2])
    rec = Recorder(proc)
    run_generate(tiny_lm, tokenizer, rec, allow, chats, steps, do_sample=False)
    assert _replay(rec.calls, rm, tokenizer, proc, PROMPTS[:2], k, weight) == 2 * steps


def test_text_fallback_with_callable_reward(tokenizer, tiny_lm):
    def letters(prompt, response):
        return float(sum(ch in "aeiou" for ch in response)) - 0.1 * len(response)

    rm = CallableReward(letters)
    k, weight, steps = 4, 3.0, 5
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="raw")
    assert proc.prefix_cache is None
    got = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS, steps, do_sample=False)
    assert not proc.uses_fast_path
    ref = reference_greedy(tiny_lm, rm, tokenizer, allow, PROMPTS, k, weight, proc.transform, steps)
    assert got.tolist() == ref


def test_fast_path_equals_text_path_with_chat_template(tokenizer, reward):
    """Same processor call, cached token path vs text re-scoring, on a natural-text response with EOS."""
    rm = reward
    assert rm.use_chat_template
    prompt_ids = tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)["input_ids"]
    response = tokenizer([" Once upon a time, there was a cat.", " The sky is blue"], return_tensors="pt",
                         padding=True, padding_side="right")["input_ids"]
    words = whole_word_ids(tokenizer)[:5] + [tokenizer.eos_token_id]
    torch.manual_seed(0)
    scores = torch.randn(2, len(tokenizer)) - 20
    scores[:, words] = torch.randn(2, len(words))
    fast = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=6, weight=1.0, transform="raw", use_cache=True)
    slow = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=6, weight=1.0, transform="raw", use_cache=False)
    for length in range(0, 5):  # grow the response token by token, as generate does
        ids = torch.cat([prompt_ids, response[:, :length]], dim=1)
        out_fast, out_slow = fast(ids, scores), slow(ids, scores)
        torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=1e-5)
        assert fast.uses_fast_path and not slow.uses_fast_path
    assert fast.prefix_cache.stats == {"reused": 4, "reordered": 0, "rebuilt": 0, "recycled": 0}


def test_prefix_kv_cache_reorders_and_rebuilds():
    """The helper alone: reorder on permuted rows, rebuild on unknown history, dropped tokens invisible."""
    from transformers import LlamaForSequenceClassification

    from conftest import tiny_llama_config

    torch.manual_seed(0)
    model = LlamaForSequenceClassification(tiny_llama_config(64, num_labels=1, pad_token_id=0)).eval()
    cache = PrefixKVCache(model, readout_skip_ids=[0])

    def full(tokens):
        with torch.no_grad():
            return model(torch.tensor([[t for t in tokens if t != 0]])).logits[0, 0]

    def check(prefix, cands):
        mask = prefix != 0
        states = cache.score_candidates(prefix, mask, cands, cands != 0)
        got = model.score(states.hidden)[..., 0]
        want = torch.stack([torch.stack([full(p.tolist() + c.tolist()) for c in cs]) for p, cs in zip(prefix, cands)])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    tail = [7, 8]
    cands = lambda n: torch.tensor([[[v] + tail for v in (10, 11, 0)]] * n)  # 0 = a dropped candidate
    check(torch.tensor([[0, 5, 6], [4, 5, 6]]), cands(2))
    check(torch.tensor([[0, 5, 6, 9], [4, 5, 6, 12]]), cands(2))
    assert cache.stats["reused"] == 1
    check(torch.tensor([[4, 5, 6, 12, 1], [0, 5, 6, 9, 2], [4, 5, 6, 12, 3]]), cands(3))  # beams reordered
    assert cache.stats["reordered"] == 1 and cache.batch_size == 3
    check(torch.tensor([[3, 3, 3, 3, 3, 3]]), cands(1))  # unknown history
    assert cache.stats["rebuilt"] == 1 and cache.batch_size == 1


@pytest.mark.slow
def test_greedy_matches_reference_with_smollm2_backbone_rm(tokenizer, tiny_lm, smollm2):
    from hf_stackshape.benchmarks.args import reward_model_from_lm

    rm = reward_model_from_lm(smollm2[0], tokenizer, seed=0)
    k, weight, steps = 3, 1.0, 2
    allow = AllowOnly(whole_word_ids(tokenizer))
    for transform in ("raw", "srs"):
        proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform=transform)
        got = run_generate(tiny_lm, tokenizer, proc, allow, PROMPTS[:2], steps, do_sample=False)
        assert proc.uses_fast_path
        ref = reference_greedy(tiny_lm, rm, tokenizer, allow, PROMPTS[:2], k, weight, proc.transform, steps)
        assert got.tolist() == ref
