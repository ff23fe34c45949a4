"""CDLogitsProcessor: CD-greedy against a plain reference loop, and robustness (padding, EOS, beams, reuse)."""

import pytest
import torch
from conftest import tiny_llama_config
from transformers import LlamaForCausalLM, LogitsProcessorList

from hf_stackshape import CDLogitsProcessor, QHeadModel

K, WEIGHT, TEMP = 5, 1.5, 0.7


def _randomise_head(qhead, seed=3, scale=1.0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.normal_(0.0, scale)
    return qhead


def _heads(tiny_lm, other_backbone):
    """(name, qhead) pairs: q head on the base model itself (shared states), q and value heads on another LM."""
    return [
        ("q-shared", _randomise_head(QHeadModel.from_backbone(tiny_lm, head_type="q", rank=8))),
        ("q-own", _randomise_head(QHeadModel.from_backbone(other_backbone, head_type="q", rank=8))),
        ("value", _randomise_head(QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16))),
    ]


@torch.no_grad()
def reference_cd_greedy(base, qhead, ids, steps, k=K, weight=WEIGHT, temperature=TEMP):
    """The textbook CD-greedy loop: full recomputation, one forward per candidate (as the paper's script)."""
    ids = ids.clone()
    for _ in range(steps):
        logp = torch.log_softmax(base(ids).logits[:, -1].float() / temperature, -1)
        top_logp, top_ids = logp.topk(k, -1)
        if qhead.config.head_type == "q":
            values = qhead(ids).value[:, -1].gather(-1, top_ids)
        else:
            values = torch.stack(
                [qhead(torch.cat([ids, top_ids[:, j : j + 1]], 1)).value[:, -1] for j in range(k)], -1
            )
        nxt = top_ids.gather(-1, (top_logp + weight * values).argmax(-1, keepdim=True))
        ids = torch.cat([ids, nxt], 1)
    return ids


def _generate(base, cd, inputs, **kw):
    kw.setdefault("max_new_tokens", 6)
    kw.setdefault("do_sample", False)
    return base.generate(**inputs, logits_processor=LogitsProcessorList([cd]), **kw)


def test_cd_greedy_matches_reference_loop(tokenizer, tiny_lm, other_backbone):
    for name, qhead in _heads(tiny_lm, other_backbone):
        cd = CDLogitsProcessor(qhead, k=K, weight=WEIGHT, temperature=TEMP, base_model=tiny_lm)
        assert cd.share_hidden_states == (name == "q-shared")
        inputs = tokenizer(["The cat sat on the"], return_tensors="pt")
        out = _generate(tiny_lm, cd, inputs, max_new_tokens=8, eos_token_id=None)
        ref = reference_cd_greedy(tiny_lm, qhead, inputs["input_ids"], 8)
        assert torch.equal(out, ref), name
        plain = tiny_lm.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=None)
        if name != "q-shared":  # guidance with random heads of scale 1 changes some token
            assert not torch.equal(out, plain), name


def test_left_padded_batch_equals_rows_alone(tokenizer, tiny_lm, other_backbone):
    prompts = ["Hello there, how are you doing today?", "Hi", "A much longer prompt about the weather in"]
    for name, qhead in _heads(tiny_lm, other_backbone):
        cd = CDLogitsProcessor(qhead, k=K, weight=WEIGHT, temperature=TEMP, base_model=tiny_lm)
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        out = _generate(tiny_lm, cd, batch, eos_token_id=None)
        width = batch["input_ids"].shape[1]
        for i, prompt in enumerate(prompts):
            alone = tokenizer([prompt], return_tensors="pt")
            row = _generate(tiny_lm, cd, alone, eos_token_id=None)  # also reuses the processor across calls
            assert torch.equal(out[i, width:], row[0, alone["input_ids"].shape[1] :]), (name, i)


@pytest.mark.slow
def test_mask_inferred_without_base_model(tokenizer, tiny_lm, other_backbone):
    qhead = _randomise_head(QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16))
    prompts = ["Hello there, how are you doing today?", "Hi"]
    with_base = CDLogitsProcessor(qhead, k=K, base_model=tiny_lm)
    without = CDLogitsProcessor(qhead, k=K, pad_token_id=tokenizer.pad_token_id)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert torch.equal(_generate(tiny_lm, with_base, batch), _generate(tiny_lm, without, batch))


@pytest.mark.slow
def test_num_return_sequences_and_sampling(tokenizer, tiny_lm, other_backbone):
    for name, qhead in _heads(tiny_lm, other_backbone):
        cd = CDLogitsProcessor(qhead, k=K, base_model=tiny_lm)
        batch = tokenizer(["Hello there", "Hi"], return_tensors="pt", padding=True)
        torch.manual_seed(0)
        out = _generate(tiny_lm, cd, batch, do_sample=True, num_return_sequences=3, top_k=0, eos_token_id=None)
        assert out.shape[0] == 6
        width = batch["input_ids"].shape[1]
        # Every sampled token is one of the base model's top-k at the CD temperature (the fused support).
        mask = torch.cat([batch["attention_mask"].repeat_interleave(3, 0), torch.ones_like(out[:, width:])], 1)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ref = tiny_lm(out, attention_mask=mask, position_ids=pos).logits[:, width - 1 : -1]
        topk = ref.topk(K, -1).indices
        new = out[:, width:]
        assert (topk == new.unsqueeze(-1)).any(-1).all(), name


@torch.no_grad()
def _fresh_values(qhead, ids, mask, candidates):
    """Candidate values recomputed from scratch on the full (left-padded) rows: no cache at all."""
    if qhead.config.head_type == "q":
        return qhead(ids, attention_mask=mask).value[:, -1].gather(-1, candidates)
    ones = torch.ones_like(mask[:, :1])
    return torch.stack(
        [qhead(torch.cat([ids, candidates[:, j : j + 1]], 1), attention_mask=torch.cat([mask, ones], 1)).value[:, -1]
         for j in range(candidates.shape[1])], -1)


@pytest.mark.slow
def test_beam_search_values_follow_reordered_rows(tokenizer, tiny_lm, other_backbone):
    """With beams, rows are reordered every step: the cached backbone state must follow them."""
    for name, qhead in _heads(tiny_lm, other_backbone):
        checks = []

        class Checked(CDLogitsProcessor):
            def candidate_values(self, input_ids, candidates):
                values = super().candidate_values(input_ids, candidates)
                ref = _fresh_values(self.qhead, input_ids, self._attention_mask(input_ids), candidates)
                checks.append(float((values - ref).abs().max()))
                return values

        cd = Checked(qhead, k=K, base_model=tiny_lm)
        batch = tokenizer(["Hello there", "Hi"], return_tensors="pt", padding=True)
        _generate(tiny_lm, cd, batch, num_beams=3, eos_token_id=None)
        assert len(checks) == 6 and max(checks) < 1e-4, (name, checks)
        if cd.prefix_cache is not None:
            assert cd.prefix_cache.stats["reordered"] > 0, name


def test_eos_rows_finish_and_are_padded(tokenizer, tiny_lm, other_backbone):
    qhead = _randomise_head(QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16))
    batch = tokenizer(["Hello there", "Hi"], return_tensors="pt", padding=True)
    cd = CDLogitsProcessor(qhead, k=K, base_model=tiny_lm)
    free = _generate(tiny_lm, cd, batch, eos_token_id=None, max_new_tokens=6)
    width = batch["input_ids"].shape[1]
    eos = int(free[0, width + 1])  # row 0's second token plays EOS: row 0 stops there, row 1 goes on
    out = _generate(tiny_lm, cd, batch, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, max_new_tokens=6)
    assert torch.equal(out[0, : width + 2], free[0, : width + 2])
    assert (out[0, width + 2 :] == tokenizer.pad_token_id).all()
    stop = (free[1, width:] == eos).nonzero()
    end = width + (int(stop[0]) + 1 if len(stop) else free.shape[1] - width)
    assert torch.equal(out[1, :end], free[1, :end])


def test_validation_errors(tokenizer, tiny_lm, other_backbone):
    qhead = QHeadModel.from_backbone(other_backbone, head_type="q", rank=4)
    with pytest.raises(ValueError, match="lambda"):
        CDLogitsProcessor(qhead, weight=-1.0)
    with pytest.raises(ValueError, match="`k`"):
        CDLogitsProcessor(qhead, k=0)
    with pytest.raises(ValueError, match="temperature"):
        CDLogitsProcessor(qhead, temperature=0.0)
    small = LlamaForCausalLM(tiny_llama_config(100)).eval()
    wrong = QHeadModel.from_backbone(small, head_type="q", rank=4)
    with pytest.raises(ValueError, match="vocabulary"):
        CDLogitsProcessor(wrong, base_model=tiny_lm)
    with pytest.raises(ValueError, match="vocabulary"):
        CDLogitsProcessor(wrong, tokenizer=tokenizer)
    headless = QHeadModel(qhead.config)
    with pytest.raises(ValueError, match="backbone"):
        CDLogitsProcessor(headless)
    with pytest.raises(ValueError, match="q head"):
        CDLogitsProcessor(QHeadModel.from_backbone(tiny_lm, head_type="value"), base_model=tiny_lm, share_hidden_states=True)
