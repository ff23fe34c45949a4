"""``stackshape bench bon``: SRS best-of-N end to end vs the same N-sample ``generate`` alone.

Setting (the embedded SmolLM2-135M-Instruct): 8 prompts x 8 samples x 48 new tokens, sampled with the model's
``generation_config``. The reward model has the same size as the policy (as in ``bench calibrate``: SmolLM2's
backbone weights and a seeded random score head).

Timed side by side in one run, on the same prompts and the same seed, so both sample the very same tokens
(``same_samples_as_generate``), the fastest of ``repeats`` interleaved runs counting:

* ``generate_s``: one plain ``model.generate(num_return_sequences=N)`` call, what any best-of-N must pay;
* ``keyed_generate_s``: the same samples drawn as best-of-N draws them (one generator per prompt and sample,
  keyed by the prompt's index, :mod:`hf_stackshape.utils.sampling`), whose tokens ``same_samples_as_generate`` compares;
* ``reward_s``: the reward model scoring those ``P x N`` pairs alone (``score_grouped``, prefix shared);
* ``bon_s``: :meth:`StackelbergBestOfN.generate` with ``srs`` and soft selection (sampling, grouped scoring,
  ``m*`` for every prompt, shaping, seeded selection, decoding).

``overhead_vs_sampling = bon_s / generate_s`` includes the reward model's forward pass, the one cost that
best-of-N adds to sampling; ``overhead_vs_sampling_and_reward = bon_s / (generate_s + reward_s)`` isolates what
the method adds on top of both model costs (the threshold and the selection: microseconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from . import calibrate
from .calibrate import intra_op_threads, smollm2_with_reward

DESCRIPTION = "SRS best-of-N end to end vs the same N-sample generate alone on SmolLM2 (8 prompts x 8 samples)."


@dataclass
class BenchArgs(calibrate.BenchArgs):
    """Settings of the best-of-N benchmark: the calibration benchmark's workload, plus the selection."""

    weight: float = field(default=2.0, metadata={"help": "Guidance weight 1/beta of the soft selection."})
    repeats: int = field(default=1, metadata={"help": "Interleaved runs per configuration (the fastest counts)."})


def run(args: BenchArgs) -> dict:
    if min(args.prompts, args.samples, args.max_new_tokens, args.repeats) < 1:
        raise ValueError("`prompts`, `samples`, `max_new_tokens` and `repeats` must all be >= 1.")
    if not args.weight > 0:
        raise ValueError(f"`weight` (1/beta) must be > 0, got {args.weight!r}.")
    with intra_op_threads(args.threads):
        return _run(args)


@torch.no_grad()
def _run(args: BenchArgs) -> dict:
    from ..bon import StackelbergBestOfN
    from ..utils.prompts import encode_prompts, format_prompts

    model, tokenizer, reward, prompts = smollm2_with_reward(args.prompts, args.seed, reward_batch_size=64)
    bon = StackelbergBestOfN(
        model, tokenizer, reward, num_samples=args.samples, beta=1.0 / args.weight, transform="srs",
        selection="soft",
        max_new_tokens=args.max_new_tokens, batch_size=args.prompts, seed=args.seed, show_progress=False,
    )
    # The plain baseline, as a user would write it: chat template, left padding, N samples per prompt.
    enc = encode_prompts(tokenizer, format_prompts(tokenizer, prompts), None, 0).to(model.device)
    sampling = dict(do_sample=True, num_return_sequences=args.samples, max_new_tokens=args.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id)
    model.generate(**enc, **{**sampling, "max_new_tokens": 2})  # warm-up (first-call allocations)

    # The same samples as best-of-N draws them: one generator per (prompt, sample), keyed by the prompt's index
    # (hf_stackshape.utils.sampling), the last processor of a greedy generate over the prompts repeated N times.
    from ..utils.sampling import KeyedSampler, draw_key

    keys = [draw_key(args.seed, i, j, "sample") for i in range(args.prompts) for j in range(args.samples)]
    repeated = {key: value.repeat_interleave(args.samples, dim=0) for key, value in enc.items()}
    keyed = dict(do_sample=False, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id)

    best = {"generate": float("inf"), "keyed_generate": float("inf"), "reward": float("inf"), "bon": float("inf")}
    for _ in range(args.repeats):
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        model.generate(**enc, **sampling)
        best["generate"] = min(best["generate"], time.perf_counter() - start)
        start = time.perf_counter()
        out = model.generate(**repeated, **keyed, logits_processor=[KeyedSampler.expand(keys, model.generation_config)])
        best["keyed_generate"] = min(best["keyed_generate"], time.perf_counter() - start)
        texts = [t.strip() for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)]
        groups = [texts[i * args.samples : (i + 1) * args.samples] for i in range(args.prompts)]

        start = time.perf_counter()
        reward.score_grouped(prompts, groups)
        best["reward"] = min(best["reward"], time.perf_counter() - start)

        start = time.perf_counter()
        result = bon.generate(prompts, return_candidates=True)
        best["bon"] = min(best["bon"], time.perf_counter() - start)
    return {
        **calibrate.workload(model, args),
        "generate_s": best["generate"],
        "keyed_generate_s": best["keyed_generate"],
        "reward_s": best["reward"],
        "bon_s": best["bon"],
        "same_samples_as_generate": result.candidates == groups,
        "mean_effective_sample_size": float(result.effective_sample_size.mean()),
        "overhead_vs_sampling": best["bon"] / best["generate"],
        "overhead_vs_sampling_and_reward": best["bon"] / (best["generate"] + best["reward"]),
        "targets": {"overhead_vs_sampling": "<= 1.15", "overhead_vs_sampling_and_reward": "<= 1.05"},
    }
