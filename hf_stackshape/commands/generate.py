"""``stackshape generate``: answer prompts with ARGS or CD guidance (vanilla, SRS or a baseline transform).

Examples:

    stackshape generate --prompts prompts.jsonl --method srs-args --reward_model demo --output_file out.jsonl
    stackshape generate --prompts prompts.jsonl --method srs-cd --qhead runs/qhead-srs --output_file out.jsonl

Responses are appended to OUTPUT_FILE batch by batch (one JSON object per line: id, prompt, response, method,
weight); rerunning the same command skips the prompts already answered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ._common import EvalPromptSourceArguments

DESCRIPTION = __doc__.strip().splitlines()[0]


@dataclass
class GenerateArguments(EvalPromptSourceArguments):
    output_file: str = field(default="generations.jsonl", metadata={"help": "JSONL file the responses go to."})
    method: str = field(
        default="srs-args",
        metadata={
            "help": "base | args | srs-args | minmax-args | meanstd-args | meansoft-args | hard-args | cd | srs-cd | "
            "bon | soft-bon | srs-bon"
        },
    )
    model: Optional[str] = field(default=None, metadata={"help": "Base model path / Hub id (default: embedded SmolLM2)."})
    reward_model: str = field(
        default="demo", metadata={"help": "ARGS reward: 'demo' (bundled RM), 'vader', 'length', 'module:fn' or an RM path / Hub id."}
    )
    qhead: Optional[str] = field(default=None, metadata={"help": "CD: a saved Q-head folder or Hub id (QHeadModel)."})
    weight: Optional[float] = field(default=None, metadata={"help": "Guidance weight lambda = 1/beta (ARGS 0.5, CD 1.5)."})
    k: int = field(default=10, metadata={"help": "Candidates per step (top-k of the base model)."})
    num_samples: int = field(default=8, metadata={"help": "Best-of-N methods: samples N per prompt (beta = 1/weight)."})
    bound: Optional[float] = field(default=None, metadata={"help": "Reward bound B for shaped transforms (ARGS default 12)."})
    alpha: Optional[float] = field(default=None, metadata={"help": "SRS sigmoid sharpness (ARGS default 1.5)."})
    thresholds_from: Optional[str] = field(
        default=None, metadata={"help": "Calibration output dir: use its per-prompt m*(x) for srs-args instead of per-step thresholds."}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens to generate per response."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (stochastic ARGS / CD) instead of greedy."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    seed: int = field(default=0, metadata={"help": "Random seed (with --do_sample)."})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16."})


def _done_ids(path: Path, prompts) -> int:
    """How many leading prompts OUTPUT_FILE already answers (a torn last line is dropped)."""
    if not path.is_file():
        return 0
    done = 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                break
            if done >= len(prompts) or row.get("prompt") != prompts[done]:
                raise ValueError(
                    f"{path} holds answers to other prompts (line {done + 1}); pass a new --output_file or delete it."
                )
            done += 1
    return done


def run(args: GenerateArguments) -> int:
    import torch

    from ..generation import generate_responses, parse_method
    from ..io import atomic_write_bytes
    from ._common import load_base_model, load_reward_spec

    method = parse_method(args.method)
    prompts = args.load_prompts()
    out_path = Path(args.output_file)
    done = _done_ids(out_path, prompts)
    if done == len(prompts):
        print(f"All {done} prompts already answered in {out_path}.")
        return 0
    # Drop a torn last line before appending.
    if out_path.is_file():
        atomic_write_bytes(out_path, b"".join(out_path.read_bytes().splitlines(keepends=True)[:done]))
    model, tokenizer = load_base_model(args.model, args.dtype)
    device = next(model.parameters()).device
    reward = load_reward_spec(args.reward_model, args.dtype, str(device)) if method.decoder in ("args", "bon") else None
    qheads = None
    if method.decoder == "cd":
        if not args.qhead:
            raise ValueError(f"Method {args.method!r} needs --qhead (a Q-head folder from `stackshape train-qhead`).")
        from ..qhead.modeling_qhead import QHeadModel

        qhead = QHeadModel.from_pretrained(args.qhead, backbone=model if _same_backbone(args.qhead, model) else None)
        qheads = {method.transform: qhead}
    thresholds = None
    if args.thresholds_from:
        import datasets

        folder = Path(args.thresholds_from) / "dataset"
        if not folder.is_dir():
            raise FileNotFoundError(f"No calibrated dataset at {folder}; run `stackshape calibrate --output_dir {args.thresholds_from}` first.")
        calib = datasets.load_from_disk(str(folder))
        by_prompt = dict(zip(calib["prompt"], calib["threshold"]))
        missing = [p for p in prompts if p not in by_prompt]
        if missing:
            raise ValueError(f"{len(missing)} prompts have no threshold in {args.thresholds_from} (first: {missing[0][:60]!r}).")
        thresholds = torch.tensor([by_prompt[p] for p in prompts[done:]], dtype=torch.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def write(start, responses):
        with open(out_path, "a", encoding="utf-8") as handle:
            for i, response in enumerate(responses):
                idx = done + start + i
                row = {"id": idx, "prompt": prompts[idx], "response": response, "method": method.label, "weight": args.weight}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    generate_responses(
        model,
        tokenizer,
        prompts[done:],
        method=method,
        reward=reward,
        qheads=qheads,
        weight=args.weight,
        k=args.k,
        bound=args.bound,
        alpha=args.alpha,
        thresholds=thresholds,
        num_samples=args.num_samples,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=args.do_sample,
        temperature=args.temperature,
        seed=args.seed,
        on_batch=write,
    )
    print(f"Wrote {len(prompts)} responses ({method.label}) to {out_path}")
    return 0


def _same_backbone(qhead_path: str, model) -> bool:
    """Whether the Q-head's backbone is the loaded base model (then its hidden states are shared)."""
    try:
        from ..qhead.configuration_qhead import QHeadConfig

        config = QHeadConfig.from_pretrained(qhead_path)
    except Exception:
        return False
    name = getattr(model.config, "_name_or_path", None)
    return bool(name) and str(config.backbone_name_or_path) == str(name)


DATACLASSES = (GenerateArguments,)
