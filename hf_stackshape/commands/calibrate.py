"""``stackshape calibrate``: sample N base responses per prompt, score them, compute ``m*(x)``.

Writes ``OUTPUT_DIR/dataset`` (``save_to_disk``), ``OUTPUT_DIR/calibration.jsonl`` and the resumable
chunk cache; rerunning the same command resumes. Under ``torchrun --nproc_per_node W`` (or
``accelerate launch``) the prompt chunks are shared over the W ranks and rank 0 writes the result:

    torchrun --nproc_per_node 2 -m hf_stackshape.cli calibrate --prompts p.jsonl --output_dir runs/calib
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ..calibration import CalibrationConfig

DESCRIPTION = __doc__.strip().splitlines()[0]


@dataclass
class CalibrateArguments:
    """Where the prompts, the base model and the reward come from."""

    prompts: Optional[str] = field(default=None, metadata={"help": "Prompt file: .jsonl, .json, .csv or .txt."})
    dataset: Optional[str] = field(default=None, metadata={"help": "Hub dataset id or local dataset folder."})
    split: str = field(default="train", metadata={"help": "Split of --dataset."})
    column: str = field(default="prompt", metadata={"help": "Field / column holding the prompt text."})
    limit: Optional[int] = field(default=None, metadata={"help": "Use only the first LIMIT prompts."})
    model: Optional[str] = field(
        default=None, metadata={"help": "Base model path or Hub id (default: the embedded SmolLM2-135M-Instruct)."}
    )
    reward_model: str = field(
        default="vader", metadata={"help": "'vader' (sentiment) or a reward model path / Hub id."}
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Pairs per reward-model forward pass."})
    dtype: str = field(default="float32", metadata={"help": "Weights dtype: float32, bfloat16 or float16."})


def _dtype(name: str):
    import torch

    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"Unknown --dtype {name!r}; use float32, bfloat16 or float16.")
    return value


def run(args: CalibrateArguments, config: CalibrationConfig) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..calibration import ThresholdCalibrator
    from ..io import load_prompts
    from ..rewards import load_reward

    if not config.output_dir:
        raise ValueError("Pass --output_dir (where the cache and the calibrated dataset go).")
    prompts = load_prompts(path=args.prompts, dataset=args.dataset, split=args.split, column=args.column,
                           limit=args.limit)
    state = None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        device = state.device
    dtype = _dtype(args.dtype)
    if args.model is None:
        from ..defaults import load_smollm2

        model, tokenizer = load_smollm2(dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.model, padding_side="left")
    model.to(device)
    if args.reward_model.strip().lower() == "vader":
        reward = load_reward(args.reward_model)
    else:
        reward = load_reward(args.reward_model, dtype=dtype, device=device, batch_size=args.reward_batch_size)
    dataset = ThresholdCalibrator(model, tokenizer, reward, config).calibrate(prompts, state=state)
    if state is None or state.is_main_process:
        mean_threshold = sum(dataset["threshold"]) / len(dataset)
        print(
            f"calibrated {len(dataset)} prompts x {config.num_samples} samples; mean threshold "
            f"{mean_threshold:.4f}; saved {os.path.join(config.output_dir, 'dataset')} and calibration.jsonl"
        )
    return 0


DATACLASSES = (CalibrateArguments, CalibrationConfig)
