"""``stackshape sweep``: run methods over a grid of 1/beta; write a table (CSV/JSON) and a Figure-2 plot.

Example:

    stackshape sweep --prompts prompts.jsonl --methods args srs-args minmax-args --weights 0.25 0.5 1 2 \\
        --reward_model demo --gold_reward vader --output_dir runs/sweep

CD methods need Q-heads: --qheads raw=runs/qhead-raw srs=runs/qhead-srs. Finished cells are reused on rerun.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ..sweep import SweepConfig
from ._common import EvalPromptSourceArguments

DESCRIPTION = __doc__.strip().splitlines()[0]


@dataclass
class SweepArguments(EvalPromptSourceArguments):
    output_dir: str = field(default="sweep", metadata={"help": "Where generations, results.csv/json and the plot go."})
    model: Optional[str] = field(default=None, metadata={"help": "Base model path / Hub id (default: embedded SmolLM2)."})
    reward_model: str = field(default="demo", metadata={"help": "Guiding reward: 'demo', 'vader', 'length', or an RM path / Hub id."})
    gold_reward: Optional[str] = field(default=None, metadata={"help": "Independent gold reward (e.g. 'vader'); also the judge."})
    qheads: List[str] = field(default_factory=list, metadata={"help": "CD Q-heads as TRANSFORM=FOLDER, e.g. raw=runs/q-raw srs=runs/q-srs."})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16."})


def run(args: SweepArguments, config: SweepConfig) -> int:
    from ..generation import parse_method
    from ..sweep import format_table, plot_sweep, run_sweep
    from ._common import load_base_model, load_reward_spec

    prompts = args.load_prompts()
    qhead_paths = {}
    for item in args.qheads:
        if "=" not in item:
            raise ValueError(f"--qheads takes TRANSFORM=FOLDER items, got {item!r}.")
        transform, folder = item.split("=", 1)
        qhead_paths[parse_method(f"{transform}-cd").transform] = folder
    missing = [m for m in config.methods if parse_method(m).decoder == "cd" and parse_method(m).transform not in qhead_paths]
    if missing:
        raise ValueError(f"Methods {missing} need Q-heads: pass --qheads TRANSFORM=FOLDER for each.")
    model, tokenizer = load_base_model(args.model, args.dtype)
    device = str(next(model.parameters()).device)
    reward = load_reward_spec(args.reward_model, args.dtype, device)
    gold = load_reward_spec(args.gold_reward, args.dtype, device) if args.gold_reward else None
    qheads = {}
    if qhead_paths:
        from ..qhead.modeling_qhead import QHeadModel

        qheads = {t: QHeadModel.from_pretrained(path) for t, path in qhead_paths.items()}
    table = run_sweep(model, tokenizer, prompts, reward, config, args.output_dir, gold_reward=gold, qheads=qheads)
    plot = plot_sweep(table, f"{args.output_dir}/figure2.png")
    print(format_table(table))
    print(f"\ntable: {args.output_dir}/results.csv\nplot:  {plot}")
    return 0


DATACLASSES = (SweepArguments, SweepConfig)
