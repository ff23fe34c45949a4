"""The exact utility of each reward transform under best-of-N reweighting, on real samples (README figure).

Draws N = 8 samples of 40 tokens from the embedded SmolLM2-135M-Instruct for 32 bundled test prompts, scores
them with the bundled demo reward model (guiding) and VADER (gold), and computes the exact
``E_rho[r]`` of every transform (raw, SRS, hard threshold, the paper's baselines) at each ``1/beta``, with
95% bootstrap intervals over prompts (Wang et al., 2026: on the samples, the threshold reward is optimal).

    HF_HUB_OFFLINE=1 python examples/bon_utility.py    # about 2 minutes on 2 CPU cores
    HF_HUB_OFFLINE=1 python examples/bon_utility.py --output_dir runs/bon --prompts 64 --samples 16
"""

import argparse
import json
import math
from pathlib import Path

import torch

from hf_stackshape.bon import StackelbergBestOfN
from hf_stackshape.assets.defaults import load_smollm2
from hf_stackshape.assets.demo import demo_prompts, load_demo_reward_model, vader_reward
from hf_stackshape.evaluation.stats import bootstrap_ci
from hf_stackshape.evaluation.utility import plot_utility, utility_table
from hf_stackshape.utils.io import atomic_write_json

BETAS = [math.inf, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", default="examples/results", help="Where bon_utility.json and .png go.")
    p.add_argument("--prompts", type=int, default=32, help="Bundled test prompts used (the README figure: 32).")
    p.add_argument("--samples", type=int, default=8, help="Samples N per prompt (the README figure: 8).")
    p.add_argument("--max_new_tokens", type=int, default=40, help="Tokens per sample (the README figure: 40).")
    args = p.parse_args(argv)
    if min(args.prompts, args.samples, args.max_new_tokens) < 1 or args.samples < 2:
        p.error("--prompts and --max_new_tokens must be >= 1 and --samples >= 2 (a threshold needs 2 samples).")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    n = args.samples
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_smollm2()
    guide, gold = load_demo_reward_model(), vader_reward()
    prompts = demo_prompts("test")[: args.prompts]
    sampler = StackelbergBestOfN(
        model, tokenizer, guide, num_samples=n, beta=0.5, transform="srs", max_new_tokens=args.max_new_tokens,
        batch_size=8,
        seed=0,
    )
    samples = sampler.generate(prompts, return_candidates=True)
    flat_prompts = [p for p in prompts for _ in range(n)]
    flat_responses = [r for group in samples.candidates for r in group]
    gold_rewards = gold.score(flat_prompts, flat_responses).view(len(prompts), n)
    table = utility_table(samples.rewards, BETAS, gold_rewards=gold_rewards)
    rows = [{k: v for k, v in row.items() if k != "per_prompt"} for row in table]
    atomic_write_json(out_dir / "bon_utility.json", rows)
    plot_utility(table, out_dir / "bon_utility.png", title=f"SmolLM2 x {n} samples, demo RM, VADER gold")
    chosen = samples.rewards.argmax(-1, keepdim=True)
    summary = {
        "classic_best_of_n_guiding": bootstrap_ci(samples.rewards.gather(-1, chosen).squeeze(-1).tolist()),
        "classic_best_of_n_gold": bootstrap_ci(gold_rewards.gather(-1, chosen).squeeze(-1).tolist()),
        "median_reward_range": float((samples.rewards.max(-1).values - samples.rewards.min(-1).values).median()),
    }
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
