"""Per-prompt thresholds ``m*(x)`` from base-policy samples: the offline half of SRS-CD.

Stackelberg reward shaping (Wang et al., 2026, arXiv 2602.02572) replaces the reward ``r_U`` by
``B * sigmoid(alpha * (r_U - m*(x)))``, where the threshold ``m*(x)`` is the root of
``F_x(m) = E_{y ~ pi_ref}[w_m(y) (r_U(x, y) - m)]``. For Controlled Decoding (Mudgal et al., 2023) the
value function is trained on rollouts of the base policy, so ``m*(x)`` is estimated once per prompt
from ``N`` sampled responses (the paper: N = 10, temperature 0.7, top-p 0.9, the model's top-k). ARGS
(Khanov et al., 2024) can use the same per-prompt thresholds instead of per-step ones.

:class:`ThresholdCalibrator` does that at scale:

* batched sampling (``generate`` with ``num_return_sequences=N`` over a chunk of prompts, the model's own
  ``generation_config`` plus the calibration settings) and batched reward scoring (one call per chunk:
  :meth:`HFRewardModel.score_grouped` runs each prompt's RM prefix once for its N responses; other rewards get
  one :meth:`RewardFunction.score` call; never one response at a time);
* the threshold comes from :func:`hf_stackshape.core.shaping.solve_threshold` (never re-derived here), and
  :func:`~hf_stackshape.calibration.recompute_thresholds` re-solves it for other ``(B, beta)``;
* with an ``output_dir``, a resumable run (:func:`hf_stackshape.utils.runs.open_run`: lock, settings manifest,
  ``overwrite``) whose chunks live in a :class:`~hf_stackshape.calibration.store.ChunkStore`: chunk ``k``
  is sampled with its own seed (from ``(seed, k)`` only); a rerun reuses every verified chunk, recomputes
  corrupted, unfinished or missing ones (and those whose prompts changed, e.g. a larger ``--limit``), and
  refuses a folder made with another model (weights, dtype, ``generation_config``), tokenizer, reward or
  sampling settings, naming what changed;
* multi-process runs (``torchrun``, ``accelerate``): rank ``r`` of ``W`` samples chunks ``r, r+W, ...``
  and every rank assembles the same dataset, identical to a single-process run with the same seed.

Edge-case policy (documented, tested):

* a prompt longer than the model's context budget (``max_prompt_length``, default the context minus
  ``max_new_tokens``) is truncated **from the left**, keeping its end, with a logged warning; a reward
  model whose context cannot hold prompt + response truncates from the left too (``HFRewardModel``),
  and the calibrator warns about it;
* a prompt that already holds ``Human:`` / ``Assistant:`` turns (HH-RLHF) gets the chat template like any other
  unless ``dialogue_prompts_as_text`` (the ``paper`` preset, as the authors' rollouts); with
  ``stop_at_new_turn`` (the preset, their ``--stop_on_human``) a response ends where a new ``Human:`` / ``User:``
  turn begins, and is scored without it (:mod:`hf_stackshape.utils.dialogue`);
* an empty response is scored as given (the reward sees the empty string);
* duplicate prompts are kept, each its own row with its own samples (they get different chunk seeds);
* a NaN or infinite reward is an error naming the prompt;
* prompt files are read by :func:`hf_stackshape.utils.io.load_prompts` (errors name the file and line).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..rewards.adapters import HFRewardModel, as_reward_function, reward_fingerprint, score_groups
from ..utils.dialogue import STOP_STRINGS, cut_all_at_new_turn, render_prompt
from ..utils.distributed import Processes
from ..utils.deprecation import move_renamed, renamed_fields, warn_renamed
from ..utils.io import prompts_from_dataset
from ..utils.prompts import encode_prompts
from ..utils.runs import model_fingerprint, open_run, tokenizer_fingerprint
from .config import CalibrationConfig
from .store import ChunkStore, chunk_seed
from .thresholds import REWARD_KEY, short_text, recompute_thresholds, reward_record

logger = logging.get_logger(__name__)

__all__ = ["ThresholdCalibrator"]

#: Bump when the chunk layout changes: old runs are then refused instead of misread.
_FORMAT_VERSION = 2


class ThresholdCalibrator:
    """Estimate the Stackelberg threshold ``m*(x)`` per prompt from ``N`` base-policy samples.

    For each prompt ``x`` it samples ``N`` responses from the base model (``generate`` with
    ``num_return_sequences=N``, temperature / top-p sampling), scores them with the reward, and solves
    ``F_x(m) = 0`` exactly with :func:`~hf_stackshape.core.shaping.solve_threshold` (Wang et al., 2026; the
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
            move_renamed(kwargs, renamed_fields(CalibrationConfig), "ThresholdCalibrator")
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
        if config.chat_template and not has_template:
            raise ValueError("chat_template=True, but the tokenizer has no chat template; set it False.")
        wanted = config.chat_template
        self.chat_template = has_template if wanted is None else bool(wanted)
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
        """The ``GenerationConfig`` used for sampling: the model's own (repetition penalty, EOS list, top-k, ...)
        with the calibration settings on top; ``top_k=None`` keeps the model's top-k, as the authors did."""
        cfg = copy.deepcopy(self.model.generation_config)
        c = self.config
        settings = dict(
            do_sample=True,
            temperature=float(c.temperature),
            top_p=float(c.top_p),
            max_new_tokens=int(c.max_new_tokens),
            num_return_sequences=int(c.num_samples),
            num_beams=1,
        )
        if c.top_k is not None:
            settings["top_k"] = int(c.top_k)
        if c.stop_at_new_turn:
            settings["stop_strings"] = list(STOP_STRINGS)
        cfg.update(**settings)
        if cfg.pad_token_id is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        if cfg.eos_token_id is None:
            cfg.eos_token_id = self.tokenizer.eos_token_id
        return cfg

    @property
    def use_chat_template(self) -> bool:
        """Deprecated alias of :attr:`chat_template` (whether prompts are wrapped in the chat template)."""
        warn_renamed("use_chat_template", "chat_template", "ThresholdCalibrator")
        return self.chat_template

    def render_prompt(self, prompt: str):
        """``(text, used_chat_template)`` for ``prompt``: :func:`hf_stackshape.utils.dialogue.render_prompt` with this
        run's ``chat_template`` and ``dialogue_prompts_as_text``."""
        return render_prompt(self.tokenizer, prompt, self.chat_template, self.config.dialogue_prompts_as_text)

    def format_prompt(self, prompt: str) -> str:
        """The text fed to the base model for ``prompt`` (the chat template's user turn when enabled; an HH-format
        prompt stays text with ``dialogue_prompts_as_text``)."""
        return self.render_prompt(prompt)[0]

    def encode_prompts(self, prompts: Sequence[str], first_index: int = 0) -> Dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` / ``attention_mask``; long prompts keep their last tokens (warns).

        A chat-templated prompt is encoded without the tokenizer's special tokens (the template holds them), a
        text prompt with them."""
        rendered = [self.render_prompt(p) for p in prompts]
        budget = self.max_prompt_length

        def warn(row: int, index: int, length: int) -> None:
            logger.warning(
                "Prompt %d (%r) has %d tokens, more than the budget of %d (context - max_new_tokens); "
                "keeping its last %d tokens.",
                index, short_text(prompts[row]), length, budget, budget,
            )

        return encode_prompts(
            self.tokenizer, [text for text, _ in rendered], budget, first_index,
            add_special_tokens=[not templated for _, templated in rendered], on_truncate=warn,
        )

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
                    first_index + i, short_text(prompts[i]), n, self.config.max_new_tokens, reward.max_length,
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
            torch.manual_seed(chunk_seed(self.config.seed, chunk_index))
            stop = {"tokenizer": self.tokenizer} if self.config.stop_at_new_turn else {}  # for the stop strings
            out = self.model.generate(**batch, generation_config=self.generation_config(), **stop)
        new_tokens = out[:, batch["input_ids"].shape[1] :]
        responses = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        # The authors' --stop_on_human: a response ends where a new user turn begins (hf_stackshape.utils.dialogue).
        responses = cut_all_at_new_turn(responses, self.config.stop_at_new_turn)
        self._warn_reward_truncation(prompts, first_index)
        # The N samples of a prompt share its reward-model prefix: an HFRewardModel encodes it once per prompt.
        rewards = score_groups(self.reward, list(prompts), [responses[i * n : (i + 1) * n] for i in range(len(prompts))])
        rows = []
        for i, prompt in enumerate(prompts):
            values = rewards[i].tolist()
            if not all(math.isfinite(v) for v in values):
                raise ValueError(
                    f"The reward returned a non-finite value for prompt {first_index + i} "
                    f"({short_text(prompt)!r}): {values}; fix the reward function."
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

    # ------------------------------------------------------------------------------------------ the run

    def fingerprint(self) -> Dict[str, Any]:
        """What the samples depend on besides the prompts (checked chunk by chunk): the run's manifest.

        The model's identity includes its weights (or Hub revision), dtype and ``generation_config``; the
        reward's is :meth:`RewardFunction.fingerprint` (a callable's module, name and source digest).
        """
        return {
            "format": _FORMAT_VERSION,
            "sampling": self.config.sampling_settings(),
            "use_chat_template": self.chat_template,  # the manifest's key, unchanged
            "max_prompt_length": self.max_prompt_length,
            "model": model_fingerprint(self.model),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "reward": reward_fingerprint(self.reward),
            # How many pairs one reward-model forward pass scores: padding within a batch moves the scores
            # in their last bits, so it is part of what the samples' rewards depend on.
            "reward_batch_size": getattr(self.reward, "batch_size", None),
        }

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
            output_dir (`str`, *optional*): overrides ``config.output_dir``; makes the run resumable
                (:func:`hf_stackshape.utils.runs.open_run`) and receives ``dataset/`` (``save_to_disk``),
                ``calibration.jsonl`` and ``calibration_config.json``.
            state (`accelerate.PartialState`, *optional*): for multi-process runs (default: torch.distributed
                when it is initialised, else a single process). Multi-process runs need an ``output_dir``.

        Returns:
            `datasets.Dataset` with columns ``prompt_index``, ``prompt``, ``responses`` (N strings),
            ``rewards`` (N floats), ``threshold`` (``m*(x)``) and ``base_mean_reward``, in prompt order,
            identical on every rank.

        Raises:
            hf_stackshape.utils.runs.RunMismatchError: ``output_dir`` holds a run with other settings (the message
                names them) and ``overwrite`` is off.
            hf_stackshape.utils.runs.RunLockedError: another process is calibrating into ``output_dir``.
        """
        prompts = self._check_prompts(prompts, column)
        c = self.config
        out_dir = output_dir if output_dir is not None else c.output_dir
        with contextlib.ExitStack() as stack:
            if out_dir is None:
                procs = Processes(state)
                if procs.world > 1:
                    raise ValueError("A multi-process calibration needs an output_dir (ranks exchange chunks there).")
                run, store = None, None
                rank, world = 0, 1
            else:
                run = stack.enter_context(
                    open_run(out_dir, self.fingerprint(), kind="calibrate", overwrite=c.overwrite, state=state)
                )
                store = ChunkStore(run.output, run.digest, c.num_samples)
                rank, world = run.rank, run.world_size
            return self._calibrate(prompts, run, store, rank, world)

    @staticmethod
    def _check_prompts(prompts, column: str) -> List[str]:
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
        return prompts

    def _calibrate(self, prompts: List[str], run, store: Optional[ChunkStore], rank: int, world: int):
        c = self.config
        num_chunks = math.ceil(len(prompts) / c.chunk_size)
        bounds = [(k * c.chunk_size, min(len(prompts), (k + 1) * c.chunk_size)) for k in range(num_chunks)]
        run_id = uuid.uuid4().hex[:12]
        stats: Dict[str, Any] = {"run_id": run_id, "rank": rank, "world_size": world, "computed": [], "reused": []}
        self.last_run = stats
        rows_by_chunk: Dict[int, List[Dict[str, Any]]] = {}
        mine = list(range(rank, num_chunks, world))
        total = sum(bounds[k][1] - bounds[k][0] for k in mine)
        bar = tqdm(total=total, desc="calibrate", unit="prompt", disable=not (c.show_progress and rank == 0))
        with bar:
            for k in mine:
                first, stop = bounds[k]
                chunk_prompts = prompts[first:stop]
                rows = None if store is None else store.load(k, chunk_prompts, first)
                if rows is not None:
                    stats["reused"].append(k)
                else:
                    started = time.perf_counter()
                    rows = self.sample_and_score(chunk_prompts, k, first)
                    stats["computed"].append(k)
                    if store is not None:
                        store.save(k, rows, chunk_prompts, rank=rank, world_size=world, run_id=run_id,
                                   seconds=round(time.perf_counter() - started, 3))
                rows_by_chunk[k] = rows
                bar.update(stop - first)
        if stats["reused"]:
            logger.info("Reused %d cached chunk(s) from %s.", len(stats["reused"]), run.output)
        if run is not None:
            run.barrier()
        for k in range(num_chunks):
            if k not in rows_by_chunk:  # another rank's chunk
                first, stop = bounds[k]
                rows = store.load(k, prompts[first:stop], first)
                if rows is None:
                    raise RuntimeError(f"Chunk {k} is missing from {run.output} after all ranks finished; rerun.")
                rows_by_chunk[k] = rows
        dataset = self._to_dataset([r for k in range(num_chunks) for r in rows_by_chunk[k]])
        if store is not None and rank == 0:
            store.save_outputs(dataset, {**c.to_dict(), REWARD_KEY: reward_record(self.reward)})
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
