"""Half precision on the CPU: the fast paths in bf16 / fp16 against reference loops written here, attention
implementations, and what cannot work failing clearly. (tests/test_gpu.py repeats the device-dependent parts
on CUDA.)

**The tie tolerance.** In half precision the fast ARGS path (a cached prefix, k candidate groups behind a 4D
mask, ARGS: Khanov et al. 2024; SRS: Wang et al. 2026) and the reference (each candidate's full text re-scored by
the reward model) compute the same reward with different kernels: the sums are rounded in another order, so the
last bit of the hidden states differs, and the reward -- a half-precision number out of the score head -- can
land on a neighbouring representable value. The spacing of those values is at most ``eps = finfo(dtype).eps``
relative to the value (bf16: 8 significant bits, eps = 2^-7; fp16: 11 bits, eps = 2^-10). So we allow each reward
to differ by two such spacings at the step's reward scale, ``tol = 2 * eps * max|r|`` (measured: one spacing, 0.25
at rewards near 46 in bf16; 0 with eager attention). Two candidates whose rewards are that close are a tie the
dtype cannot break: either may be picked, so the check on the choice is that the picked candidate's reference
score is within ``2 * weight * tol`` of the best one, not that it is the reference's argmax.
"""

import math

import pytest
import torch

from hf_stackshape import ARGSLogitsProcessor, CDLogitsProcessor, HFRewardModel, StackelbergBestOfN
from hf_stackshape.qhead.modeling_qhead import QHeadModel
from test_args import PROMPTS, AllowOnly, Recorder, run_generate, whole_word_ids

HALF = [torch.bfloat16, torch.float16]


def tie_tolerance(dtype, values):
    return 2 * torch.finfo(dtype).eps * float(values.abs().max())


def half(model, dtype, attn):
    model = model.to(dtype)
    model.set_attn_implementation(attn)
    return model


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_fast_args_matches_the_reference_loop_in_half_precision(tokenizer, tiny_lm, tiny_rm_model, dtype, attn):
    with torch.no_grad():
        tiny_rm_model.score.weight.mul_(30.0)  # rewards of order 5: they decide among the whole-word candidates
    lm, rm = half(tiny_lm, dtype, attn), HFRewardModel(half(tiny_rm_model, dtype, attn), tokenizer)
    k, weight = 6, 1.0
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = Recorder(ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=k, weight=weight, transform="raw", use_cache=True))
    out = run_generate(lm, tokenizer, proc, allow, PROMPTS, 6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert proc.inner.prefix_cache.stats["reused"] + proc.inner.prefix_cache.stats["recycled"] > 0  # the fast path ran
    prompt_len = proc.calls[0][0].shape[1]
    checked = 0
    for step, (ids, scores_in, scores_out) in enumerate(proc.calls):
        for row in range(ids.shape[0]):
            response = ids[row, prompt_len:].tolist()
            top = scores_in[row].topk(k)
            fast = (scores_out[row, top.indices] - top.values) / weight
            assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
            texts = [tokenizer.decode(response + [v], skip_special_tokens=True) for v in top.indices.tolist()]
            ref = rm.score([PROMPTS[row]] * k, texts)
            tol = tie_tolerance(dtype, ref)
            assert (fast - ref).abs().max() <= tol, (step, row, fast, ref)
            picked = int(out[row, step])
            fused_ref = top.values + weight * ref
            assert fused_ref[top.indices.tolist().index(picked)] >= fused_ref.max() - 2 * weight * tol
            checked += 1
    assert checked == len(PROMPTS) * 6


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_cd_value_head_matches_a_full_forward_in_half_precision(tokenizer, tiny_lm, other_backbone, dtype):
    lm, backbone = half(tiny_lm, dtype, "sdpa"), half(other_backbone, dtype, "sdpa")
    head = QHeadModel.from_backbone(backbone, head_type="value").eval()
    k, weight, temperature = 6, 1.5, 0.7
    allow = AllowOnly(whole_word_ids(tokenizer))
    proc = Recorder(CDLogitsProcessor(head, k=k, weight=weight, temperature=temperature, base_model=lm))
    run_generate(lm, tokenizer, proc, allow, PROMPTS, 4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    for ids, scores_in, scores_out in proc.calls:
        for row in range(ids.shape[0]):
            top = torch.log_softmax(scores_in[row].float() / temperature, -1).topk(k)
            fast = (scores_out[row, top.indices] - top.values) / weight
            prefix = ids[row][(ids[row] != tokenizer.pad_token_id).long().cummax(-1).values.bool()].tolist()
            with torch.no_grad():
                ref = torch.stack([head(input_ids=torch.tensor([prefix + [c]])).value[0, -1].float()
                                   for c in top.indices.tolist()])
            assert (fast - ref).abs().max() <= tie_tolerance(dtype, ref), (fast, ref)


def test_cd_q_head_on_shared_bf16_states_equals_its_own_pass(tokenizer, tiny_lm):
    lm = half(tiny_lm, torch.bfloat16, "sdpa")
    head = QHeadModel.from_backbone(lm, head_type="q").eval()
    allow = AllowOnly(whole_word_ids(tokenizer))
    runs = {}
    for shared in (True, False):
        proc = Recorder(CDLogitsProcessor(head, k=5, weight=1.5, base_model=lm, share_hidden_states=shared))
        runs[shared] = run_generate(lm, tokenizer, proc, allow, PROMPTS, 4, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        proc.inner.close()
    assert torch.equal(runs[True], runs[False])


def test_rewards_are_float32_before_the_threshold_math(tokenizer, tiny_lm, tiny_rm_model):
    """bf16 models: the reward model returns float32 (its bf16 logits up-cast), best-of-N and the calibrator shape
    float32 / float64 numbers, and the selected response is the one the float32 rewards pick."""
    from hf_stackshape import ThresholdCalibrator

    lm = half(tiny_lm, torch.bfloat16, "sdpa")
    rm = HFRewardModel(half(tiny_rm_model, torch.bfloat16, "sdpa"), tokenizer)
    rewards = rm.score(["Hi", "Hi"], ["Hello there", "Go away"])
    assert rewards.dtype == torch.float32
    bon = StackelbergBestOfN(lm, tokenizer, rm, n=3, transform="raw", selection="argmax", max_new_tokens=3,
                             batch_size=2, show_progress=False)
    out = bon.generate(PROMPTS[:2], return_candidates=True)
    assert out.rewards.dtype == torch.float32
    expected = rm.score([p for p in PROMPTS[:2] for _ in range(3)], [c for g in out.candidates for c in g]).view(2, 3)
    torch.testing.assert_close(out.rewards, expected, rtol=0, atol=tie_tolerance(torch.bfloat16, expected))
    for i, group in enumerate(out.candidates):
        assert out.responses[i] == group[int(out.rewards[i].argmax())]
    calibrator = ThresholdCalibrator(lm, tokenizer, rm, num_samples=3, max_new_tokens=3, chunk_size=2,
                                     show_progress=False)
    table = calibrator.calibrate(PROMPTS[:2])
    assert all(math.isfinite(t) for t in table["threshold"])
    scored = torch.tensor(table["rewards"])
    texts = [r for row in table["responses"] for r in row]
    expected = rm.score([p for p in PROMPTS[:2] for _ in range(3)], texts).view(2, 3)
    torch.testing.assert_close(scored, expected, rtol=0, atol=tie_tolerance(torch.bfloat16, expected))


# ------------------------------------------------------------------------------------------- attention


def _flash(model):
    # No flash-attn on this machine: set the implementation the way a loaded model with it would report it.
    model.config._attn_implementation = "flash_attention_2"
    return model


def test_flash_attention_fails_clearly_where_the_4d_mask_is_needed(tokenizer, tiny_rm_model, other_backbone):
    rm = HFRewardModel(_flash(tiny_rm_model), tokenizer)
    with pytest.raises(ValueError, match="flash_attention_2.*sdpa"):
        ARGSLogitsProcessor(rm, tokenizer=tokenizer, use_cache=True)
    # Without use_cache=True ARGS scores the candidates as text: correct with any attention (logged once).
    assert ARGSLogitsProcessor(rm, tokenizer=tokenizer).prefix_cache is None
    assert "flash_attention_2" in rm.shared_prefix_unsupported()  # score_grouped scores pair by pair
    head = QHeadModel.from_backbone(_flash(other_backbone), head_type="value")
    with pytest.raises(ValueError, match="flash_attention_2.*sdpa"):
        CDLogitsProcessor(head, k=3)
