"""The main job on the embedded default: the whole SRS pipeline on SmolLM2-135M-Instruct, offline, on a CPU.

1. base policy: the bundled SmolLM2-135M-Instruct; guiding reward: the bundled demo reward model (a LoRA
   on SmolLM2 trained with TRL's ``RewardTrainer`` on VADER-labelled preference pairs, see
   ``examples/train_demo_reward_model.py``); gold judge: VADER itself (independent of the guiding RM);
2. calibrate ``m*(x)`` on the training prompts (:class:`~hf_stackshape.calibration.ThresholdCalibrator`);
3. train two CD heads on those rollouts (Mudgal et al., 2023): one on raw rewards (vanilla CD), one on
   Stackelberg-shaped rewards (SRS-CD, Wang et al., 2026) (:class:`~hf_stackshape.qhead.trainer.QHeadTrainer`);
4. sweep vanilla ARGS (Khanov et al., 2024), SRS-ARGS, vanilla CD, SRS-CD and best-of-N over ``1/beta`` on
   held-out prompts (:func:`~hf_stackshape.pipeline.sweep.run_sweep`): reward, gold reward, diversity, coherence and
   win-tie rates, each with a 95% bootstrap interval over prompts, SRS against vanilla with the paired interval
   of the difference; the paper's Figure 2 with error bars;
5. diagnostics that explain the result: the median per-step range of the k ARGS candidates' rewards (and the
   push SRS gives per unit of reward at that range against raw ARGS's 1), and each CD head's spread over the
   top-k candidates.

Reproducible: every stage that draws random numbers is seeded (sampling, head initialisation, training), so
two runs print the same table. The output folder is a run (:func:`hf_stackshape.utils.runs.open_run`): an
interrupted demo resumes where it stopped, and a rerun with other settings into the same folder is refused
(``--overwrite`` starts over).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "DemoConfig", "run_demo", "load_demo_assets", "cd_transforms", "calibrate_demo", "train_cd_heads", "sweep_demo",
    "diagnose_args", "candidate_reward_range", "head_candidate_spread",
]

_BOUND_CD, _BETA_CD, _ALPHA_CD = 15.0, 0.667, 1.0  # the authors' CD shaping (PAPER.md section 3)


@dataclass
class DemoConfig:
    """Settings of ``stackshape demo`` (the defaults finish in under 10 minutes on 2 CPU cores).

    Args:
        output_dir: the run folder (results, plot, caches); a rerun with the same settings resumes.
        head_type: the CD head: ``value`` (the paper's value MLP, one value per prefix) or ``q`` (vocabulary-wide).
    """

    output_dir: str = field(default="stackshape_demo", metadata={"help": "Run folder: results, plot and caches (rerun = resume)."})
    overwrite: bool = field(default=False, metadata={"help": "Start over when --output_dir holds a demo run with other settings."})
    num_prompts: int = field(default=16, metadata={"help": "Held-out test prompts evaluated per method and weight."})
    num_train_prompts: int = field(default=48, metadata={"help": "Training prompts calibrated for the CD heads."})
    num_samples: int = field(default=4, metadata={"help": "Base samples per training prompt (N of the calibration)."})
    calibration_max_new_tokens: int = field(default=32, metadata={"help": "Tokens per calibration sample."})
    max_new_tokens: int = field(default=40, metadata={"help": "Tokens per evaluated response."})
    weights: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "Grid of 1/beta."})
    methods: List[str] = field(
        default_factory=lambda: ["args", "srs-args", "cd", "srs-cd", "bon", "soft-bon", "srs-bon"],
        metadata={"help": "Methods to compare (vanilla counterparts are added)."},
    )
    k: int = field(default=10, metadata={"help": "Candidates per step (ARGS and CD)."})
    bon_samples: int = field(default=4, metadata={"help": "Samples N per prompt of the best-of-N methods."})
    head_type: str = field(default="value", metadata={"help": "CD head: value (the paper's) or q (vocabulary-wide)."})
    qhead_epochs: float = field(default=4.0, metadata={"help": "Epochs of CD head training."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    judge_tolerance: float = field(default=0.05, metadata={"help": "VADER difference counted as a tie."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, head initialisation and training."})

    def __post_init__(self):
        for name in ("num_prompts", "num_train_prompts", "num_samples", "calibration_max_new_tokens", "max_new_tokens", "bon_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)!r}.")
        if self.head_type not in ("value", "q"):
            raise ValueError(f"`head_type` must be 'value' or 'q', got {self.head_type!r}.")
        if not self.methods:
            raise ValueError("`methods` is empty; name at least one, e.g. --methods args srs-args.")

    def fingerprint(self) -> Dict[str, object]:
        """Every setting that changes the results, plus the identity of the bundled assets."""
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("output_dir", "overwrite")}
        return {"settings": settings, "assets": _assets_fingerprint()}


def _assets_fingerprint() -> Dict[str, str]:
    """Digests of the bundled prompts and demo RM, and the embedded SmolLM2's package version (cheap: no load)."""
    from importlib import metadata

    from .assets.defaults import SMOLLM2_PACKAGE
    from .assets.demo import DEMO_PROMPTS_PATH, DEMO_RM_PATH

    out = {}
    for path in [DEMO_PROMPTS_PATH, *sorted(DEMO_RM_PATH.glob("*"))]:
        if path.is_file():
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    try:
        out["smollm2"] = metadata.version(SMOLLM2_PACKAGE.replace("_", "-"))
    except metadata.PackageNotFoundError:
        out["smollm2"] = "missing"
    return out


# ----------------------------------------------------------------------------------------------- diagnostics


class _RangeRecorder:
    """Wraps an ARGS reward transform and records, per step and row, max - min of the valid candidates' rewards."""

    def __init__(self, inner):
        self.inner = inner
        self.ranges: List[float] = []

    def __call__(self, rewards, weights=None, mask=None, threshold=None):
        valid = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask
        high = rewards.masked_fill(~valid, -math.inf).max(-1).values
        low = rewards.masked_fill(~valid, math.inf).min(-1).values
        self.ranges += [float(v) for v in (high - low) if math.isfinite(float(v))]
        return self.inner(rewards, weights=weights, mask=mask, threshold=threshold)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@torch.no_grad()
def candidate_reward_range(
    model, tokenizer, reward, prompts: Sequence[str], k: int = 10, weight: float = 1.0, max_new_tokens: int = 40,
    batch_size: int = 8, bound: float = 12.0, alpha: float = 1.5,
) -> Dict[str, float]:
    """The median per-step range of the k ARGS candidates' rewards along vanilla ARGS, and what it implies.

    SRS-ARGS feeds ``B_eff * sigmoid(alpha * (r - m*))`` with ``B_eff = min(B, 1.01 * range)`` (the authors'
    safeguard) to the same fused score ``logit + lambda * reward``; at the threshold its slope is
    ``alpha * B_eff / 4`` per unit of reward, against raw ARGS's 1. With a weak reward model whose candidates
    differ little, SRS therefore pushes *less* than raw ARGS at the same ``1/beta``.

    Returns:
        ``{"median_range", "mean_range", "steps", "b_eff", "srs_slope_at_threshold", "raw_slope"}``.
    """
    from .guidance.args import ARGSLogitsProcessor
    from .utils.prompts import encode_prompts, format_prompts, tokenizer_sides

    processor = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=k, weight=weight, transform="raw")
    recorder = _RangeRecorder(processor.transform)
    processor.transform = recorder
    texts = format_prompts(tokenizer, prompts)
    with tokenizer_sides(tokenizer, padding="left"):  # as before for the whole run (the encoder pads left anyway)
        for start in range(0, len(texts), batch_size):
            enc = encode_prompts(tokenizer, texts[start : start + batch_size], None, start)  # budget None: no truncation
            enc = enc.to(next(model.parameters()).device)
            processor.set_prompt(enc, prompts=list(prompts[start : start + batch_size]))
            model.generate(
                **enc, logits_processor=[processor], max_new_tokens=max_new_tokens, do_sample=False,
                temperature=None, top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id,
            )
    ranges = recorder.ranges or [math.nan]
    median = statistics.median(ranges)
    b_eff = min(bound, 1.01 * median)
    return {
        "median_range": median,
        "mean_range": statistics.fmean(ranges),
        "steps": len(recorder.ranges),
        "b_eff": b_eff,
        "srs_slope_at_threshold": alpha * b_eff / 4.0,
        "raw_slope": 1.0,
    }


@torch.no_grad()
def head_candidate_spread(
    qhead, model, tokenizer, prompts: Sequence[str], k: int = 10, max_new_tokens: int = 40,
    trained_tokens: Optional[set] = None,
) -> Dict[str, float]:
    """How much a CD head moves the choice among the base model's top-k candidates, along greedy decoding.

    At each step of the base policy's greedy answer, the head scores the top-k next tokens; the spread
    (standard deviation) of those values times ``lambda`` is what CD adds to the spread of the top-k log-probs.
    For a ``q`` head, ``trained_tokens`` (the token ids present in its training responses) splits the
    candidates into rows that ever received a gradient and rows still at their random initialisation.

    Returns:
        ``{"median_value_spread", "median_logp_spread", "candidates_trained_fraction"}`` (the last one only with
        ``trained_tokens``).
    """
    from .utils.prompts import encode_prompts, format_prompts

    value_spreads, logp_spreads, trained = [], [], []
    device = next(model.parameters()).device
    for index, text in enumerate(format_prompts(tokenizer, prompts)):
        ids = encode_prompts(tokenizer, [text], None, index)["input_ids"].to(device)
        for _ in range(max_new_tokens):
            out = model(ids)
            logp = out.logits[0, -1].float().log_softmax(-1)
            top_logp, top_ids = logp.topk(k)
            if qhead.config.head_type == "q":
                values = qhead(input_ids=ids, attention_mask=torch.ones_like(ids)).value[0, -1, top_ids]
            else:
                candidates = torch.cat([ids.expand(k, -1), top_ids[:, None]], dim=1)
                values = qhead(input_ids=candidates, attention_mask=torch.ones_like(candidates)).value[:, -1]
            value_spreads.append(float(values.float().std()))
            logp_spreads.append(float(top_logp.std()))
            if trained_tokens is not None:
                trained += [int(t) in trained_tokens for t in top_ids.tolist()]
            nxt = top_ids[:1][None]
            if int(nxt) == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, nxt], dim=1)
    result = {
        "median_value_spread": statistics.median(value_spreads),
        "median_logp_spread": statistics.median(logp_spreads),
    }
    if trained_tokens is not None:
        result["candidates_trained_fraction"] = sum(trained) / max(1, len(trained))
    return result


# ----------------------------------------------------------------------------------------------- stages


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(int(seed))


def _head_fingerprint(transform: str, config: DemoConfig) -> Dict[str, object]:
    return {
        "transform": transform, "head_type": config.head_type, "epochs": config.qhead_epochs, "seed": config.seed,
        "calibration": {k: getattr(config, k) for k in ("num_train_prompts", "num_samples", "calibration_max_new_tokens")},
    }


#: The head's validation metrics, saved in its folder with it (a reused head reports them too).
_HEAD_METRICS = "eval_metrics.json"


def _load_head(model, folder: Path):
    """A finished head of ``folder`` on the backbone ``model``, and its saved metrics (``{}`` for a head saved
    before they were)."""
    from .qhead.modeling_qhead import QHeadModel
    from .utils.io import read_json

    metrics_path = folder / "head" / _HEAD_METRICS
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    return QHeadModel.from_pretrained(str(folder / "head"), backbone=model), metrics


def _train_head(model, tokenizer, calibration, transform: str, folder: Path, config: DemoConfig):
    """Train (or reuse, when its run manifest matches) the CD head of one transform; ``(head, metrics)``."""
    from .utils.runs import open_run

    with open_run(folder, _head_fingerprint(transform, config), kind="demo-head"):
        if (folder / "head" / "config.json").is_file():
            return _load_head(model, folder)
        return _fit_head(model, tokenizer, calibration, transform, folder, config)


def _fit_head(model, tokenizer, calibration, transform: str, folder: Path, config: DemoConfig):
    """Train the CD head of one transform into ``folder/head`` (with its validation metrics); ``(head, metrics)``."""
    from .assets.defaults import smollm2_path
    from .qhead.modeling_qhead import QHeadModel
    from .qhead.trainer import QHeadTrainer, QHeadTrainerConfig
    from .utils.io import atomic_write_json

    _seed(config.seed)
    qhead = QHeadModel.from_backbone(
        model,
        head_type=config.head_type,
        seed=config.seed,
        backbone_name_or_path=str(smollm2_path()),
        base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
        reward_model_name_or_path="hf_stackshape demo RM (SmolLM2-135M-Instruct + LoRA, VADER-labelled pairs)",
    )
    args = QHeadTrainerConfig(
        output_dir=str(folder / "work"),
        transform=transform,
        bound=_BOUND_CD,
        alpha=_ALPHA_CD,
        beta=_BETA_CD,
        safeguards="cd",
        num_train_epochs=config.qhead_epochs,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        chat_template=True,
        precompute_hidden_states=True,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
    )
    trainer = QHeadTrainer(qhead, args, train_dataset=calibration, processing_class=tokenizer)
    trainer.train()
    metrics = {k: v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))} if _has_eval(trainer) else {}
    # Saved next to its place and renamed, so an interrupted save is never taken for a finished head.
    partial = folder / "head.partial"
    shutil.rmtree(partial, ignore_errors=True)
    trainer.save_model(str(partial))
    atomic_write_json(partial / _HEAD_METRICS, metrics)
    shutil.rmtree(folder / "head", ignore_errors=True)
    os.replace(partial, folder / "head")
    shutil.rmtree(folder / "work", ignore_errors=True)
    return qhead, metrics


def _fit_head_alone(settings: Dict[str, object], calibration, transform: str, folder: str,
                    device: Optional[str]) -> Dict[str, float]:
    """:func:`_fit_head` in a process of its own (a rank's single-process child, see :func:`train_cd_heads`): the
    base model loaded as one process loads it, the calibration the ranks gathered (one process's, see
    :meth:`~hf_stackshape.calibration.ThresholdCalibrator.calibrate`); the head's metrics."""
    from .assets.defaults import load_smollm2

    model, tokenizer = load_smollm2(device=device)
    return _fit_head(model, tokenizer, calibration, transform, Path(folder), DemoConfig(**settings))[1]


def _has_eval(trainer) -> bool:
    return getattr(trainer, "eval_dataset", None) is not None


def run_demo(config: DemoConfig, state=None) -> Dict[str, object]:
    """Run the demo; returns ``{"table", "diagnostics", "plot", "results", "timings", "seconds"}``.

    The table is :func:`~hf_stackshape.pipeline.sweep.run_sweep`'s: every number with its 95% bootstrap interval over
    prompts, shaped methods with the paired interval of their difference to vanilla at the same weight
    (:func:`~hf_stackshape.evaluation.compare.compare_to_baseline`). The steps: load the bundled assets, calibrate
    and train the CD heads (:func:`train_cd_heads`), sweep (:func:`sweep_demo`), explain (:func:`diagnose_args`).

    Under ``torchrun`` / ``accelerate launch`` (``state``, an accelerate ``PartialState``; default
    ``torch.distributed`` when initialised): calibration and the sweep share their batches over the ranks, each
    CD head is trained by one rank in a single-process child (:func:`train_cd_heads`), and rank 0 writes the
    diagnostics and the plot (``plot`` is ``None`` on the other ranks). The files and the table are those of one
    process, and a run started on one world size resumes on another.
    """
    from .assets.demo import demo_prompts
    from .pipeline.sweep import plot_sweep
    from .utils.distributed import Processes, launch_device
    from .utils.io import atomic_write_json, read_json
    from .utils.runs import open_run

    start = time.time()
    out = Path(config.output_dir)
    timings: Dict[str, float] = {}
    plot = None
    with open_run(out, config.fingerprint(), kind="demo", overwrite=config.overwrite, state=state):
        main = Processes(state).is_main
        tick = time.time()
        model, tokenizer, reward, gold = load_demo_assets(None if state is None else launch_device(state))
        timings["load"] = time.time() - tick
        test_prompts = demo_prompts("test")[: config.num_prompts]
        diagnostics_path = out / "diagnostics.json"
        diagnostics = read_json(diagnostics_path) if diagnostics_path.is_file() else {}
        qheads = train_cd_heads(model, tokenizer, reward, config, test_prompts, diagnostics, timings, state=state)
        tick = time.time()
        table = sweep_demo(model, tokenizer, reward, gold, qheads, test_prompts, config, state=state)
        timings["sweep"] = time.time() - tick
        if main:
            diagnose_args(model, tokenizer, reward, test_prompts, config, diagnostics, timings)
            atomic_write_json(diagnostics_path, diagnostics)
            plot = plot_sweep(table, out / "figure2.png", title="SmolLM2-135M-Instruct, demo RM, VADER gold")
    return {
        "table": table,
        "diagnostics": diagnostics,
        "plot": plot,
        "results": {"csv": out / "sweep" / "results.csv", "json": out / "sweep" / "results.json"},
        "timings": timings,
        "seconds": time.time() - start,
    }


def load_demo_assets(device: Optional[str] = None):
    """``(model, tokenizer, reward, gold)``: the bundled SmolLM2-135M-Instruct, the demo reward model (guiding) and
    VADER (the gold judge, independent of the guiding reward); the models on ``device`` (default: CPU)."""
    from .assets.defaults import load_smollm2
    from .assets.demo import load_demo_reward_model, vader_reward

    model, tokenizer = load_smollm2(device=device)
    reward = load_demo_reward_model(device=device)
    gold = vader_reward()
    return model, tokenizer, reward, gold


def cd_transforms(methods: Sequence[str]) -> List[str]:
    """The CD heads to train: one per transform of the CD methods named, plus ``raw`` for the vanilla counterpart
    the sweep adds."""
    from .pipeline.generation import parse_method

    return list(dict.fromkeys(t for m in methods if parse_method(m).decoder == "cd" for t in (parse_method(m).transform, "raw")))


def calibrate_demo(model, tokenizer, reward, config: DemoConfig, state=None):
    """Calibrate ``m*(x)`` on the training prompts with the authors' CD shaping (resumes from ``calibration/``;
    chunks shared over the ranks of ``state``)."""
    from .assets.demo import demo_prompts
    from .calibration import CalibrationConfig, ThresholdCalibrator

    _seed(config.seed)
    return ThresholdCalibrator(
        model,
        tokenizer,
        reward,
        CalibrationConfig(
            num_samples=config.num_samples,
            max_new_tokens=config.calibration_max_new_tokens,
            bound=_BOUND_CD,
            beta=_BETA_CD,
            safeguards="cd",
            seed=config.seed,
            output_dir=str(Path(config.output_dir) / "calibration"),
        ),
    ).calibrate(demo_prompts("train")[: config.num_train_prompts], state=state)


def train_cd_heads(model, tokenizer, reward, config: DemoConfig, probe_prompts: Sequence[str],
                   diagnostics: Dict[str, object], timings: Dict[str, float], state=None) -> Dict[str, object]:
    """Calibrate, then train (or reuse) a CD head per transform of :func:`cd_transforms`; ``{transform: head}``.

    Each head's validation metrics (saved with it, so a reused head reports them too) and its spread over the
    top-k candidates on two ``probe_prompts`` (:func:`head_candidate_spread`) go to
    ``diagnostics["cd_head_<transform>"]`` (on rank 0); the seconds to ``timings``.

    Under ``torchrun`` (``state`` or an initialised ``torch.distributed``): ``transformers.Trainer`` would wrap the
    head in DDP there, which changes the order of the gradient sums, so the heads would differ from one
    process's. Instead each missing head is trained by one rank (round robin) in a child process with the launch
    variables removed (:meth:`~hf_stackshape.utils.distributed.Processes.map_alone`), by the same code, seeds and
    calibration (the one the ranks gathered, one process's) as one process; every rank then loads it from its
    folder. (The children do not reopen ``calibration/``: two of them would contend for its lock.)"""
    from .utils.distributed import Processes, launch_device
    from .utils.runs import open_run

    transforms = cd_transforms(config.methods)
    qheads = {}
    if not transforms:
        return qheads
    procs = Processes(state)
    out = Path(config.output_dir)
    tick = time.time()
    calibration = calibrate_demo(model, tokenizer, reward, config, state=state)
    timings["calibrate"] = time.time() - tick
    tick = time.time()
    folders = {t: out / f"head-{t}" for t in transforms}
    trained_tokens = None
    if config.head_type == "q" and procs.is_main:
        trained_tokens = {t for rs in calibration["responses"] for r in rs for t in tokenizer(r, add_special_tokens=False)["input_ids"]}

    def diagnose(transform, metrics):
        key = f"cd_head_{transform}"
        if key not in diagnostics and procs.is_main:
            diagnostics[key] = dict(metrics or {})
            diagnostics[key].update(
                head_candidate_spread(qheads[transform], model, tokenizer, probe_prompts[:2], k=config.k,
                                      max_new_tokens=min(12, config.max_new_tokens), trained_tokens=trained_tokens)
            )

    if procs.world == 1:
        for transform in transforms:
            logger.warning("Training the %s CD head (%s) ...", transform, config.head_type)
            qheads[transform], metrics = _train_head(model, tokenizer, calibration, transform, folders[transform], config)
            diagnose(transform, metrics)
    else:
        with contextlib.ExitStack() as runs:
            for transform in transforms:
                runs.enter_context(open_run(folders[transform], _head_fingerprint(transform, config), kind="demo-head",
                                            state=state))
            todo = procs.broadcast([t for t in transforms if not (folders[t] / "head" / "config.json").is_file()])
            if todo and procs.is_main:
                logger.warning("Training the %s CD heads (%s), one per rank ...", ", ".join(todo), config.head_type)
            device = launch_device(state) if state is not None else str(next(model.parameters()).device)
            child_device = "cuda:0" if device.startswith("cuda") else device  # only this rank's GPU is visible there
            settings = dataclasses.asdict(config)
            jobs = [(settings, calibration, t, str(folders[t]), child_device) for t in todo]
            procs.map_alone(_fit_head_alone, jobs, device=device)
            for transform in transforms:
                qheads[transform], metrics = _load_head(model, folders[transform])
                diagnose(transform, metrics)
    timings["cd_heads"] = time.time() - tick
    return qheads


def sweep_demo(model, tokenizer, reward, gold, qheads, test_prompts: Sequence[str], config: DemoConfig, state=None):
    """The demo's sweep (:func:`~hf_stackshape.pipeline.sweep.run_sweep` into ``<output_dir>/sweep``): every method
    and its vanilla counterpart over ``1/beta``, VADER as the gold reward and judge."""
    from .pipeline.sweep import SweepConfig, run_sweep

    sweep = SweepConfig(
        methods=list(config.methods),
        weights=list(config.weights),
        k=config.k,
        num_samples=config.bon_samples,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        judge_tolerance=config.judge_tolerance,
        seed=config.seed,
    )
    _seed(config.seed)
    return run_sweep(model, tokenizer, test_prompts, reward, sweep, Path(config.output_dir) / "sweep", gold_reward=gold,
                     qheads=qheads, state=state)


def diagnose_args(model, tokenizer, reward, test_prompts: Sequence[str], config: DemoConfig,
                  diagnostics: Dict[str, object], timings: Dict[str, float]) -> None:
    """When ARGS ran and it is not measured yet: ``diagnostics["args_candidate_range"]``
    (:func:`candidate_reward_range` at the smallest weight, on the first batch of test prompts)."""
    from .pipeline.generation import parse_method

    if any(parse_method(m).decoder == "args" for m in config.methods) and "args_candidate_range" not in diagnostics:
        tick = time.time()
        diagnostics["args_candidate_range"] = candidate_reward_range(
            model, tokenizer, reward, test_prompts[: config.batch_size], k=config.k, weight=min(config.weights),
            max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
        )
        timings["candidate_range"] = time.time() - tick
