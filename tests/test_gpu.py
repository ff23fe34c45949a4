"""What only a GPU can show (marker ``gpu``; skipped without CUDA): the fast paths in bf16 / fp16 on CUDA against
reference computations, attention implementations, models on different devices, a batch that really runs out of
memory, and the CUDA peak. ``scripts/device_check.sh`` runs this file with the device check in one call.

Models are tiny random Llamas built from configs (nothing to download); the tokenizer comes from
``$STACKSHAPE_TEST_TOKENIZER`` / ``$TOKENIZER_DIR``, else the cached SmolLM2 one, else a byte-level tokenizer built
in memory (:func:`hf_stackshape.benchmarks.device.load_tokenizer`). The tie tolerance is the one justified in
tests/test_half_precision.py: two spacings of the dtype at the step's reward scale.
"""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run scripts/device_check.sh on a GPU)"),
]

HALF = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def tok():
    from hf_stackshape.benchmarks.device import load_tokenizer

    return load_tokenizer()[0]


def models(tok, dtype, attn="sdpa", device="cuda", rm_device=None, shape="tiny", reward_scale=30.0):
    from hf_stackshape.benchmarks.device import build_models

    policy, reward = build_models(shape, tok, torch.device(device), dtype, attn,
                                  rm_device=None if rm_device is None else torch.device(rm_device))
    with torch.no_grad():
        reward.model.score.weight.mul_(reward_scale)  # rewards that move ARGS's choices
    return policy, reward


def tie_tolerance(dtype, values):
    return 2 * torch.finfo(dtype).eps * float(values.abs().max())


class Recorder:
    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, input_ids, scores):
        out = self.inner(input_ids, scores)
        self.calls.append((input_ids.cpu(), scores.float().cpu(), out.float().cpu()))
        return out


PROMPTS = ["Why is the sky blue?", "Hi", "Write a short poem about the sea, please."]


def check_args_steps(policy, reward, tok, dtype, k=5, weight=1.0, steps=6):
    """ARGS (raw rewards, cached fast path) in ``generate``; every step's rewards equal the reward model's own forward
    on the full ids ``head + response + candidate + tail`` within the tie tolerance, and every pick is a best or
    tied-best candidate."""
    from transformers import LogitsProcessorList

    from hf_stackshape import ARGSLogitsProcessor
    from hf_stackshape.benchmarks.args import NaiveARGS
    from hf_stackshape.pipeline.generation import format_prompts

    proc = Recorder(ARGSLogitsProcessor(reward, tokenizer=tok, k=k, weight=weight, transform="raw", use_cache=True,
                                        prompts=PROMPTS))
    enc = tok(format_prompts(tok, PROMPTS), return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
    with torch.inference_mode():
        out = policy.generate(**enc, logits_processor=LogitsProcessorList([proc]), do_sample=False,
                              max_new_tokens=steps, min_new_tokens=steps)
    out = out[:, enc["input_ids"].shape[1] :].cpu()
    prompt_len = enc["input_ids"].shape[1]
    for step, (ids, scores_in, scores_out) in enumerate(proc.calls):
        for row, prompt in enumerate(PROMPTS):
            parts = NaiveARGS(reward, prompt, k, weight, None)
            response = ids[row, prompt_len:].tolist()
            top = scores_in[row].topk(k)
            fast = (scores_out[row, top.indices] - top.values) / weight
            seqs = torch.tensor([parts.head + response + [v] + parts.tail for v in top.indices.tolist()])
            ref = reward.score_ids(seqs)
            tol = tie_tolerance(dtype, ref)
            assert (fast - ref).abs().max() <= tol, (step, row, fast, ref)
            fused = top.values + weight * ref
            picked = top.indices.tolist().index(int(out[row, step]))
            assert fused[picked] >= fused.max() - 2 * weight * tol
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_fast_args_in_half_precision_on_cuda(tok, dtype, attn):
    policy, reward = models(tok, dtype, attn)
    check_args_steps(policy, reward, tok, dtype)


def test_fast_args_equals_the_naive_loop_token_for_token_in_float32_on_cuda(tok):
    from hf_stackshape.benchmarks.device import BenchArgs, fast_equals_naive

    result = fast_equals_naive("tiny", tok, torch.device("cuda"), BenchArgs(equality_tokens=12))
    assert result["args_fast_equals_naive"], result
    assert result["args_steps_differing_from_greedy"] > 0


@pytest.mark.parametrize("rm_device", ["cpu", "cuda"])
def test_policy_and_reward_model_on_different_devices(tok, rm_device):
    policy_device = "cuda" if rm_device == "cpu" else "cpu"
    policy, reward = models(tok, torch.float32, device=policy_device, rm_device=rm_device)
    out = check_args_steps(policy, reward, tok, torch.float32)
    assert out.shape == (len(PROMPTS), 6)


def test_heads_on_another_device_than_their_backbone(tok):
    """A Q/value head left on the CPU while its backbone is on CUDA (as with device_map, where the backbone's last
    layer is not where the head was put): the hidden states follow the head; values equal the all-CUDA ones."""
    from transformers import LogitsProcessorList

    from hf_stackshape import CDLogitsProcessor
    from hf_stackshape.qhead.modeling_qhead import QHeadModel

    policy, _ = models(tok, torch.bfloat16)
    enc = tok(PROMPTS, return_tensors="pt", padding=True).to("cuda")
    for head_type, shared in (("value", False), ("q", True)):
        head = QHeadModel.from_backbone(policy, head_type=head_type).eval()
        runs = []
        for device in ("cuda", "cpu"):
            head.head.to(device)
            proc = Recorder(CDLogitsProcessor(head, k=4, weight=1.5, base_model=policy, share_hidden_states=shared))
            with torch.inference_mode():
                policy.generate(**enc, logits_processor=LogitsProcessorList([proc]), do_sample=False, max_new_tokens=4,
                                min_new_tokens=4)
            proc.inner.close()
            runs.append(proc.calls)
        assert len(runs[0]) == len(runs[1]) == 4
        for (ids_a, _, out_a), (ids_b, _, out_b) in zip(*runs):
            if not torch.equal(ids_a, ids_b):  # a near-tie picked another token: later steps see other prefixes
                break
            finite = torch.isfinite(out_a)
            assert torch.equal(finite, torch.isfinite(out_b))
            torch.testing.assert_close(out_a[finite], out_b[finite], rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs to split a model with device_map")
def test_reward_model_split_over_two_gpus_with_device_map(tok):
    from accelerate import dispatch_model

    policy, reward = models(tok, torch.bfloat16)
    layers = reward.model.config.num_hidden_layers
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "score": 1}
    device_map.update({f"model.layers.{i}": 0 if i < layers // 2 else 1 for i in range(layers)})
    reward.model = dispatch_model(reward.model, device_map=device_map)
    check_args_steps(policy, reward, tok, torch.bfloat16)


def test_flash_attention_refuses_the_cached_path_clearly(tok):
    if importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    from hf_stackshape import ARGSLogitsProcessor

    _, reward = models(tok, torch.bfloat16, attn="sdpa")
    reward.model.set_attn_implementation("flash_attention_2")
    with pytest.raises(ValueError, match="flash_attention_2.*sdpa"):
        ARGSLogitsProcessor(reward, tokenizer=tok, use_cache=True)
    proc = ARGSLogitsProcessor(reward, tokenizer=tok, k=3)  # the text path works with any attention
    assert proc.prefix_cache is None


def test_out_of_memory_batch_is_retried_smaller_on_a_real_gpu(tok):
    """Cap this process's CUDA memory so that one pair fits and 32 do not: scores equal the uncapped ones; with a
    cap below one pair, BatchMemoryError names the memory the allocation asked for."""
    from hf_stackshape.utils.memory import BatchMemoryError, PeakMemory

    policy, reward = models(tok, torch.float32, shape="1b")  # activations of ~100 MB per long pair
    del policy
    torch.cuda.empty_cache()
    long = "word " * 500
    prompts, responses = [f"Question {i}: {long}" for i in range(32)], [f"Answer {i}." for i in range(32)]
    reward.batch_size = 1
    with PeakMemory() as one:
        reward.score(prompts[:1], responses[:1])
    reward.batch_size = 32
    with PeakMemory() as full:
        expected = reward.score(prompts, responses)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    need_one, need_all = one.bytes - base, full.bytes - base
    assert need_all > 8 * need_one, (need_one, need_all)
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 4 * need_one) / total)
        got = reward.score(prompts, responses)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + need_one // 8) / total)
        with pytest.raises(BatchMemoryError, match="One pair alone does not fit"):
            reward.score(prompts[:2], responses[:2])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def test_peak_memory_reads_the_cuda_peak():
    from hf_stackshape.utils.memory import PeakMemory

    with PeakMemory() as peak:
        block = torch.ones(256 * 1024 * 1024, dtype=torch.uint8, device="cuda")
        del block
    assert peak.bytes >= 256 * 1024**2 and "cuda" in peak.source
