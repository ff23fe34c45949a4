"""``stackshape demo``: the whole SRS pipeline on the embedded SmolLM2 default, offline, in minutes.

Calibrates thresholds, trains vanilla and SRS CD Q-heads, runs vanilla ARGS / SRS-ARGS / CD / SRS-CD over a
grid of 1/beta on held-out bundled prompts, and prints the results table (paper layout) and the plot path.
Rerunning the command resumes from what is already in --output_dir.
"""

from __future__ import annotations

from ..demo import DemoConfig

DESCRIPTION = __doc__.strip().splitlines()[0]
DATACLASSES = (DemoConfig,)


def run(config: DemoConfig) -> int:
    from ..demo import run_demo
    from ..sweep import format_table

    result = run_demo(config)
    print()
    print("Stackelberg reward shaping demo: SmolLM2-135M-Instruct base, bundled demo RM, VADER gold judge")
    print("(reward = guiding RM; gold = VADER compound; win-tie judged by VADER; 1/beta = guidance weight)")
    print()
    print(format_table(result["table"]))
    print()
    print(f"table: {result['results']['csv']}")
    print(f"plot:  {result['plot']}")
    print(f"time:  {result['seconds']:.0f} s")
    return 0
