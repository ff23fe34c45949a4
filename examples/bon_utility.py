"""The exact utility of each reward transform under best-of-N reweighting, on real samples (README figure).

Draws N = 8 samples of 40 tokens from the embedded SmolLM2-135M-Instruct for 32 bundled test prompts, scores
them with the bundled demo reward model (guiding) and VADER (gold), and computes the exact
``E_rho[r]`` of every transform (raw, SRS, hard threshold, the paper's baselines) at each ``1/beta``, with
95% bootstrap intervals over prompts (Wang et al., 2026: on the samples, the threshold reward is optimal).

    HF_HUB_OFFLINE=1 python examples/bon_utility.py [OUTPUT_DIR]    # about 2 minutes on 2 CPU cores
"""

import json
import math
import sys
from pathlib import Path

import torch

from hf_stackshape.bon import StackelbergBestOfN
from hf_stackshape.defaults import load_smollm2
from hf_stackshape.demo_assets import demo_prompts, load_demo_reward_model, vader_reward
from hf_stackshape.evaluation.stats import bootstrap_ci
from hf_stackshape.evaluation.utility import plot_utility, utility_table
from hf_stackshape.io import atomic_write_json

N, PROMPTS, TOKENS = 8, 32, 40
BETAS = [math.inf, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1]


def main(output_dir: str = "examples/results") -> None:
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_smollm2()
    guide, gold = load_demo_reward_model(), vader_reward()
    prompts = demo_prompts("test")[:PROMPTS]
    sampler = StackelbergBestOfN(
        model, tokenizer, guide, n=N, beta=0.5, transform="srs", max_new_tokens=TOKENS, batch_size=8, seed=0
    )
    samples = sampler.generate(prompts, return_candidates=True)
    flat_prompts = [p for p in prompts for _ in range(N)]
    flat_responses = [r for group in samples.candidates for r in group]
    gold_rewards = gold.score(flat_prompts, flat_responses).view(len(prompts), N)
    table = utility_table(samples.rewards, BETAS, gold_rewards=gold_rewards)
    rows = [{k: v for k, v in row.items() if k != "per_prompt"} for row in table]
    atomic_write_json(out_dir / "bon_utility.json", rows)
    plot_utility(table, out_dir / "bon_utility.png", title=f"SmolLM2 x {N} samples, demo RM, VADER gold")
    chosen = samples.rewards.argmax(-1, keepdim=True)
    print(json.dumps({
        "classic_best_of_n_guiding": bootstrap_ci(samples.rewards.gather(-1, chosen).squeeze(-1).tolist()),
        "classic_best_of_n_gold": bootstrap_ci(gold_rewards.gather(-1, chosen).squeeze(-1).tolist()),
        "median_reward_range": float((samples.rewards.max(-1).values - samples.rewards.min(-1).values).median()),
    }, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:])
