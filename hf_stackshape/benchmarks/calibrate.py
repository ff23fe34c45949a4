"""``stackshape bench calibrate``: the ThresholdCalibrator end to end vs plain ``generate`` sampling.

Setting (the embedded SmolLM2-135M-Instruct): 8 prompts x 8 samples x 48 new tokens, temperature 0.7,
top-p 0.9. The reward model has the same size as the policy: a ``LlamaForSequenceClassification`` built
from SmolLM2's config, with SmolLM2's backbone weights and a seeded random score head.

Timed side by side in one run, on the same prompts and the same seed (so both sample the very same
tokens and stop at the same EOS):

* ``generate_s``: one plain ``model.generate(num_return_sequences=8)`` call (the sampling alone);
* ``reward_s``: the reward model scoring those 64 pairs, alone;
* ``calibrate_s``: :meth:`ThresholdCalibrator.calibrate` in a fresh temporary ``output_dir`` (sampling,
  scoring, thresholds, chunk cache, ``save_to_disk`` and JSONL).

``overhead_vs_generate = calibrate_s / generate_s`` includes the reward model's forward passes, which
cost about as much as the sampling itself when the reward model is as large as the policy and the
hardware is compute-bound (CPU); ``overhead_vs_generate_and_reward = calibrate_s / (generate_s +
reward_s)`` isolates what the calibrator adds on top of the two unavoidable model costs.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field

import torch

DESCRIPTION = "ThresholdCalibrator end to end vs plain generate sampling on SmolLM2 (8 prompts x 8 samples)."

@dataclass
class BenchArgs:
    """Settings of the calibration benchmark."""

    prompts: int = field(default=8, metadata={"help": "Prompts (the first of the bundled demo train split)."})
    samples: int = field(default=8, metadata={"help": "Samples N per prompt."})
    max_new_tokens: int = field(default=48, metadata={"help": "New tokens per sample."})
    seed: int = field(default=0, metadata={"help": "Sampling seed and seed of the random score head."})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch intra-op threads (1: stable on a shared CPU, where idle OpenMP threads can "
            "slow ops tenfold; 0: torch's default)."
        },
    )


def _reward_model_like(model, tokenizer, seed: int):
    """A same-size reward model: SmolLM2's backbone weights and a seeded random score head."""
    from transformers import LlamaForSequenceClassification

    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    rm = LlamaForSequenceClassification(config)
    missing, _ = rm.model.load_state_dict(model.model.state_dict(), strict=False)
    if missing:
        raise RuntimeError(f"Backbone weights missing from the reward model: {missing[:3]}")
    return rm.eval()


@contextlib.contextmanager
def intra_op_threads(threads: int):
    """``torch.set_num_threads(threads)`` inside the block when ``threads > 0``, restored after."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def smollm2_with_reward(num_prompts: int, seed: int, reward_batch_size: int = 16):
    """``(model, tokenizer, reward, prompts)``: SmolLM2, a same-size reward model, the first demo train prompts."""
    from ..assets.defaults import load_smollm2
    from ..assets.demo import demo_prompts
    from ..rewards.adapters import HFRewardModel

    model, tokenizer = load_smollm2()
    reward = HFRewardModel(_reward_model_like(model, tokenizer, seed), tokenizer, batch_size=reward_batch_size)
    pool = demo_prompts("train")
    return model, tokenizer, reward, [pool[i % len(pool)] for i in range(num_prompts)]


def workload(model, args: BenchArgs) -> dict:
    """The fields every report of this workload starts with: where it ran and how large it was."""
    return {
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "prompts": args.prompts,
        "samples": args.samples,
        "max_new_tokens": args.max_new_tokens,
    }


def run(args: BenchArgs) -> dict:
    if min(args.prompts, args.samples, args.max_new_tokens) < 1:
        raise ValueError("`prompts`, `samples` and `max_new_tokens` must all be >= 1.")
    with intra_op_threads(args.threads):
        return _run(args)


@torch.no_grad()
def _run(args: BenchArgs) -> dict:
    from ..calibration import ThresholdCalibrator, chunk_seed
    from ..utils.prompts import encode_prompts, format_prompts

    model, tokenizer, reward, prompts = smollm2_with_reward(args.prompts, args.seed)
    calibrator = ThresholdCalibrator(
        model, tokenizer, reward, num_samples=args.samples, max_new_tokens=args.max_new_tokens,
        chunk_size=args.prompts, seed=args.seed, show_progress=False,
    )
    # The plain baseline: what a user would write, chat template and all, with the calibrator's seed for
    # its single chunk so that both sides sample identical tokens.
    enc = encode_prompts(tokenizer, format_prompts(tokenizer, prompts), None, 0).to(model.device)
    # No top_k: both sides inherit the model's generation_config, as the calibrator does by default.
    sampling = dict(do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens,
                    num_return_sequences=args.samples, pad_token_id=tokenizer.pad_token_id)
    model.generate(**enc, **{**sampling, "max_new_tokens": 2})  # warm-up (first-call allocations)

    torch.manual_seed(chunk_seed(args.seed, 0))
    start = time.perf_counter()
    out = model.generate(**enc, **sampling)
    generate_s = time.perf_counter() - start
    responses = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    pairs = [p for p in prompts for _ in range(args.samples)]

    start = time.perf_counter()
    plain_rewards = reward.score(pairs, responses)
    reward_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="stackshape-bench-calibrate-") as tmp:
        start = time.perf_counter()
        dataset = calibrator.calibrate(prompts, output_dir=tmp)
        calibrate_s = time.perf_counter() - start
    same = [r for rs in dataset["responses"] for r in rs] == responses
    calibrated_rewards = torch.tensor([r for rs in dataset["rewards"] for r in rs])
    max_reward_diff = (calibrated_rewards - plain_rewards).abs().max().item()
    return {
        **workload(model, args),
        "generate_s": generate_s,
        "reward_s": reward_s,
        "calibrate_s": calibrate_s,
        "same_samples_as_generate": same,
        "max_reward_diff": max_reward_diff,
        "overhead_vs_generate": calibrate_s / generate_s,
        "overhead_vs_generate_and_reward": calibrate_s / (generate_s + reward_s),
        "targets": {"overhead_vs_generate": "<= 1.25", "overhead_vs_generate_and_reward": "<= 1.05"},
    }
