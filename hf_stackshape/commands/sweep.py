"""``stackshape sweep``: run methods over a grid of 1/beta; write a table (CSV/JSON) and a Figure-2 plot.

Example:

    stackshape sweep --prompts prompts.jsonl --methods args srs-args minmax-args --weights 0.25 0.5 1 2 \\
        --reward_model demo --gold_reward vader --output_dir runs/sweep

CD methods need Q-heads: --qheads raw=runs/qhead-raw srs=runs/qhead-srs. Every number of the table carries its
95% bootstrap CI over prompts; shaped methods also carry the paired CI of their difference to vanilla. Finished
cells are reused on rerun when their settings match; another model, reward or Q-head in the same --output_dir
stops with the differing keys (--overwrite starts over).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from ..pipeline.sweep import SweepConfig
from ._common import TRUST_REMOTE_CODE_HELP, EvalPromptSourceArguments

DESCRIPTION = __doc__.strip().splitlines()[0]

#: ``--preset paper``: the authors' ARGS k, bound, alpha and 128 new tokens (see :mod:`hf_stackshape.cli`).
PRESET_COMPONENTS = ("args", "cd", "generation")


@dataclass
class SweepArguments(EvalPromptSourceArguments):
    output_dir: str = field(default="sweep", metadata={"help": "Where generations, results.csv/json and the plot go."})
    model: Optional[str] = field(default=None, metadata={"help": "Base model path / Hub id (default: embedded SmolLM2)."})
    reward_model: str = field(
        default="demo",
        metadata={"help": "Guiding reward: 'demo', 'vader', 'length', 'module:function' or an RM path / Hub id."},
    )
    gold_reward: Optional[str] = field(default=None, metadata={"help": "Independent gold reward (e.g. 'vader'); also the judge."})
    trust_remote_code: bool = field(default=False, metadata={"help": TRUST_REMOTE_CODE_HELP})
    overwrite: bool = field(
        default=False, metadata={"help": "Delete an earlier sweep in OUTPUT_DIR made with another model, reward or Q-heads."}
    )
    qheads: List[str] = field(default_factory=list, metadata={"help": "CD Q-heads as TRANSFORM=FOLDER, e.g. raw=runs/q-raw srs=runs/q-srs."})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16."})


def run(args: SweepArguments, config: SweepConfig) -> int:
    from ..pipeline.generation import parse_method
    from ..pipeline.sweep import format_table, plot_sweep, run_sweep
    from ._common import load_base_model, load_qhead, load_reward_spec

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
    from ..utils.distributed import launch_device, launch_state

    state = launch_state()  # torchrun / accelerate launch: every cell's batches are shared over the ranks
    model, tokenizer = load_base_model(args.model, args.dtype, launch_device(state))
    device = str(next(model.parameters()).device)
    trust = args.trust_remote_code
    reward = load_reward_spec(args.reward_model, args.dtype, device, trust_remote_code=trust)
    gold = load_reward_spec(args.gold_reward, args.dtype, device, trust_remote_code=trust) if args.gold_reward else None
    qheads = {t: load_qhead(path, model) for t, path in qhead_paths.items()}
    table = run_sweep(
        model, tokenizer, prompts, reward, config, args.output_dir, gold_reward=gold, qheads=qheads, overwrite=args.overwrite,
        state=state,
    )
    if state is not None and not state.is_main_process:
        return 0
    plot = plot_sweep(table, f"{args.output_dir}/figure2.png")
    print(format_table(table))
    print(f"\ntable: {args.output_dir}/results.csv\nplot:  {plot}")
    return 0


DATACLASSES = (SweepArguments, SweepConfig)
