"""``stackshape bench threshold``: the exact batched threshold solver vs the paper scripts' bisection.

The paper's scripts (Wang et al., 2026, arXiv 2602.02572, section 2 of our PAPER.md) find ``m*(x)`` one
prompt at a time: clip the bound (``B_eff = min(B, 1.01 * range)`` for ARGS), ``gamma = min(exp(B_eff /
beta), 2)``, then 30 bisection steps on ``[min u, max u]``, each evaluating ``F(m) = sum p w (u - m)``
with torch ops and reading it back with ``.item()``. :func:`~hf_stackshape.core.shaping.solve_threshold`
solves every prompt at once, exactly, after one sort. Both run here on the same rewards, side by side.
The Python loop is slow, so it is timed on ``bisection_prompts`` prompts and scaled linearly to the
full batch (its cost per prompt is constant); its results on those prompts check ours.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from ..core.shaping import solve_threshold

DESCRIPTION = "Exact batched solve_threshold vs a per-prompt scalar bisection loop (the paper's scripts)."


@dataclass
class BenchArgs:
    """Settings of the threshold benchmark."""

    prompts: int = field(default=10_000, metadata={"help": "Number of prompts in the batch."})
    samples: int = field(default=16, metadata={"help": "Rewards (samples / candidates) per prompt."})
    repeats: int = field(default=5, metadata={"help": "Timed repeats of solve_threshold (the median is reported)."})
    bisection_prompts: int = field(
        default=300, metadata={"help": "Prompts the scalar bisection loop is timed on (scaled to `prompts`)."}
    )
    bisection_steps: int = field(default=30, metadata={"help": "Bisection steps per prompt (the paper uses 30)."})
    beta: float = field(default=2.0, metadata={"help": "KL strength beta (1 / lambda)."})
    bound: float = field(default=12.0, metadata={"help": "Reward bound B."})
    seed: int = field(default=0, metadata={"help": "Seed of the random rewards and weights."})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch intra-op threads for both sides (1: like the scalar loop, and stable on a shared "
            "machine, where idle OpenMP threads can slow a batched op tenfold; 0: torch's default)."
        },
    )


def _paper_bisection(rewards: torch.Tensor, weights: torch.Tensor, beta: float, bound: float, steps: int):
    """The paper scripts' per-prompt loop (ARGS safeguards), written the way they write it."""
    out = []
    for u, p in zip(rewards, weights):
        lo, hi = u.min().item(), u.max().item()
        b_eff = min(bound, 1.01 * (hi - lo))
        gamma = min(math.exp(b_eff / beta), 2.0)
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            w = torch.where(u > mid, torch.tensor(gamma), torch.tensor(1.0))
            f = (p * w * (u - mid)).sum().item()
            if f > 0:
                lo = mid
            else:
                hi = mid
        out.append(0.5 * (lo + hi))
    return torch.tensor(out, dtype=torch.float64)


def run(args: BenchArgs) -> dict:
    if args.prompts < 1 or args.samples < 1 or args.repeats < 1 or args.bisection_steps < 1:
        raise ValueError("`prompts`, `samples`, `repeats` and `bisection_steps` must all be >= 1.")
    previous_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(previous_threads)


def _run(args: BenchArgs) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    rewards = torch.randn(args.prompts, args.samples, generator=gen) * 2.0
    # Candidate probabilities as ARGS has them: a softmax over top-k logits.
    weights = torch.softmax(torch.randn(args.prompts, args.samples, generator=gen) * 2.0, dim=-1)

    solve_threshold(rewards[:8], args.beta, args.bound, weights=weights[:8], safeguards="args")  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = solve_threshold(rewards, args.beta, args.bound, weights=weights, safeguards="args")
        times.append(time.perf_counter() - start)
    ours_s = statistics.median(times)

    n_bis = max(1, min(args.bisection_prompts, args.prompts))
    start = time.perf_counter()
    reference = _paper_bisection(rewards[:n_bis], weights[:n_bis], args.beta, args.bound, args.bisection_steps)
    bisection_timed_s = time.perf_counter() - start
    bisection_s = bisection_timed_s * args.prompts / n_bis

    return {
        "prompts": args.prompts,
        "samples": args.samples,
        "threads": torch.get_num_threads(),
        "solve_threshold_s": ours_s,
        "bisection_prompts_timed": n_bis,
        "bisection_timed_s": bisection_timed_s,
        "bisection_s_scaled": bisection_s,
        "ratio_vs_bisection": bisection_s / ours_s,
        "max_abs_diff": (ours[:n_bis].double() - reference).abs().max().item(),
        "targets": {"ratio_vs_bisection": ">= 50"},
    }
