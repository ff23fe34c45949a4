"""``stackshape demo``: the whole SRS pipeline on the embedded SmolLM2 default, offline, in minutes.

Calibrates thresholds, trains vanilla and SRS CD heads, runs vanilla ARGS / SRS-ARGS / CD / SRS-CD / best-of-N
over a grid of 1/beta on held-out bundled prompts, and prints the results table (paper layout, 95% bootstrap
intervals over prompts; shaped minus vanilla with paired intervals), the diagnostics that explain the result, and
the plot path. Rerunning the command resumes from what is already in --output_dir; other settings into the
same folder are refused (--overwrite starts over). Under torchrun / accelerate launch the ranks share the
calibration, the CD heads and the sweep, and rank 0 prints what one process prints.
"""

from __future__ import annotations

from typing import Dict, List

from ..demo import DemoConfig

DESCRIPTION = __doc__.strip().splitlines()[0]
DATACLASSES = (DemoConfig,)


#: What the demo prints of a CD head's diagnostics: validation MSE and Spearman (value vs realised shaped
#: reward) at the last token and mid-response, and the head's spread over the top-k candidates.
_HEAD_DIAGNOSTICS = (
    "eval_mse", "eval_mse_mid", "eval_spearman_last", "eval_spearman_mid",
    "median_value_spread", "median_logp_spread", "candidates_trained_fraction",
)


def format_diagnostics(diagnostics: Dict[str, Dict[str, float]]) -> List[str]:
    lines = []
    rng = diagnostics.get("args_candidate_range")
    if rng:
        lines.append(
            f"ARGS: median per-step range of the k candidates' rewards {rng['median_range']:.3f} "
            f"({rng['steps']} steps) -> B_eff = {rng['b_eff']:.3f}; SRS's push at the threshold is "
            f"alpha * B_eff / 4 = {rng['srs_slope_at_threshold']:.3f} per unit of reward, raw ARGS's is 1"
        )
    for key, diag in diagnostics.items():
        if key.startswith("cd_head_"):
            parts = [f"{name.replace('eval_', 'validation ')} {value:.3g}" for name, value in diag.items()
                     if isinstance(value, (int, float)) and name in _HEAD_DIAGNOSTICS]
            lines.append(f"CD head ({key[len('cd_head_'):]}): " + ", ".join(parts))
    return lines


def run(config: DemoConfig) -> int:
    from ..demo import run_demo
    from ..pipeline.sweep import format_table
    from ..utils.distributed import launch_state

    state = launch_state()  # torchrun / accelerate launch: the stages share their work over the ranks
    result = run_demo(config, state=state)
    if state is not None and not state.is_main_process:
        return 0
    print()
    print("Stackelberg reward shaping demo: SmolLM2-135M-Instruct base, bundled demo RM, VADER gold judge")
    print("(reward = guiding RM; gold = VADER compound; win-tie judged by VADER; 1/beta = guidance weight)")
    print()
    print(format_table(result["table"]))
    lines = format_diagnostics(result["diagnostics"])
    if lines:
        print()
        print("Diagnostics:")
        print("\n".join(lines))
    print()
    print(f"table: {result['results']['csv']}")
    print(f"plot:  {result['plot']}")
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result["timings"].items())
    print(f"time:  {result['seconds']:.0f} s ({stages})")
    return 0
