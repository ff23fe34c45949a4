"""Per-prompt thresholds ``m*(x)`` from base-policy samples: the offline half of SRS-CD.

Stackelberg reward shaping (Wang et al., 2026, arXiv 2602.02572) replaces the reward ``r_U`` by
``B * sigmoid(alpha * (r_U - m*(x)))``, where the threshold ``m*(x)`` is the root of
``F_x(m) = E_{y ~ pi_ref}[w_m(y) (r_U(x, y) - m)]``. For Controlled Decoding (Mudgal et al., 2023) the
value function is trained on rollouts of the base policy, so ``m*(x)`` is estimated once per prompt
from ``N`` sampled responses (the paper: N = 10, temperature 0.7, top-p 0.9). ARGS (Khanov et al.,
2024) can use the same per-prompt thresholds instead of per-step ones.

:class:`ThresholdCalibrator` does that at scale:

* batched sampling (``generate`` with ``num_return_sequences=N`` over a chunk of prompts) and batched
  reward scoring (one batched call per chunk: :meth:`HFRewardModel.score_grouped` runs each prompt's RM prefix once for its N responses; other rewards get one :meth:`RewardFunction.score` call; never one response at a time);
* the threshold itself comes from :func:`hf_stackshape.shaping.solve_threshold` (never re-derived here),
  and :func:`recompute_thresholds` re-solves it for other ``(B, beta)`` from the stored rewards;
* a resumable on-disk cache: prompts are split into fixed-size chunks; chunk ``k`` is sampled with its
  own seed (derived from ``(seed, k)`` only), written atomically as ``chunk-0000k.jsonl`` with a
  sidecar ``chunk-0000k.json`` holding its SHA-256, row count and prompts. A rerun reuses every verified
  chunk, recomputes corrupted or missing ones (and those whose prompts changed, e.g. a larger
  ``--limit``), and refuses a folder made with another model, reward or sampling settings;
* multi-process runs (``torchrun``, ``accelerate``): rank ``r`` of ``W`` samples chunks ``r, r+W, ...``
  and every rank assembles the same dataset, identical to a single-process run with the same seed.

Edge-case policy (documented, tested):

* a prompt longer than the model's context budget (``max_prompt_length``, default the context minus
  ``max_new_tokens``) is truncated **from the left**, keeping its end, with a logged warning; a reward
  model whose context cannot hold prompt + response truncates from the left too (``HFRewardModel``),
  and the calibrator warns about it;
* an empty response is scored as given (the reward sees the empty string);
* duplicate prompts are kept, each its own row with its own samples (they get different chunk seeds);
* a NaN or infinite reward is an error naming the prompt;
* prompt files are read by :func:`hf_stackshape.io.load_prompts`: a line that is not valid UTF-8 (or not
  valid JSON in a ``.jsonl`` file) is an error naming the line number, never skipped silently.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .io import (
    atomic_write_json,
    atomic_write_jsonl,
    prompts_from_dataset,
    read_json,
    read_jsonl,
    sha256_bytes,
)
from .rewards import HFRewardModel, RewardFunction, as_reward_function
from .shaping import _check_positive, get_safeguards, solve_threshold

logger = logging.get_logger(__name__)

__all__ = ["CalibrationConfig", "ThresholdCalibrator", "recompute_thresholds", "map_thresholds"]

#: Bump when the chunk/manifest layout changes: old folders are then refused instead of misread.
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"


@dataclass
class CalibrationConfig:
    """Settings of a :class:`ThresholdCalibrator` run (``HfArgumentParser``-friendly, TRL style).

    The sampling fields (everything but ``beta``, ``bound``, ``safeguards``, ``output_dir``,
    ``overwrite`` and ``show_progress``) identify the cached samples: changing one of them makes an
    existing ``output_dir`` unusable (refused, or wiped with ``overwrite=True``). ``beta``, ``bound`` and
    ``safeguards`` only enter the threshold, which is re-solved from the stored rewards on every run.
    """

    num_samples: int = field(default=10, metadata={"help": "Responses N sampled per prompt (the paper: 10)."})
    max_new_tokens: int = field(default=128, metadata={"help": "New tokens per sampled response."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the base policy."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling top-p (1.0 disables it)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 disables it, as in the paper)."})
    beta: float = field(default=0.667, metadata={"help": "KL strength beta (1/lambda) of the threshold."})
    bound: float = field(default=15.0, metadata={"help": "Reward bound B of the shaped reward, > 0."})
    safeguards: str = field(
        default="cd", metadata={"help": "Numerical safeguards of the threshold: 'cd', 'args' or 'none'."}
    )
    use_chat_template: Optional[bool] = field(
        default=None,
        metadata={"help": "Wrap prompts in the tokenizer's chat template (default: when it has one)."},
    )
    max_prompt_length: Optional[int] = field(
        default=None,
        metadata={"help": "Prompt token budget; longer prompts keep their end (default: context - new)."},
    )
    chunk_size: int = field(
        default=8, metadata={"help": "Prompts per generate call, per cached shard and per seed."}
    )
    seed: int = field(default=0, metadata={"help": "Base seed; samples of chunk k depend on (seed, k) only."})
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "Folder of the resumable cache and final dataset; rerun = resume."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Wipe an output_dir made with other settings instead of refusing."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})

    def __post_init__(self):
        _check_positive("beta", self.beta)
        _check_positive("bound", self.bound)
        _check_positive("temperature", self.temperature)
        for name in ("num_samples", "max_new_tokens", "chunk_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {getattr(self, name)!r}.")
        if not (0.0 < float(self.top_p) <= 1.0):
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p!r}.")
        if int(self.top_k) < 0:
            raise ValueError(f"`top_k` must be >= 0 (0 disables it), got {self.top_k!r}.")
        if self.max_prompt_length is not None and int(self.max_prompt_length) < 1:
            raise ValueError(f"`max_prompt_length` must be >= 1, got {self.max_prompt_length!r}.")
        if not isinstance(self.safeguards, str):
            raise ValueError(f"`safeguards` must be 'cd', 'args' or 'none', got {self.safeguards!r}.")
        get_safeguards(self.safeguards)

    def sampling_settings(self) -> Dict[str, Any]:
        """The fields that determine the samples (and so the cache fingerprint)."""
        keys = ("num_samples", "max_new_tokens", "temperature", "top_p", "top_k", "chunk_size", "seed")
        return {k: getattr(self, k) for k in keys}


def _short(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _prompts_digest(prompts: Sequence[str]) -> str:
    return sha256_bytes(json.dumps(list(prompts), ensure_ascii=False).encode("utf-8"))


def _chunk_seed(seed: int, chunk_index: int) -> int:
    """A seed that depends only on ``(seed, chunk_index)`` (SHA-256 mixed, so chunks are independent)."""
    digest = hashlib.sha256(f"stackshape-calibrate:{int(seed)}:{int(chunk_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _module_digest(module: torch.nn.Module) -> str:
    """A cheap fingerprint of a model's weights: names, shapes, dtypes and a strided sample of values."""
    h = hashlib.sha256(type(module).__name__.encode())
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 32)][:32].float().cpu()
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _tokenizer_identity(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    parts = [type(tokenizer).__name__, len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id]
    parts.append(template)
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _reward_identity(reward: RewardFunction) -> Dict[str, Any]:
    out: Dict[str, Any] = {"type": type(reward).__name__, "name": reward.name_or_path}
    if isinstance(reward, HFRewardModel):
        # A subclass (e.g. one that adds logging) scores the same: identify the weights, not the class.
        out["type"] = HFRewardModel.__name__
        template = reward.template
        if not isinstance(template, str):
            template = getattr(template, "__name__", "fn")
        out.update(
            weights=_module_digest(reward.model),
            tokenizer=_tokenizer_identity(reward.tokenizer),
            template=template,
            use_chat_template=reward.use_chat_template,
            max_length=reward.max_length,
        )
    return out


class _Processes:
    """Rank, world size and barrier of this run (accelerate ``PartialState``, torch.distributed, or none)."""

    def __init__(self, state=None):
        if state is not None:
            self.rank, self.world = int(state.process_index), int(state.num_processes)
            self._barrier = state.wait_for_everyone
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            self._barrier = torch.distributed.barrier
        else:
            self.rank, self.world, self._barrier = 0, 1, None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1 and self._barrier is not None:
            self._barrier()


def recompute_thresholds(
    dataset,
    beta: float,
    bound: float,
    safeguards: str = "cd",
    column: str = "threshold",
    rewards_column: str = "rewards",
):
    """Re-solve ``m*(x)`` from stored rewards for another ``(B, beta)``, without resampling.

    Sweeps over ``1/beta`` (Figure 2 of Wang et al., 2026) need one threshold per ``beta`` for the same
    samples; this re-runs :func:`~hf_stackshape.shaping.solve_threshold` on the ``rewards`` column and
    writes (or replaces) ``column``. Also adds ``base_mean_reward`` when it is missing.

    Args:
        dataset (`datasets.Dataset`): a calibration dataset (``prompt`` and ``rewards`` columns).
        beta (`float`): KL strength, > 0.
        bound (`float`): reward bound ``B``, > 0.
        safeguards (`str`, *optional*, defaults to `"cd"`): ``"cd"``, ``"args"`` or ``"none"``.
        column (`str`, *optional*, defaults to `"threshold"`): the output column.
        rewards_column (`str`, *optional*, defaults to `"rewards"`): where the N rewards per prompt are.

    Examples:

    ```python
    >>> from datasets import Dataset
    >>> from hf_stackshape.calibration import recompute_thresholds
    >>> ds = Dataset.from_dict({"prompt": ["hi"], "rewards": [[0.0, 1.0, 2.0]]})
    >>> round(recompute_thresholds(ds, beta=1.0, bound=1.0)["threshold"][0], 4)
    1.2689
    ```
    """
    beta = _check_positive("beta", beta)
    bound = _check_positive("bound", bound)
    if rewards_column not in dataset.column_names:
        raise ValueError(f"The dataset has no {rewards_column!r} column; columns: {dataset.column_names}.")
    rows = dataset[rewards_column]
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [str(i) for i in range(len(rows))]
    rewards = _rewards_tensor(rows, prompts)
    thresholds = solve_threshold(rewards, beta=beta, bound=bound, safeguards=safeguards).tolist()
    out = dataset
    if column in out.column_names:
        out = out.remove_columns(column)
    out = out.add_column(column, thresholds)
    if "base_mean_reward" not in out.column_names:
        out = out.add_column("base_mean_reward", rewards.mean(dim=-1).tolist())
    return out


def _rewards_tensor(rows: Sequence[Sequence[float]], prompts: Sequence[str]) -> torch.Tensor:
    if len(rows) == 0:
        raise ValueError("The calibration dataset is empty; there is nothing to compute a threshold for.")
    sizes = {len(r) for r in rows}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"Every prompt needs the same number N >= 1 of rewards, got sizes {sorted(sizes)}.")
    rewards = torch.tensor(rows, dtype=torch.float64)
    bad = ~torch.isfinite(rewards).all(dim=-1)
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"Prompt {i} ({_short(prompts[i])!r}) has a non-finite reward {rows[i]}; fix the reward function."
        )
    return rewards


def map_thresholds(
    dataset,
    calibration,
    prompt_column: str = "prompt",
    column: str = "threshold",
    source_column: str = "threshold",
):
    """Put the calibrated ``m*(x)`` of each prompt onto ``dataset[column]``.

    Rows are matched by prompt text (the first calibration row of a duplicated prompt wins); a prompt
    with no calibration row is an error naming it.

    Args:
        dataset (`datasets.Dataset`): rows with a ``prompt_column``.
        calibration (`datasets.Dataset`): the output of :meth:`ThresholdCalibrator.calibrate`.
        prompt_column (`str`, *optional*, defaults to `"prompt"`): the prompt column of ``dataset``.
        column (`str`, *optional*, defaults to `"threshold"`): the column to write.
        source_column (`str`, *optional*, defaults to `"threshold"`): the calibration column to read.
    """
    prompts = prompts_from_dataset(dataset, prompt_column)
    if source_column not in calibration.column_names:
        raise ValueError(f"The calibration has no {source_column!r} column: {calibration.column_names}.")
    table: Dict[str, float] = {}
    for prompt, value in zip(calibration["prompt"], calibration[source_column]):
        table.setdefault(prompt, value)
    values = []
    for i, prompt in enumerate(prompts):
        if prompt not in table:
            raise ValueError(f"Row {i} prompt {_short(prompt)!r} has no calibrated threshold; calibrate it.")
        values.append(table[prompt])
    out = dataset.remove_columns(column) if column in dataset.column_names else dataset
    return out.add_column(column, values)


class ThresholdCalibrator:
    """Estimate the Stackelberg threshold ``m*(x)`` per prompt from ``N`` base-policy samples.

    For each prompt ``x`` it samples ``N`` responses from the base model (``generate`` with
    ``num_return_sequences=N``, temperature / top-p sampling), scores them with the reward, and solves
    ``F_x(m) = 0`` exactly with :func:`~hf_stackshape.shaping.solve_threshold` (Wang et al., 2026; the
    CD safeguards by default, as the thresholds serve SRS-CD, Mudgal et al., 2023). With an
    ``output_dir`` the work is cached per chunk of prompts and a rerun resumes (see the module docs).

    Args:
        model (`PreTrainedModel`): the base causal LM ``pi_ref``.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (a pad token is set to eos if missing).
        reward: a [`RewardFunction`], a ``(model, tokenizer)`` reward-model pair, or a callable
            (anything [`as_reward_function`] accepts).
        config ([`CalibrationConfig`], *optional*): the settings; keyword arguments override its fields.

    Examples:

    ```python
    >>> from hf_stackshape import ThresholdCalibrator, load_smollm2
    >>> from hf_stackshape.rewards import load_reward
    >>> model, tokenizer = load_smollm2()  # doctest: +SKIP
    >>> reward = load_reward("vader")
    >>> calibrator = ThresholdCalibrator(model, tokenizer, reward, num_samples=4)  # doctest: +SKIP
    >>> ds = calibrator.calibrate(["Tell me about your day."], output_dir="runs/calib")  # doctest: +SKIP
    >>> ds.column_names  # doctest: +SKIP
    ['prompt_index', 'prompt', 'responses', 'rewards', 'threshold', 'base_mean_reward']
    ```
    """

    def __init__(self, model, tokenizer, reward, config: Optional[CalibrationConfig] = None, **kwargs):
        config = config if config is not None else CalibrationConfig()
        if kwargs:
            unknown = set(kwargs) - {f.name for f in dataclasses.fields(CalibrationConfig)}
            if unknown:
                raise ValueError(f"Unknown calibration settings {sorted(unknown)}; see CalibrationConfig.")
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.reward = as_reward_function(reward)
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("The tokenizer has neither a pad nor an eos token; set tokenizer.pad_token.")
            tokenizer.pad_token = tokenizer.eos_token
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if config.use_chat_template and not has_template:
            raise ValueError("use_chat_template=True, but the tokenizer has no chat template; set it False.")
        wanted = config.use_chat_template
        self.use_chat_template = has_template if wanted is None else bool(wanted)
        context = getattr(model.config, "max_position_embeddings", None)
        if config.max_prompt_length is not None:
            self.max_prompt_length = int(config.max_prompt_length)
        elif context:
            self.max_prompt_length = int(context) - config.max_new_tokens
        else:
            self.max_prompt_length = None
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(
                f"max_new_tokens={config.max_new_tokens} leaves no room for the prompt in the model's "
                f"context of {context} tokens; lower max_new_tokens."
            )
        #: What the last :meth:`calibrate` call did on this process (chunks computed / reused, rank, run id).
        self.last_run: Dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------ sampling

    def generation_config(self):
        """The ``GenerationConfig`` used for sampling (the model's own, with the calibration settings)."""
        cfg = copy.deepcopy(self.model.generation_config)
        c = self.config
        cfg.update(
            do_sample=True,
            temperature=float(c.temperature),
            top_p=float(c.top_p),
            top_k=int(c.top_k),
            max_new_tokens=int(c.max_new_tokens),
            num_return_sequences=int(c.num_samples),
            num_beams=1,
        )
        if cfg.pad_token_id is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        if cfg.eos_token_id is None:
            cfg.eos_token_id = self.tokenizer.eos_token_id
        return cfg

    def format_prompt(self, prompt: str) -> str:
        """The text fed to the base model for ``prompt`` (the chat template's user turn when enabled)."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt

    def encode_prompts(self, prompts: Sequence[str], first_index: int = 0) -> Dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` / ``attention_mask``; long prompts keep their last tokens (warns)."""
        texts = [self.format_prompt(p) for p in prompts]
        ids = self.tokenizer(texts, add_special_tokens=not self.use_chat_template)["input_ids"]
        budget = self.max_prompt_length
        for i, seq in enumerate(ids):
            if budget is not None and len(seq) > budget:
                logger.warning(
                    "Prompt %d (%r) has %d tokens, more than the budget of %d (context - max_new_tokens); "
                    "keeping its last %d tokens.",
                    first_index + i, _short(prompts[i]), len(seq), budget, budget,
                )
                ids[i] = seq[-budget:]
        width = max(len(seq) for seq in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in ids], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask}

    def _warn_reward_truncation(self, prompts: Sequence[str], first_index: int) -> None:
        reward = self.reward
        if not isinstance(reward, HFRewardModel):
            return
        lengths = [len(ids) for ids in reward.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
        for i, n in enumerate(lengths):
            if n + self.config.max_new_tokens > reward.max_length:
                logger.warning(
                    "Prompt %d (%r): %d prompt tokens + up to %d response tokens exceed the reward model's "
                    "max_length %d; the reward model sees the pair truncated from the left (the response end "
                    "is kept).",
                    first_index + i, _short(prompts[i]), n, self.config.max_new_tokens, reward.max_length,
                )

    @torch.no_grad()
    def sample_and_score(
        self, prompts: Sequence[str], chunk_index: int, first_index: int
    ) -> List[Dict[str, Any]]:
        """Sample ``N`` responses per prompt of one chunk (seeded by ``(seed, chunk_index)``) and score them.

        One ``generate`` call and one reward call for the whole chunk. Returns one row per prompt.
        """
        n = self.config.num_samples
        batch = self.encode_prompts(prompts, first_index)
        device = self.model.device
        batch = {k: v.to(device) for k, v in batch.items()}
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_chunk_seed(self.config.seed, chunk_index))
            out = self.model.generate(**batch, generation_config=self.generation_config())
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        responses = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        self._warn_reward_truncation(prompts, first_index)
        if isinstance(self.reward, HFRewardModel):
            # The N samples of a prompt share its reward-model prefix: encode it once per prompt.
            grouped = [responses[i * n : (i + 1) * n] for i in range(len(prompts))]
            scored = self.reward.score_grouped(list(prompts), grouped)
        else:
            scored = self.reward.score([p for p in prompts for _ in range(n)], responses)
        rewards = torch.as_tensor(scored, dtype=torch.float32).reshape(-1)
        if rewards.numel() != len(responses):
            raise ValueError(f"The reward returned {rewards.numel()} values for {len(responses)} responses.")
        rewards = rewards.view(len(prompts), n)
        rows = []
        for i, prompt in enumerate(prompts):
            values = rewards[i].tolist()
            if not all(math.isfinite(v) for v in values):
                raise ValueError(
                    f"The reward returned a non-finite value for prompt {first_index + i} "
                    f"({_short(prompt)!r}): {values}; fix the reward function."
                )
            rows.append(
                {
                    "prompt_index": first_index + i,
                    "prompt": prompt,
                    "responses": responses[i * n : (i + 1) * n],
                    "rewards": values,
                }
            )
        return rows

    # ------------------------------------------------------------------------------------------ cache

    def _identity(self) -> Dict[str, Any]:
        """What the samples depend on, besides the prompts (which are checked chunk by chunk)."""
        return {
            "format": _FORMAT_VERSION,
            "sampling": self.config.sampling_settings(),
            "use_chat_template": self.use_chat_template,
            "max_prompt_length": self.max_prompt_length,
            "model": {
                "name": getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__,
                "weights": _module_digest(self.model),
            },
            "tokenizer": _tokenizer_identity(self.tokenizer),
            "reward": _reward_identity(self.reward),
        }

    @staticmethod
    def _fingerprint(identity: Dict[str, Any]) -> str:
        return sha256_bytes(json.dumps(identity, sort_keys=True).encode())[:24]

    def _prepare_dir(self, out: Path, identity: Dict[str, Any], procs: _Processes) -> str:
        fingerprint = self._fingerprint(identity)
        if procs.is_main:
            manifest_path = out / _MANIFEST
            if manifest_path.is_file():
                try:
                    old = read_json(manifest_path)
                except ValueError:
                    old = {}
                if old.get("fingerprint") != fingerprint:
                    changes = _diff(old.get("identity", {}), identity)
                    if not self.config.overwrite:
                        raise ValueError(
                            f"{out} holds a calibration made with other settings ({changes}); use another "
                            "output_dir or pass overwrite=True (--overwrite true) to start fresh."
                        )
                    logger.warning("Settings changed (%s): wiping %s, starting fresh.", changes, out)
                    for path in out.glob("chunk-*"):
                        path.unlink()
                    manifest_path.unlink()
            for leftover in out.glob(".chunk-*.tmp"):  # a write cut short by a kill; never read
                leftover.unlink(missing_ok=True)
            if not manifest_path.is_file():
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_json(manifest_path, {"fingerprint": fingerprint, "identity": identity})
        procs.barrier()
        manifest = read_json(out / _MANIFEST)
        if manifest.get("fingerprint") != fingerprint:
            raise ValueError(f"Rank {procs.rank} has other settings than rank 0 for {out}; check the launch.")
        return fingerprint

    @staticmethod
    def _chunk_paths(out: Path, k: int):
        return out / f"chunk-{k:05d}.jsonl", out / f"chunk-{k:05d}.json"

    def _load_chunk(self, out: Path, k: int, prompts: Sequence[str], first: int, fingerprint: str):
        """The verified rows of chunk ``k``, or ``None`` (missing; corrupted ones are logged and removed)."""
        data_path, meta_path = self._chunk_paths(out, k)
        if not meta_path.is_file():
            return None
        problem = None
        try:
            meta = read_json(meta_path)
            raw = data_path.read_bytes()
            if meta.get("fingerprint") != fingerprint:
                problem = "written with other settings"
            elif sha256_bytes(raw) != meta.get("sha256"):
                problem = "checksum mismatch (truncated or edited)"
            elif meta.get("prompts_sha256") != _prompts_digest(prompts):
                # Not damage: the prompt list changed (e.g. a larger --limit). Only this chunk is redone.
                logger.info("Cached chunk %d in %s holds other prompts; recomputing it.", k, out)
                problem = "stale"
            else:
                rows = read_jsonl(data_path)
                if len(rows) != len(prompts) or meta.get("rows") != len(prompts):
                    problem = f"{len(rows)} rows instead of {len(prompts)}"
                elif any(
                    r.get("prompt_index") != first + i
                    or r.get("prompt") != prompts[i]
                    or len(r.get("responses", ())) != self.config.num_samples
                    or len(r.get("rewards", ())) != self.config.num_samples
                    for i, r in enumerate(rows)
                ):
                    problem = "rows do not match the prompts and settings"
                else:
                    return rows
        except (OSError, ValueError, AttributeError, TypeError) as err:
            problem = f"unreadable ({err})"
        if problem != "stale":
            logger.warning("Cached chunk %d in %s is corrupted (%s); recomputing it.", k, out, problem)
        for path in (meta_path, data_path):
            path.unlink(missing_ok=True)
        return None

    # ------------------------------------------------------------------------------------------ main entry

    def calibrate(
        self,
        prompts: Union[Sequence[str], Any],
        column: str = "prompt",
        output_dir: Optional[Union[str, os.PathLike]] = None,
        state=None,
    ):
        """Sample, score and threshold every prompt; returns a ``datasets.Dataset``.

        Args:
            prompts (`list[str]` or `datasets.Dataset`): the prompts (a dataset's ``column`` is used).
            column (`str`, *optional*, defaults to `"prompt"`): the prompt column of a dataset ``prompts``.
            output_dir (`str`, *optional*): overrides ``config.output_dir``; enables caching and resume, and
                receives ``dataset/`` (``save_to_disk``), ``calibration.jsonl``, ``calibration_config.json``.
            state (`accelerate.PartialState`, *optional*): for multi-process runs (default: torch.distributed
                when it is initialised, else a single process). Multi-process runs need an ``output_dir``.

        Returns:
            `datasets.Dataset` with columns ``prompt_index``, ``prompt``, ``responses`` (N strings),
            ``rewards`` (N floats), ``threshold`` (``m*(x)``) and ``base_mean_reward``, in prompt order,
            identical on every rank.
        """
        if hasattr(prompts, "column_names"):
            prompts = prompts_from_dataset(prompts, column)
        elif isinstance(prompts, str):
            raise ValueError("Pass a list of prompts (wrap a single prompt as [prompt]).")
        else:
            prompts = list(prompts)
            for i, p in enumerate(prompts):
                if not isinstance(p, str):
                    raise ValueError(f"Prompt {i} is a {type(p).__name__}, not a string: {p!r:.80}.")
        if not prompts:
            raise ValueError("The prompt list is empty; pass at least one prompt.")
        c = self.config
        procs = _Processes(state)
        out_dir = output_dir if output_dir is not None else c.output_dir
        out = Path(out_dir) if out_dir is not None else None
        if out is None and procs.world > 1:
            raise ValueError("A multi-process calibration needs an output_dir (ranks exchange chunks there).")

        num_chunks = math.ceil(len(prompts) / c.chunk_size)
        bounds = [(k * c.chunk_size, min(len(prompts), (k + 1) * c.chunk_size)) for k in range(num_chunks)]
        fingerprint = self._prepare_dir(out, self._identity(), procs) if out is not None else None
        run_id = uuid.uuid4().hex[:12]
        stats: Dict[str, Any] = {"run_id": run_id, "rank": procs.rank, "world_size": procs.world,
                                 "computed": [], "reused": []}
        self.last_run = stats
        rows_by_chunk: Dict[int, List[Dict[str, Any]]] = {}
        mine = list(range(procs.rank, num_chunks, procs.world))
        total = sum(bounds[k][1] - bounds[k][0] for k in mine)
        show = c.show_progress and procs.is_main
        bar = tqdm(total=total, desc="calibrate", unit="prompt", disable=not show)
        with bar:
            for k in mine:
                first, stop = bounds[k]
                chunk_prompts = prompts[first:stop]
                rows = None if out is None else self._load_chunk(out, k, chunk_prompts, first, fingerprint)
                if rows is not None:
                    stats["reused"].append(k)
                else:
                    started = time.perf_counter()
                    rows = self.sample_and_score(chunk_prompts, k, first)
                    stats["computed"].append(k)
                    if out is not None:
                        data_path, meta_path = self._chunk_paths(out, k)
                        digest = atomic_write_jsonl(data_path, rows)
                        meta = {
                            "chunk": k, "rows": len(rows), "sha256": digest, "fingerprint": fingerprint,
                            "prompts_sha256": _prompts_digest(chunk_prompts), "rank": procs.rank,
                            "world_size": procs.world, "run_id": run_id,
                            "seconds": round(time.perf_counter() - started, 3),
                        }
                        atomic_write_json(meta_path, meta)
                rows_by_chunk[k] = rows
                bar.update(stop - first)
        if stats["reused"]:
            logger.info("Reused %d cached chunk(s) from %s.", len(stats["reused"]), out)

        procs.barrier()
        for k in range(num_chunks):
            if k not in rows_by_chunk:
                first, stop = bounds[k]
                rows = self._load_chunk(out, k, prompts[first:stop], first, fingerprint)
                if rows is None:
                    raise RuntimeError(f"Chunk {k} is missing from {out} after all ranks finished; rerun.")
                rows_by_chunk[k] = rows
        dataset = self._to_dataset([r for k in range(num_chunks) for r in rows_by_chunk[k]])
        if out is not None and procs.is_main:
            self._save(dataset, out)
        procs.barrier()
        return dataset

    def _to_dataset(self, rows: List[Dict[str, Any]]):
        from datasets import Dataset

        ds = Dataset.from_dict(
            {
                "prompt_index": [r["prompt_index"] for r in rows],
                "prompt": [r["prompt"] for r in rows],
                "responses": [r["responses"] for r in rows],
                "rewards": [r["rewards"] for r in rows],
            }
        )
        return self.recompute_thresholds(ds)

    def recompute_thresholds(
        self,
        dataset,
        beta: Optional[float] = None,
        bound: Optional[float] = None,
        safeguards: Optional[str] = None,
        column: str = "threshold",
    ):
        """:func:`recompute_thresholds`; ``beta``, ``bound`` and ``safeguards`` default to this config's."""
        c = self.config
        return recompute_thresholds(
            dataset,
            beta=c.beta if beta is None else beta,
            bound=c.bound if bound is None else bound,
            safeguards=c.safeguards if safeguards is None else safeguards,
            column=column,
        )

    def _save(self, dataset, out: Path) -> None:
        final = out / "dataset"
        tmp = out / f".dataset-{uuid.uuid4().hex[:8]}"
        dataset.save_to_disk(str(tmp))
        old = None
        if final.exists():
            old = out / f".dataset-old-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        atomic_write_jsonl(out / "calibration.jsonl", dataset.to_list())
        atomic_write_json(out / "calibration_config.json", dataclasses.asdict(self.config))


def _diff(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> str:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _diff(a, b, f"{prefix}{key}.")
            if inner:
                changes.append(inner)
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return "; ".join(changes[:4])
