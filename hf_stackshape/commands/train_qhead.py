"""``stackshape train-qhead``: train a CD value / Q head on the (shaped) rewards of calibration rollouts.

Input: a ``stackshape calibrate`` output folder (``<dir>/dataset`` saved with ``datasets.save_to_disk``, or
``<dir>/calibration.jsonl``), a saved dataset folder, or a JSONL file with the columns ``prompt, responses,
rewards, threshold`` (or the flat ``prompt, response, reward, threshold``). Output: the saved Q-head folder
(``--output_dir``), loadable with ``QHeadModel.from_pretrained``, with its model card (training settings and
validation diagnostics).

The output folder holds a run manifest (``run.json``): a rerun resumes from the last ``checkpoint-*`` only if
the calibration data (its content digest), the backbone and every training setting are the same; otherwise it
stops and names what differs (``--overwrite`` starts over, or pick another ``--output_dir``). Only the options
listed in ``NO_EFFECT_TRAINING_KEYS`` (logging, progress bars, trackers, Hub uploads, data-loader workers) may
change between the two.

    stackshape train-qhead --calibration_dir runs/calib --output_dir runs/qhead --preset paper
    stackshape train-qhead --calibration_dir runs/calib --output_dir runs/qhead --head_type q --lora_r 8
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from transformers.utils import logging

from ..qhead.trainer import QHeadTrainerConfig

logger = logging.get_logger(__name__)

DESCRIPTION = __doc__.strip().splitlines()[0]

#: ``--preset paper`` fills these components' keys into the fields of the same name.
PRESET_COMPONENTS = ("qhead_model", "qhead_trainer")


@dataclass
class TrainQHeadArguments:
    """Where the rollouts and the backbone come from, the head's shape, and the backbone's LoRA adapter."""

    calibration_dir: Optional[str] = field(
        default=None, metadata={"help": "Calibration output folder, a saved dataset folder, or a .jsonl file."}
    )
    backbone: Optional[str] = field(
        default=None, metadata={"help": "Backbone causal LM path / Hub id (default: the embedded SmolLM2)."}
    )
    head_type: str = field(
        default="value",
        metadata={
            "help": "value: the paper's head, one value per prefix; CD scores the k candidates per step; trains well "
            "on few rollouts. q: vocabulary-wide, one value per next token from the backbone's own hidden states "
            "(near-free at decoding when the backbone is the base model) but needs many rollouts to train every "
            "token row.",
            "choices": ["value", "q"],
        },
    )
    head_hidden_size: int = field(default=256, metadata={"help": "Inner width of the value MLP (paper: 8192)."})
    rank: int = field(default=16, metadata={"help": "Rank of the q head's H -> rank -> V projection."})
    init: str = field(
        default="normal",
        metadata={
            "help": "Head initialisation: normal, or orthogonal (the paper's).",
            "choices": ["normal", "orthogonal"],
        },
    )
    head_seed: int = field(default=0, metadata={"help": "Seed of the head's initialisation."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the backbone (0: frozen backbone, no adapter)."})
    lora_alpha: Optional[float] = field(default=None, metadata={"help": "LoRA alpha (default: 2 x lora_r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: Optional[List[str]] = field(
        default=None,
        metadata={
            "help": "Module names LoRA adapts, e.g. q_proj v_proj (default: peft's choice for the architecture)."
        },
    )
    dtype: str = field(default="float32", metadata={"help": "Backbone dtype: float32, bfloat16 or float16."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Remove an earlier run in --output_dir made with other data or settings, and start over."},
    )


def _jsonl_rows(path: str) -> List[Dict[str, Any]]:
    """The rows of a JSONL file; an unreadable line or a line that is not a JSON object names the file and line."""
    from ..utils.io import jsonl_lines

    rows = []
    for number, row in jsonl_lines(path, complete_lines_only=False):
        if not isinstance(row, dict):
            raise ValueError(
                f"{path}: line {number} is a JSON {type(row).__name__}, not an object with prompt, responses, rewards."
            )
        rows.append(row)
    return rows


def load_rollouts(path: str) -> Tuple[Any, Dict[str, Any], str]:
    """The calibration rollouts at ``path`` as a `datasets.Dataset`, the calibration config (or {}), and a digest
    of the data files (so a rerun on other data is refused)."""
    from datasets import Dataset, load_from_disk

    from ..utils.io import read_json
    from ..utils.runs import content_digest

    if not path:
        raise ValueError("Pass --calibration_dir (a calibration output folder, a saved dataset, or a .jsonl file).")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No calibration data at {path!r}; run `stackshape calibrate --output_dir ...` first.")
    config: Dict[str, Any] = {}
    if os.path.isdir(path):
        cfg_file = os.path.join(path, "calibration_config.json")
        if os.path.isfile(cfg_file):
            config = read_json(cfg_file)
        for candidate in (os.path.join(path, "dataset"), path):
            if os.path.isfile(os.path.join(candidate, "dataset_info.json")):
                return load_from_disk(candidate), config, content_digest(candidate)
        jsonl = os.path.join(path, "calibration.jsonl")
        if not os.path.isfile(jsonl):
            raise FileNotFoundError(f"{path!r} holds neither dataset/ (save_to_disk) nor calibration.jsonl.")
        path = jsonl
    rows = _jsonl_rows(path)
    if not rows:
        raise ValueError(f"{path!r} has no rows.")
    return Dataset.from_list(rows), config, content_digest(path)


#: Options that cannot change the trained head (its weights, config and validation metrics): where logs,
#: progress bars, trackers and Hub uploads go, data-loading workers, the process's own rank. Every other option
#: of ``TrainingArguments`` and :class:`QHeadTrainerConfig` is in the run's fingerprint, so a new option is
#: pinned by default (tests/test_rerun_options.py checks the two lists cover every field).
NO_EFFECT_TRAINING_KEYS = frozenset({
    "output_dir", "overwrite_output_dir", "logging_dir", "logging_strategy", "logging_steps", "logging_first_step",
    "log_on_each_node", "logging_nan_inf_filter", "log_level", "log_level_replica", "disable_tqdm", "report_to",
    "run_name", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
    "include_num_input_tokens_seen", "skip_memory_metrics", "push_to_hub", "hub_token", "hub_private_repo",
    "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision", "save_total_limit", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "dataset_num_proc", "local_rank", "ddp_timeout", "do_train", "do_eval",
    "do_predict", "resume_from_checkpoint",
})
#: Options of :class:`TrainQHeadArguments` that cannot change the head: the input folder (pinned by its content
#: digest instead, so a moved copy resumes) and the overwrite switch.
NO_EFFECT_HEAD_KEYS = frozenset({"calibration_dir", "overwrite"})


def run_fingerprint(
    args: TrainQHeadArguments, config: QHeadTrainerConfig, data_digest: str, backbone, tokenizer
) -> Dict[str, Any]:
    """What the trained head depends on: the data (content digest), the backbone, the tokenizer, the head and
    every training option except :data:`NO_EFFECT_TRAINING_KEYS`."""
    from dataclasses import fields

    from ..utils.runs import model_fingerprint, tokenizer_fingerprint

    # A renamed option keeps the key it has always had in the fingerprint (``chat_template`` is recorded as
    # ``apply_chat_template``), and its deprecated alias is not an option of its own: earlier runs still resume.
    renamed = getattr(config, "RENAMED_FIELDS", {})
    recorded_as = {new: old for old, new in renamed.items()}
    training = {
        recorded_as.get(f.name, f.name): getattr(config, f.name)
        for f in fields(config)
        if f.init and f.name not in NO_EFFECT_TRAINING_KEYS and f.name not in renamed and not f.name.startswith("_")
    }
    head = {k: v for k, v in asdict(args).items() if k not in NO_EFFECT_HEAD_KEYS}
    return {
        "calibration_data": data_digest,
        "backbone": model_fingerprint(backbone),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "head": head,
        "training": {k: getattr(v, "value", v) for k, v in sorted(training.items())},
    }


def run(args: TrainQHeadArguments, config: QHeadTrainerConfig) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..qhead import QHeadModel, QHeadTrainer
    from ..utils.runs import open_run
    from ._common import dtype_from_name

    dataset, calib, data_digest = load_rollouts(args.calibration_dir)
    if args.backbone is None or args.backbone.lower() in ("smollm2", "default"):
        from ..assets.defaults import load_smollm2, smollm2_path

        backbone, tokenizer = load_smollm2(dtype=dtype_from_name(args.dtype))
        backbone_id = str(smollm2_path())
    else:
        backbone = AutoModelForCausalLM.from_pretrained(args.backbone, dtype=dtype_from_name(args.dtype))
        tokenizer = AutoTokenizer.from_pretrained(args.backbone)
        backbone_id = args.backbone
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    use_chat = calib.get("use_chat_template")
    if use_chat is None:
        use_chat = bool(tokenizer.chat_template) if calib else None
    if config.chat_template is None:
        config.chat_template = use_chat
    elif use_chat is not None and bool(config.chat_template) != bool(use_chat):
        logger.warning(
            f"--chat_template {config.chat_template} differs from the calibration's use_chat_template "
            f"{use_chat}: the head reads prompts formatted unlike the rollouts were generated."
        )
    # HH-format prompts are read as the calibration rendered them (text or chat template): the calibration wins.
    if calib:
        as_text = bool(calib.get("dialogue_prompts_as_text", False))
        if config.dialogue_prompts_as_text is not None and bool(config.dialogue_prompts_as_text) != as_text:
            logger.warning(
                f"--dialogue_prompts_as_text {config.dialogue_prompts_as_text} differs from the calibration's "
                f"{as_text}; following the calibration, so the head reads prompts as the rollouts were generated."
            )
        config.dialogue_prompts_as_text = as_text
    for name in ("bound", "beta", "safeguards"):
        if name in calib and calib[name] != getattr(config, name):
            logger.warning(
                f"--{name} {getattr(config, name)!r} differs from the calibration's {calib[name]!r}: the "
                "stored thresholds were solved with the calibration's value."
            )
    peft_config = None
    if args.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha if args.lora_alpha is not None else 2 * args.lora_r,
            lora_dropout=args.lora_dropout,
            target_modules=args.lora_target_modules,
        )
    fingerprint = run_fingerprint(args, config, data_digest, backbone, tokenizer)
    with open_run(config.output_dir, fingerprint, kind="train-qhead", overwrite=args.overwrite) as run_state:
        qhead = QHeadModel.from_backbone(
            backbone, head_type=args.head_type, head_hidden_size=args.head_hidden_size, rank=args.rank,
            init=args.init, seed=args.head_seed, backbone_name_or_path=backbone_id,
            base_model_name_or_path=config.base_model_name_or_path or backbone_id,
        )
        trainer = QHeadTrainer(
            qhead, config, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
        resume = _last_checkpoint(config.output_dir, run_state.is_main) if run_state.resumed else None
        trainer.train(resume_from_checkpoint=resume)
        metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
        trainer.save_model(config.output_dir)
    line = f"saved the {args.head_type} head to {config.output_dir}"
    if "eval_mse" in metrics:
        line += (
            f"; validation MSE {metrics['eval_mse']:.4f}, Spearman (last token) {metrics['eval_spearman_last']:.3f}, "
            f"(mid-response) {metrics['eval_spearman_mid']:.3f}"
        )
    print(line)
    return 0


def _last_checkpoint(output_dir: str, remove_incomplete: bool = True) -> Optional[str]:
    """The last complete checkpoint; a half-written one (a kill during a save) is removed, with a warning (the
    run's lock is held, and the folder is this run's, see :mod:`hf_stackshape.qhead.checkpoints`)."""
    from ..qhead.checkpoints import last_complete_checkpoint

    return last_complete_checkpoint(output_dir, remove_incomplete=remove_incomplete)


DATACLASSES = (TrainQHeadArguments, QHeadTrainerConfig)
