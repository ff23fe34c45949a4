"""``stackshape calibrate``: sample N base responses per prompt, score them, compute ``m*(x)``.

Writes ``OUTPUT_DIR/dataset`` (``save_to_disk``), ``OUTPUT_DIR/calibration.jsonl`` and the resumable
chunk cache; rerunning the same command resumes, a rerun with other settings (model, its generation_config,
reward, sampling) is refused with the changed keys named, and ``--overwrite`` starts over (the whole old run is
removed). ``--preset paper`` takes the authors' rollout settings (Wang et al., 2026). Under ``torchrun --nproc_per_node W`` (or
``accelerate launch``) the prompt chunks are shared over the W ranks and rank 0 writes the result:

    torchrun --nproc_per_node 2 -m hf_stackshape.cli calibrate --prompts p.jsonl --output_dir runs/calib
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from ..calibration import CalibrationConfig
from ._common import TRUST_REMOTE_CODE_HELP, PromptSourceArguments

DESCRIPTION = __doc__.strip().splitlines()[0]

#: ``--preset NAME`` sets the CalibrationConfig fields named like the preset's ``calibration`` keys.
PRESET_COMPONENTS = ("calibration",)


@dataclass
class CalibrateArguments(PromptSourceArguments):
    """Where the prompts, the base model and the reward come from."""

    model: Optional[str] = field(
        default=None, metadata={"help": "Base model path or Hub id (unset: the embedded SmolLM2-135M-Instruct)."}
    )
    reward_model: str = field(
        default="demo",
        metadata={"help": "'demo' (the bundled demo RM), 'vader', 'length', 'module:function', or a reward model "
                  "path / Hub id."},
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Pairs per reward-model forward pass."})
    trust_remote_code: bool = field(default=False, metadata={"help": TRUST_REMOTE_CODE_HELP})
    dtype: str = field(default="float32", metadata={"help": "Weights dtype: float32, bfloat16 or float16."})


def run(args: CalibrateArguments, config: CalibrationConfig) -> int:
    from ..calibration import ThresholdCalibrator
    from ..utils.distributed import launch_device, launch_state
    from ._common import load_base_model, load_reward_spec

    if not config.output_dir:
        raise ValueError("Pass --output_dir (where the cache and the calibrated dataset go).")
    prompts = args.load_prompts()
    state = launch_state()
    device = launch_device(state)
    model, tokenizer = load_base_model(args.model, args.dtype, device)
    reward = load_reward_spec(args.reward_model, args.dtype, device, args.reward_batch_size, args.trust_remote_code)
    dataset = ThresholdCalibrator(model, tokenizer, reward, config).calibrate(prompts, state=state)
    if state is None or state.is_main_process:
        mean_threshold = sum(dataset["threshold"]) / len(dataset)
        print(
            f"calibrated {len(dataset)} prompts x {config.num_samples} samples; mean threshold "
            f"{mean_threshold:.4f}; saved {os.path.join(config.output_dir, 'dataset')} and calibration.jsonl"
        )
    return 0


DATACLASSES = (CalibrateArguments, CalibrationConfig)
