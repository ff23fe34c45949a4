"""``stackshape train-qhead``: train a CD value / Q head on the (shaped) rewards of calibration rollouts.

Input: a ``stackshape calibrate`` output folder (``<dir>/dataset`` saved with ``datasets.save_to_disk``, or
``<dir>/calibration.jsonl``), a saved dataset folder, or a JSONL file with the columns ``prompt, responses,
rewards, threshold`` (or the flat ``prompt, response, reward, threshold``). Output: the saved Q-head folder
(``--output_dir``), loadable with ``QHeadModel.from_pretrained``.

    stackshape train-qhead --calibration_dir runs/calib --output_dir runs/qhead --head_type q --transform srs
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from transformers.utils import logging

from ..qhead.trainer import QHeadTrainerConfig

logger = logging.get_logger(__name__)

DESCRIPTION = __doc__.strip().splitlines()[0]


@dataclass
class TrainQHeadArguments:
    """Where the rollouts and the backbone come from, and the head's shape."""

    calibration_dir: Optional[str] = field(
        default=None, metadata={"help": "Calibration output folder, a saved dataset folder, or a .jsonl file."}
    )
    backbone: Optional[str] = field(
        default=None, metadata={"help": "Backbone causal LM path / Hub id (default: the embedded SmolLM2)."}
    )
    head_type: str = field(default="value", metadata={"help": "value or q.", "choices": ["value", "q"]})
    head_hidden_size: int = field(default=256, metadata={"help": "Inner width of the value MLP."})
    rank: int = field(default=16, metadata={"help": "Rank of the q head's H -> rank -> V projection."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the backbone's attention (0: frozen backbone)."})
    eval_fraction: float = field(default=0.0, metadata={"help": "Fraction of prompts held out for the eval loss."})
    dtype: str = field(default="float32", metadata={"help": "Backbone dtype: float32, bfloat16 or float16."})


def load_rollouts(path: str):
    """The calibration rollouts at ``path`` as a `datasets.Dataset`, plus the calibration config (or {})."""
    from datasets import Dataset, load_from_disk

    if not path:
        raise ValueError("Pass --calibration_dir (a calibration output folder, a saved dataset, or a .jsonl file).")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No calibration data at {path!r}; run `stackshape calibrate --output_dir ...` first.")
    config = {}
    if os.path.isdir(path):
        cfg_file = os.path.join(path, "calibration_config.json")
        if os.path.isfile(cfg_file):
            with open(cfg_file, encoding="utf-8") as fh:
                config = json.load(fh)
        for candidate in (os.path.join(path, "dataset"), path):
            if os.path.isfile(os.path.join(candidate, "dataset_info.json")):
                return load_from_disk(candidate), config
        jsonl = os.path.join(path, "calibration.jsonl")
        if not os.path.isfile(jsonl):
            raise FileNotFoundError(f"{path!r} holds neither dataset/ (save_to_disk) nor calibration.jsonl.")
        path = jsonl
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    if not rows:
        raise ValueError(f"{path!r} has no rows.")
    return Dataset.from_list(rows), config


def run(args: TrainQHeadArguments, config: QHeadTrainerConfig) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..qhead import QHeadModel, QHeadTrainer
    from ._common import dtype_from_name

    dataset, calib = load_rollouts(args.calibration_dir)
    if args.backbone is None or args.backbone.lower() in ("smollm2", "default"):
        from ..defaults import load_smollm2, smollm2_path

        backbone, tokenizer = load_smollm2(dtype=dtype_from_name(args.dtype))
        backbone_id = str(smollm2_path())
    else:
        backbone = AutoModelForCausalLM.from_pretrained(args.backbone, dtype=dtype_from_name(args.dtype))
        tokenizer = AutoTokenizer.from_pretrained(args.backbone)
        backbone_id = args.backbone
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if calib:
        use_chat = calib.get("use_chat_template")
        config.apply_chat_template = bool(tokenizer.chat_template) if use_chat is None else bool(use_chat)
        for name in ("bound", "beta", "safeguards"):
            if name in calib and calib[name] != getattr(config, name):
                logger.warning(
                    f"--{name} {getattr(config, name)!r} differs from the calibration's {calib[name]!r}: the "
                    "stored thresholds were solved with the calibration's value."
                )
    if args.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        backbone = get_peft_model(
            backbone, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules=["q_proj", "v_proj"])
        )
    qhead = QHeadModel.from_backbone(
        backbone, head_type=args.head_type, head_hidden_size=args.head_hidden_size, rank=args.rank,
        backbone_name_or_path=backbone_id,
        base_model_name_or_path=config.base_model_name_or_path or backbone_id,
    )
    eval_dataset = None
    if args.eval_fraction > 0:
        split = dataset.train_test_split(test_size=args.eval_fraction, seed=config.seed)
        dataset, eval_dataset = split["train"], split["test"]
        if config.eval_strategy == "no":
            config.eval_strategy = "epoch"
    trainer = QHeadTrainer(qhead, config, train_dataset=dataset, eval_dataset=eval_dataset, processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=_last_checkpoint(config.output_dir))
    trainer.save_model(config.output_dir)
    line = f"saved the {args.head_type} head to {config.output_dir}"
    if eval_dataset is not None:
        line += f"; eval loss {trainer.evaluate()['eval_loss']:.4f}"
    print(line)
    return 0


def _last_checkpoint(output_dir: str) -> Optional[str]:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None


DATACLASSES = (TrainQHeadArguments, QHeadTrainerConfig)
