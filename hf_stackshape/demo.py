"""The main job on the embedded default: the whole SRS pipeline on SmolLM2-135M-Instruct, offline, on a CPU.

1. base policy: the bundled SmolLM2-135M-Instruct; guiding reward: the bundled demo reward model (a LoRA
   on SmolLM2 trained with TRL's ``RewardTrainer`` on VADER-labelled preference pairs, see
   ``examples/train_demo_reward_model.py``); gold judge: VADER itself (independent of the guiding RM);
2. calibrate ``m*(x)`` on the training prompts (:class:`~hf_stackshape.calibration.ThresholdCalibrator`);
3. train two CD Q-heads on the base model's own hidden states: one on raw rewards (vanilla CD), one on
   Stackelberg-shaped rewards (SRS-CD) (:class:`~hf_stackshape.qhead.trainer.QHeadTrainer`);
4. sweep vanilla ARGS, SRS-ARGS, vanilla CD and SRS-CD over ``1/beta`` on held-out prompts, measure reward,
   gold reward, diversity, coherence and win-tie rates, and draw the paper's Figure 2.

Every stage writes to ``output_dir`` and is skipped when its output is already there, so an interrupted
demo resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["DemoConfig", "run_demo"]


@dataclass
class DemoConfig:
    """Settings of ``stackshape demo`` (defaults finish in under 10 minutes on 2 CPU cores)."""

    output_dir: str = field(default="stackshape_demo", metadata={"help": "Where results, plot and caches go (rerun = resume)."})
    num_prompts: int = field(default=16, metadata={"help": "Held-out test prompts evaluated per method and weight."})
    num_train_prompts: int = field(default=48, metadata={"help": "Training prompts calibrated for the CD Q-heads."})
    num_samples: int = field(default=4, metadata={"help": "Base samples per training prompt (N)."})
    calibration_max_new_tokens: int = field(default=32, metadata={"help": "Tokens per calibration sample."})
    max_new_tokens: int = field(default=40, metadata={"help": "Tokens per evaluated response."})
    weights: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "Grid of 1/beta."})
    methods: List[str] = field(
        default_factory=lambda: ["args", "srs-args", "cd", "srs-cd"], metadata={"help": "Methods to compare."}
    )
    k: int = field(default=10, metadata={"help": "Candidates per step (ARGS and CD)."})
    qhead_epochs: float = field(default=4.0, metadata={"help": "Epochs of Q-head training."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    judge_tolerance: float = field(default=0.05, metadata={"help": "VADER difference counted as a tie."})
    seed: int = field(default=0, metadata={"help": "Seed of calibration sampling and training."})

    def __post_init__(self):
        for name in ("num_prompts", "num_train_prompts", "num_samples", "calibration_max_new_tokens", "max_new_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)!r}.")


def _train_qhead(model, tokenizer, calibration, transform: str, folder: Path, config: DemoConfig, reward_name: str):
    from .defaults import smollm2_path
    from .qhead.modeling_qhead import QHeadModel
    from .qhead.trainer import QHeadTrainer, QHeadTrainerConfig

    if (folder / "config.json").is_file():
        return QHeadModel.from_pretrained(str(folder), backbone=model)
    qhead = QHeadModel.from_backbone(
        model,
        head_type="q",
        backbone_name_or_path=str(smollm2_path()),
        base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
        reward_model_name_or_path=reward_name,
    )
    args = QHeadTrainerConfig(
        output_dir=str(folder) + ".work",
        transform=transform,
        bound=15.0,
        alpha=1.0,
        beta=0.667,
        safeguards="cd",
        num_train_epochs=config.qhead_epochs,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        apply_chat_template=True,
        precompute_hidden_states=True,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=config.seed,
        disable_tqdm=True,
    )
    trainer = QHeadTrainer(qhead, args, train_dataset=calibration, processing_class=tokenizer)
    trainer.train()
    # Save next to the target and rename, so an interrupted save is never taken for a finished head.
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))
    shutil.rmtree(folder, ignore_errors=True)  # a leftover without config.json
    os.replace(partial, folder)
    return qhead


def run_demo(config: DemoConfig) -> Dict[str, object]:
    """Run the demo; returns ``{"table": [...], "plot": path, "results": paths, "seconds": float}``."""
    from .calibration import CalibrationConfig, ThresholdCalibrator
    from .defaults import load_smollm2
    from .demo_assets import demo_prompts, load_demo_reward_model, vader_reward
    from .sweep import SweepConfig, plot_sweep, run_sweep

    start = time.time()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_smollm2()
    reward = load_demo_reward_model()
    gold = vader_reward()
    test_prompts = demo_prompts("test")[: config.num_prompts]
    methods = list(config.methods)
    qheads = {}
    if any(m.endswith("cd") for m in methods):
        train_prompts = demo_prompts("train")[: config.num_train_prompts]
        calibrator = ThresholdCalibrator(
            model,
            tokenizer,
            reward,
            CalibrationConfig(
                num_samples=config.num_samples,
                max_new_tokens=config.calibration_max_new_tokens,
                bound=15.0,
                beta=0.667,
                safeguards="cd",
                seed=config.seed,
                output_dir=str(out / "calibration"),
            ),
        )
        calibration = calibrator.calibrate(train_prompts)
        reward_name = "hf_stackshape demo RM (SmolLM2-135M-Instruct + LoRA, VADER-labelled pairs)"
        for method in methods:
            if method.endswith("cd"):
                transform = "raw" if method in ("cd", "vanilla-cd") else method.rsplit("-", 1)[0]
                if transform not in qheads:
                    logger.warning("Training the %s Q-head (CD) ...", transform)
                    qheads[transform] = _train_qhead(
                        model, tokenizer, calibration, transform, out / f"qhead-{transform}", config, reward_name
                    )
    sweep = SweepConfig(
        methods=methods,
        weights=list(config.weights),
        k=config.k,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        judge_tolerance=config.judge_tolerance,
    )
    table = run_sweep(model, tokenizer, test_prompts, reward, sweep, out, gold_reward=gold, qheads=qheads)
    plot = plot_sweep(table, out / "figure2.png", title="SmolLM2-135M-Instruct, demo RM, VADER gold")
    return {
        "table": table,
        "plot": plot,
        "results": {"csv": out / "results.csv", "json": out / "results.json"},
        "seconds": time.time() - start,
    }
