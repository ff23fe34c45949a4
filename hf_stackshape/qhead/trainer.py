"""Train CD value / Q heads on Stackelberg-shaped rewards (SRS-CD, Wang et al., 2026, arXiv 2602.02572, section 3).

Two objectives: the paper's (``loss_type="consistency"``, the authors' ``train_value_function.py``: MSE of the
value at the last response token to the shaped reward plus ``consistency_weight`` x the MSE between consecutive
prefix values, pooled over the batch) and CD-FUDGE of Controlled Decoding (Mudgal et al., 2023; ``"fudge"``:
every response prefix regressed to the shaped reward), alone or with the consistency term.

[`QHeadTrainerConfig`] + [`QHeadTrainer`] follow TRL's config + trainer pairs (``RewardConfig`` /
``RewardTrainer``): the config extends `transformers.TrainingArguments` with only what is specific, and the
trainer subclasses `transformers.Trainer`, overriding dataset preparation and ``compute_loss``.

The shaped target of every rollout is computed here, with ``hf_stackshape.core.shaping.get_transform`` applied per
prompt over its rollouts with the calibrated threshold ``m*(x)``: the very function ARGS and CD decode with,
so training and decoding cannot disagree.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.utils import logging

from ..core.presets import FromPresetMixin
from ..core.shaping import get_transform
from ..utils.deprecation import deprecated_field, resolve_renamed_fields
from ..utils.dialogue import render_prompt
from ..utils.io import atomic_write_text
from ..utils.modeling import unwrap_peft
from .modeling_qhead import ADAPTER_FOLDER, QHeadModel, merge_tags, render_model_card

logger = logging.get_logger(__name__)

__all__ = [
    "QHeadTrainerConfig",
    "QHeadTrainer",
    "QHeadDataCollator",
    "normalize_rollout_columns",
    "shape_rollouts",
    "split_by_prompt",
    "split_by_sample",
    "spearman",
    "LOSS_TYPES",
]

LOSS_TYPES = ("fudge", "consistency", "fudge+consistency")
GROUPED_COLUMNS = ("prompt", "responses", "rewards")
FLAT_COLUMNS = ("prompt", "response", "reward")
PROCESSED_COLUMNS = ("input_ids", "response_start", "target")


@dataclass
class QHeadTrainerConfig(FromPresetMixin, TrainingArguments):
    r"""Configuration of the [`QHeadTrainer`]: only the Q-head specific fields; every other field is a
    `transformers.TrainingArguments` field. Parseable by `transformers.HfArgumentParser`.

    Parameters:
        > Shaping (the target; the same settings CD decodes with)

        transform (`str`, *optional*, defaults to `"srs"`):
            Reward transform applied per prompt over its rollouts: ``srs``, ``hard``, ``raw``, ``minmax``,
            ``meanstd``, ``meansoft`` (see `hf_stackshape.get_transform`).
        bound (`float`, *optional*, defaults to `15.0`): the reward bound ``B`` (paper's CD setting).
        alpha (`float`, *optional*, defaults to `1.0`): sigmoid sharpness of ``srs`` (paper's CD setting).
        beta (`float`, *optional*, defaults to `0.667`): KL strength used in the threshold (paper's CD setting).
        safeguards (`str`, *optional*, defaults to `"cd"`): ``none``, ``args`` or ``cd`` numerical safeguards.

        > Loss

        loss_type (`str`, *optional*, defaults to `"fudge"`):
            ``consistency`` (the paper's SRS-CD loss, the ``paper`` preset with weight 1.0): the value at the last
            response token regressed to the shaped target, plus ``consistency_weight`` x the MSE between
            consecutive prefix values ``V_t, V_{t+1}`` pooled over every valid pair of the batch. ``fudge``
            (CD-FUDGE, Mudgal et al., 2023): every response prefix regressed to the target (for a ``q`` head
            ``Q(prefix, token actually taken)``). ``fudge+consistency``: the CD-FUDGE term plus the consistency term.
        consistency_weight (`float`, *optional*, defaults to `0.1`): weight of the consistency term.

        > Validation and early stopping

        validation_split (`float`, *optional*, defaults to `0.1`): when no ``eval_dataset`` is given, this fraction
            of the prompts (all rollouts of a prompt together, chosen with ``seed``) is held out; the trainer then
            evaluates every epoch (``eval_strategy="epoch"`` unless set) and reports the validation MSE of the value
            at the last token (``eval_mse``, the authors' early-stopping metric), at mid-response (``eval_mse_mid``)
            and the Spearman correlations of the value with the realised shaped reward (``eval_spearman_last``,
            ``eval_spearman_mid``). ``0`` trains on everything.
        validation_split_by (`str`, *optional*, defaults to `"prompt"`): ``"prompt"`` holds out whole prompts (every
            rollout of a prompt on one side: validation measures prompts the head has not seen, i.e. how it
            generalises, which is what CD needs at test time); ``"sample"`` holds out rollouts at random, as the
            authors' ``train_value_function.py`` does (``torch.utils.data.random_split`` with ``seed``, at least one
            rollout; the ``paper`` preset, with 5%).
        early_stopping_patience (`int`, *optional*): stop after this many evaluations without a lower ``eval_mse``
            and reload the best checkpoint (sets ``load_best_model_at_end``, ``metric_for_best_model="mse"``,
            saves at the evaluation strategy and keeps ``save_total_limit=1`` unless set). The paper uses 5.

        > Data

        max_length (`int`, *optional*, defaults to `512`): prompt + response tokens kept (prompt cut on the left,
            response on the right); ``None`` keeps the whole prompt (the ``paper`` preset).
        max_response_length (`int`, *optional*): response tokens kept (cut on the right) before ``max_length``
            applies; the authors keep 128 (the ``paper`` preset), unset keeps all.
        dialogue_prompts_as_text (`bool`, *optional*): a prompt that already holds ``Human:`` / ``Assistant:``
            turns is read as text, without the chat template, as the calibrator's ``dialogue_prompts_as_text``
            generated it (``stackshape train-qhead`` follows the calibration's setting; the ``paper`` preset: on).
        chat_template (`bool`, *optional*): format prompts with the tokenizer's chat template
            (``add_generation_prompt=True``), as the rollouts were generated (the calibrator's ``chat_template``);
            CD must then be given chat-formatted prompts too. ``None``: when the tokenizer has a chat template
            (``stackshape train-qhead`` follows the calibration's setting).
        dataset_num_proc (`int`, *optional*): worker processes of the tokenising `Dataset.map` (as in TRL).
        precompute_hidden_states (`bool`, *optional*, defaults to `True`): with a frozen backbone, run it once
            over the data and reuse its last hidden states every epoch (ignored when the backbone trains, e.g.
            LoRA). They are kept in CPU memory in the backbone's dtype: total tokens x hidden size x bytes (e.g.
            10k rollouts x 160 tokens x 576 x 4 B = 3.7 GB for SmolLM2 in float32); turn it off when that does not
            fit. Measured on SmolLM2-135M (CPU, 32 rollouts): the one-off pass costs about one epoch, after which
            an epoch takes ~0.85 s instead of ~15 s, so 15 epochs (the paper's setting) run about 10x faster.
        reward_model_name_or_path (`str`, *optional*): recorded in the saved head's config and model card.
        base_model_name_or_path (`str`, *optional*): recorded in the saved head's config and model card.

    ``QHeadTrainerConfig.from_preset(name, **overrides)`` (:class:`~hf_stackshape.core.presets.FromPresetMixin`)
    takes a preset's ``qhead_trainer`` settings. ``"paper"``: the authors' ``train_value_function.py`` (the
    ``consistency`` loss with weight 1.0, Adam without weight decay (AdamW with weight decay 0) at a constant lr
    1e-4, batch 64, 15 epochs, grad clip 1, early stopping with patience 5) on ``srs`` targets (``B = 15``,
    ``alpha = 1``, ``beta = 0.667``, CD safeguards).

    Examples:

    ```python
    >>> from hf_stackshape import QHeadTrainerConfig
    >>> args = QHeadTrainerConfig.from_preset("paper", output_dir="qhead", report_to="none")
    >>> args.loss_type, args.consistency_weight, args.early_stopping_patience
    ('consistency', 1.0, 5)
    ```
    """

    _preset_component = "qhead_trainer"
    #: Deprecated field names (``utils.deprecation``): the old name warns and means the new one.
    RENAMED_FIELDS = {"apply_chat_template": "chat_template"}

    learning_rate: float = field(default=1e-4, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the trainer selects its own columns."}
    )
    transform: str = field(
        default="srs", metadata={"help": "Reward transform: srs, hard, raw, minmax, meanstd, meansoft."}
    )
    bound: float = field(default=15.0, metadata={"help": "Reward bound B of the shaped reward."})
    alpha: float = field(default=1.0, metadata={"help": "Sigmoid sharpness alpha of srs."})
    beta: float = field(default=0.667, metadata={"help": "KL strength beta used in the threshold."})
    safeguards: str = field(default="cd", metadata={"help": "Numerical safeguards: none, args or cd."})
    loss_type: str = field(
        default="fudge", metadata={"help": "fudge, consistency or fudge+consistency.", "choices": list(LOSS_TYPES)}
    )
    consistency_weight: float = field(default=0.1, metadata={"help": "Weight of the consistency term."})
    validation_split: float = field(
        default=0.1,
        metadata={"help": "Fraction of prompts held out (seeded) for validation MSE, Spearman and early stopping."},
    )
    early_stopping_patience: Optional[int] = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without a lower validation MSE and reload the best checkpoint "
            "(default: no early stopping; the paper preset: 5)."
        },
    )
    validation_split_by: str = field(
        default="prompt",
        metadata={"help": "Hold out whole prompts ('prompt') or rollouts at random ('sample', the authors').",
                  "choices": ["prompt", "sample"]},
    )
    max_length: Optional[int] = field(
        default=512, metadata={"help": "Max prompt + response tokens (unset: no limit, the whole prompt is kept)."}
    )
    max_response_length: Optional[int] = field(
        default=None, metadata={"help": "Max response tokens, cut on the right (the authors: 128)."}
    )
    dialogue_prompts_as_text: Optional[bool] = field(
        default=None,
        metadata={"help": "Read a prompt holding 'Human:'/'Assistant:' turns as text, without the chat template, as "
                  "the calibration did (default: follow the calibration's setting, else off)."},
    )
    dataset_num_proc: Optional[int] = field(
        default=None, metadata={"help": "Worker processes for tokenising the rollouts (Dataset.map)."}
    )
    chat_template: Optional[bool] = field(
        default=None,
        metadata={"help": "Format prompts with the chat template, as the rollouts were generated (default: follow "
                  "the calibration's setting; without one, when the tokenizer has a chat template)."},
    )
    precompute_hidden_states: bool = field(
        default=True, metadata={"help": "With a frozen backbone, compute hidden states once and reuse them."}
    )
    reward_model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Reward model id (card)."})
    base_model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Base model id (card)."})
    #: Deprecated alias of ``chat_template`` (warns; ``None`` once moved there).
    apply_chat_template: Optional[bool] = deprecated_field("chat_template")

    def __post_init__(self):
        resolve_renamed_fields(self)
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.consistency_weight < 0:
            raise ValueError(f"`consistency_weight` must be >= 0, got {self.consistency_weight!r}.")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"`max_length` must be >= 2 or None (no limit), got {self.max_length!r}.")
        if self.max_response_length is not None and self.max_response_length < 1:
            raise ValueError(f"`max_response_length` must be >= 1 or None (no limit), got {self.max_response_length!r}.")
        if self.validation_split_by not in ("prompt", "sample"):
            raise ValueError(f"`validation_split_by` must be 'prompt' or 'sample', got {self.validation_split_by!r}.")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"`validation_split` must be in [0, 1), got {self.validation_split!r}.")
        if self.label_names is None:
            self.label_names = ["target"]  # so evaluation computes the loss
        if self.validation_split > 0 and str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
            self.eval_strategy = "epoch"
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(f"`early_stopping_patience` must be >= 1, got {self.early_stopping_patience!r}.")
            if str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
                self.eval_strategy = "epoch"
            self.save_strategy = self.eval_strategy
            self.load_best_model_at_end = True
            self.metric_for_best_model = self.metric_for_best_model or "mse"
            self.greater_is_better = False
            if self.save_total_limit is None:
                self.save_total_limit = 1
        get_transform(self.transform)  # fail early on an unknown name
        super().__post_init__()

    def shaping_transform(self):
        """The configured reward transform (``get_transform`` with this config's settings)."""
        return get_transform(
            self.transform, bound=self.bound, alpha=self.alpha, beta=self.beta, safeguards=self.safeguards
        )


def _missing(columns: Sequence[str], needed: Sequence[str]) -> List[str]:
    return [c for c in needed if c not in columns]


def shape_rollouts(dataset, transform) -> Dict[str, list]:
    """Flatten a calibration dataset to ``{"prompt", "response", "target"}`` with shaped targets.

    Accepts the grouped schema (``prompt``, ``responses``, ``rewards``, optional ``threshold``) or the flat one
    (``prompt``, ``response``, ``reward``, optional ``threshold``; rows of one prompt are grouped by prompt
    text). The transform is applied per prompt over its rollouts, with ``threshold=`` the stored ``m*(x)`` when
    the column exists (else the transform solves it from the rollouts).
    """
    columns = list(dataset.column_names)
    if all(c in columns for c in GROUPED_COLUMNS):
        prompts = list(dataset["prompt"])
        responses = [list(r) for r in dataset["responses"]]
        rewards = [[float(x) for x in r] for r in dataset["rewards"]]
        thresholds = list(dataset["threshold"]) if "threshold" in columns else None
    elif all(c in columns for c in FLAT_COLUMNS):
        groups: "OrderedDict[str, list]" = OrderedDict()
        has_thr = "threshold" in columns
        for i, (p, r, u) in enumerate(zip(dataset["prompt"], dataset["response"], dataset["reward"])):
            g = groups.setdefault(p, [[], [], None])
            g[0].append(r)
            g[1].append(float(u))
            if has_thr:
                g[2] = dataset[i]["threshold"] if g[2] is None else g[2]
        prompts = list(groups)
        responses = [g[0] for g in groups.values()]
        rewards = [g[1] for g in groups.values()]
        thresholds = [g[2] for g in groups.values()] if has_thr else None
    else:
        grouped, flat = _missing(columns, GROUPED_COLUMNS), _missing(columns, FLAT_COLUMNS)
        raise ValueError(
            f"The dataset lacks the columns a Q-head needs: missing {grouped} for the grouped schema (prompt, "
            f"responses, rewards, threshold) or {flat} for the flat one (prompt, response, reward, threshold); "
            f"it has {columns}."
        )
    for i, (resp, rew) in enumerate(zip(responses, rewards)):
        if len(resp) != len(rew) or not resp:
            raise ValueError(f"Prompt {i} has {len(resp)} responses but {len(rew)} rewards; they must match (>= 1).")
    n_max = max(len(r) for r in rewards)
    padded = torch.zeros(len(rewards), n_max, dtype=torch.float64)
    mask = torch.zeros(len(rewards), n_max, dtype=torch.bool)
    for i, r in enumerate(rewards):
        padded[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
        mask[i, : len(r)] = True
    threshold = None
    if thresholds is not None and getattr(transform, "uses_threshold", False):
        if any(t is None for t in thresholds):
            raise ValueError("The `threshold` column has missing values; rerun the ThresholdCalibrator.")
        threshold = torch.tensor([float(t) for t in thresholds], dtype=torch.float64)
    shaped = transform(padded, mask=mask, threshold=threshold)
    out: Dict[str, list] = {"prompt": [], "response": [], "target": []}
    for i, resp in enumerate(responses):
        for j, text in enumerate(resp):
            out["prompt"].append(prompts[i])
            out["response"].append(text)
            out["target"].append(float(shaped[i, j]))
    return out


def split_by_prompt(prompts: Sequence[str], fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Row indices ``(train, validation)`` holding out ``fraction`` of the distinct prompts (at least one, none
    when there are fewer than two prompts), chosen with a local generator seeded by ``seed``: every rollout of a
    prompt lands on the same side, so validation measures prompts the head has not seen."""
    distinct = list(OrderedDict.fromkeys(prompts))
    if fraction <= 0 or len(distinct) < 2:
        return list(range(len(prompts))), []
    n_val = min(len(distinct) - 1, max(1, int(fraction * len(distinct))))
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(int(seed))).tolist()
    held = {distinct[i] for i in order[:n_val]}
    train = [i for i, p in enumerate(prompts) if p not in held]
    return train, [i for i, p in enumerate(prompts) if p in held]


def split_by_sample(n: int, fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Row indices ``(train, validation)`` holding out ``max(1, floor(fraction * n))`` rows at random (none when
    ``fraction`` is 0 or ``n < 2``), drawn as ``torch.utils.data.random_split(range(n), [n - n_val, n_val],
    generator=torch.Generator().manual_seed(seed))`` draws them: the authors' split (Wang et al., 2026,
    ``train_value_function.py``). Rollouts of one prompt may land on both sides."""
    if fraction <= 0 or n < 2:
        return list(range(n)), []
    n_val = min(n - 1, max(1, int(math.floor(fraction * n))))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return order[: n - n_val], order[n - n_val :]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); ``nan`` when either side is constant."""
    import numpy as np

    def ranks(v):
        v = np.asarray(v, dtype=np.float64)
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return sums[inverse] / counts[inverse]

    rx, ry = ranks(x), ranks(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


#: Conversation prompts travel through shaping and splitting as strings: this prefix + their JSON.
_CONVERSATION = "\x00conversation:"
#: TRL's column names -> ours (TRL's prompt-completion datasets: ``prompt`` / ``completion``).
_TRL_COLUMNS = {"completion": "response", "completions": "responses"}


def _message_text(value, what: str) -> str:
    """A completion as text: a string, or the content of a message list (TRL's conversational completions)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in value):
        return "".join(str(m["content"]) for m in value)
    raise ValueError(f"{what} must be a string or a list of messages ({{'role', 'content'}}), got {value!r:.80}.")


def _encode_prompt(prompt, index: int) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and m.get("content") is not None for m in prompt
    ):  # (Arrow fills keys of other rows' messages with None)
        import json

        messages = [{"role": str(m["role"]), "content": m["content"]} for m in prompt]
        return _CONVERSATION + json.dumps(messages, ensure_ascii=False, sort_keys=True)
    raise ValueError(
        f"Prompt {index} must be a string or a conversation (a non-empty list of {{'role', 'content'}} messages), "
        f"got {prompt!r:.80}."
    )


def _decode_conversation(prompt: str) -> Optional[List[Dict[str, Any]]]:
    if isinstance(prompt, str) and prompt.startswith(_CONVERSATION):
        import json

        return json.loads(prompt[len(_CONVERSATION) :])
    return None


def normalize_rollout_columns(dataset):
    """Accept TRL-style rollouts: ``completion`` / ``completions`` columns are read as ``response`` /
    ``responses``, completions given as message lists become their text, and conversation prompts (message
    lists, formatted with the chat template at tokenisation) are carried as strings so rollouts of one prompt
    group and split together. String-only data in our schema is returned as it is."""
    from datasets import Dataset

    columns = list(dataset.column_names)
    renames = {old: new for old, new in _TRL_COLUMNS.items() if old in columns}
    clash = [new for new in renames.values() if new in columns]
    if clash:
        raise ValueError(f"The dataset has both {sorted(renames)} and {clash}; keep one of each pair.")
    conversational = "prompt" in columns and len(dataset) > 0 and not isinstance(dataset[0]["prompt"], str)
    lists = [c for c in ("completion", "response") if c in columns and len(dataset) and not isinstance(dataset[0][c], str)]
    nested = [c for c in ("completions", "responses") if c in columns and len(dataset) and dataset[0][c]
              and not isinstance(dataset[0][c][0], str)]
    if not (renames or conversational or lists or nested):
        return dataset
    data = {renames.get(c, c): list(dataset[c]) for c in columns}
    if "prompt" in data:
        data["prompt"] = [_encode_prompt(p, i) for i, p in enumerate(data["prompt"])]
    for c in lists:
        key = renames.get(c, c)
        data[key] = [_message_text(v, f"{c} {i}") for i, v in enumerate(data[key])]
    for c in nested:
        key = renames.get(c, c)
        data[key] = [[_message_text(v, f"{c} {i}") for v in group] for i, group in enumerate(data[key])]
    return Dataset.from_dict(data)


def _tokenize_rollout(
    row: Dict[str, Any],
    tokenizer,
    apply_chat_template: bool,
    max_length: Optional[int],
    max_response_length: Optional[int] = None,
    dialogue_as_text: bool = False,
) -> Dict[str, Any]:
    """Tokenise one (prompt, response) as the ThresholdCalibrator fed it to ``generate`` (the chat template as
    text, then encoded; an HH-format prompt as text with ``dialogue_as_text``); the response is cut on the right to
    ``max_response_length`` tokens, then the prompt on the left and the response on the right to ``max_length``.
    A conversation prompt (see :func:`normalize_rollout_columns`) always goes through the chat template."""
    messages = _decode_conversation(row["prompt"])
    if messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "The rollouts' prompts are conversations (message lists) but the tokenizer has no chat template; "
                "pass a tokenizer with one (processing_class=) or plain string prompts."
            )
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        templated = True
    else:
        text, templated = render_prompt(tokenizer, row["prompt"], bool(apply_chat_template), bool(dialogue_as_text))
    p_ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
    r_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
    if max_response_length is not None:
        r_ids = r_ids[: int(max_response_length)]
    if max_length is not None and len(p_ids) + len(r_ids) > max_length:
        p_ids = p_ids[-max(1, min(len(p_ids), max_length // 2)) :]
        r_ids = r_ids[: max_length - len(p_ids)]
    return {"input_ids": list(p_ids) + list(r_ids), "response_start": len(p_ids), "n_response": len(r_ids)}


def _last_and_mid(inputs: Dict[str, torch.Tensor], head_type: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Positions of the value at the last response token and at mid-response (for a ``q`` head, the position
    before the token whose ``Q(prefix, token)`` it is)."""
    lengths = inputs["attention_mask"].sum(-1)
    start = inputs["response_start"]
    shift = 1 if head_type == "q" else 0
    last = (lengths - 1 - shift).clamp(min=0)
    mid = (start - shift + (lengths - start - 1) // 2).clamp(min=0)
    return last, mid


def _diagnostics(eval_pred) -> Dict[str, float]:
    """Validation MSE and Spearman correlations of the value with the realised shaped reward (last token, mid)."""
    import numpy as np

    preds, target = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids).reshape(-1)
    last, mid = preds[:, 0], preds[:, 1]
    return {
        "mse": float(np.mean((last - target) ** 2)),
        "mse_mid": float(np.mean((mid - target) ** 2)),
        "spearman_last": spearman(last, target),
        "spearman_mid": spearman(mid, target),
    }


@dataclass
class QHeadDataCollator:
    """Right-pads ``input_ids`` and stacks targets; attaches precomputed hidden states when available."""

    pad_token_id: int
    hidden_store: Optional[List[torch.Tensor]] = None

    def __call__(self, examples: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        lengths = [len(e["input_ids"]) for e in examples]
        width = max(lengths)
        ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for i, e in enumerate(examples):
            ids[i, : lengths[i]] = torch.as_tensor(e["input_ids"], dtype=torch.long)
            mask[i, : lengths[i]] = 1
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "response_start": torch.tensor([int(e["response_start"]) for e in examples], dtype=torch.long),
            "target": torch.tensor([float(e["target"]) for e in examples], dtype=torch.float32),
        }
        if self.hidden_store is not None and "hidden_index" in examples[0]:
            states = [self.hidden_store[int(e["hidden_index"])] for e in examples]
            hidden = states[0].new_zeros((len(examples), width, states[0].shape[-1]))
            for i, h in enumerate(states):
                hidden[i, : h.shape[0]] = h
            batch["hidden_states"] = hidden
        return batch


class QHeadTrainer(Trainer):
    r"""Trainer of CD value / Q heads on (shaped) rewards of base-policy rollouts (SRS-CD, Wang et al., 2026).

    Follows TRL's trainers (``RewardTrainer``): the rollouts are shaped per prompt, tokenised with
    `datasets.Dataset.map` (``dataset_num_proc`` workers), ``peft_config=`` wraps the backbone in a LoRA adapter
    that trains with the head, the model is tagged (``add_model_tags``) and the model card is written on save
    (``create_model_card(model_name=..., dataset_name=..., tags=...)``, the signature ``Trainer.push_to_hub``
    calls). Without an ``eval_dataset``, ``args.validation_split`` of the prompts is held out; evaluation reports
    the validation MSE at the last token (``eval_mse``, used for early stopping), at mid-response, and the Spearman
    correlations of the value with the realised shaped reward; the last evaluation's numbers go to the head's
    config (``training_metrics``) and card.

    Args:
        model ([`QHeadModel`], `PreTrainedModel` or `str`): the head and its backbone (frozen, or with a peft LoRA
            adapter); or, as TRL's trainers take it, a causal-LM backbone or its Hub id / folder, which gets a new
            head built with ``head_kwargs``.
        args ([`QHeadTrainerConfig`]): training and shaping settings.
        train_dataset (`datasets.Dataset`): the `ThresholdCalibrator` output (prompt, responses, rewards,
            threshold) or its flat form (prompt, response, reward, threshold). TRL's names work too
            (``completion`` / ``completions``, completions as message lists), and a prompt may be a conversation
            (a list of ``{"role", "content"}`` messages, formatted with the chat template).
        eval_dataset (`datasets.Dataset`, *optional*): a held-out split of the same schema (replaces
            ``validation_split``).
        processing_class (`PreTrainedTokenizerBase`, *optional*): the tokenizer of the backbone; loaded from the
            backbone's id / folder when not given.
        compute_metrics (`Callable`, *optional*): more evaluation metrics; merged with the head's diagnostics
            (``mse``, ``spearman_*``), which early stopping and the card use.
        peft_config (`peft.PeftConfig`, *optional*): a LoRA configuration for the backbone (e.g.
            ``LoraConfig(r=8, target_modules=["q_proj", "v_proj"])``); saved in the head's ``adapter/`` folder.
        head_kwargs (`dict`, *optional*): [`QHeadModel.from_backbone`] arguments when ``model`` is a backbone
            (``head_type``, ``seed``, ``preset``, ``head_hidden_size``, ``rank``...).

    TRL is not a dependency: TRL 1.16 has no value-head trainer to build on, and the few data conventions this
    trainer shares with it (prompt / completion columns, conversational prompts) take a few lines here, where
    importing TRL would add its whole dependency tree to every Q-head training.

    Examples:

    ```python
    >>> from hf_stackshape import QHeadModel, QHeadTrainer, QHeadTrainerConfig
    >>> qhead = QHeadModel.from_backbone(base, preset="paper")  # doctest: +SKIP
    >>> args = QHeadTrainerConfig.from_preset("paper", output_dir="qhead")  # doctest: +SKIP
    >>> trainer = QHeadTrainer(qhead, args, train_dataset=calibration, processing_class=tokenizer)  # doctest: +SKIP
    >>> trainer.train(); trainer.evaluate(); trainer.save_model()  # doctest: +SKIP
    ```
    """

    _tag_names = ["hf_stackshape", "controlled-decoding", "stackelberg-reward-shaping"]
    _name = "QHead"

    def __init__(
        self,
        model: QHeadModel,
        args: Optional[QHeadTrainerConfig] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class: Optional[PreTrainedTokenizerBase] = None,
        data_collator=None,
        compute_metrics=None,
        peft_config=None,
        head_kwargs: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ):
        model = _resolve_model(model, head_kwargs)
        if model.backbone is None:
            raise ValueError("The QHeadModel has no backbone; build it with QHeadModel.from_backbone(...).")
        if processing_class is None:
            processing_class = _load_processing_class(model)
        if args is None:
            args = QHeadTrainerConfig(output_dir="qhead")
        if peft_config is not None:
            _attach_peft(model, peft_config)
        self._transform = args.shaping_transform()
        model.config.shaping = self._transform.to_dict()
        if args.reward_model_name_or_path:
            model.config.reward_model_name_or_path = args.reward_model_name_or_path
        if args.base_model_name_or_path:
            model.config.base_model_name_or_path = args.base_model_name_or_path
        self._tokenizer = processing_class
        self._use_hidden = bool(args.precompute_hidden_states and model.is_frozen_backbone)
        self._hidden_store: List[torch.Tensor] = []
        self._args_for_prep = args
        self._model_for_prep = model
        if train_dataset is not None:
            train_dataset = self._shape(train_dataset, "train")
            by_sample = args.validation_split_by == "sample"
            if eval_dataset is None and args.validation_split > 0 and (by_sample or "prompt" in train_dataset.column_names):
                if by_sample:
                    train_idx, val_idx = split_by_sample(len(train_dataset), args.validation_split, args.seed)
                else:
                    train_idx, val_idx = split_by_prompt(train_dataset["prompt"], args.validation_split, args.seed)
                if val_idx:
                    eval_dataset = train_dataset.select(val_idx)
                    train_dataset = train_dataset.select(train_idx)
                else:
                    unit = "rollouts" if by_sample else "prompts"
                    logger.warning(f"validation_split: fewer than two {unit}, no validation set is held out.")
            train_dataset = self._prepare_dataset(train_dataset, "train")
        if eval_dataset is not None:
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: self._prepare_dataset(v, k) for k, v in eval_dataset.items()}
            else:
                eval_dataset = self._prepare_dataset(eval_dataset, "eval")
        elif str(args.eval_strategy) not in ("no", "IntervalStrategy.NO"):
            if args.early_stopping_patience is not None:
                raise ValueError(
                    f"early_stopping_patience={args.early_stopping_patience} needs a validation set: pass "
                    "eval_dataset= or use more than one prompt with validation_split > 0."
                )
            args.eval_strategy = "no"
        _check_drop_last(args, train_dataset, eval_dataset)
        pad = processing_class.pad_token_id if processing_class.pad_token_id is not None else processing_class.eos_token_id
        if data_collator is None:
            data_collator = QHeadDataCollator(pad_token_id=int(pad or 0), hidden_store=self._hidden_store)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            compute_metrics=_merged_metrics(compute_metrics),
            **kwargs,
        )
        if args.early_stopping_patience is not None:
            from transformers import EarlyStoppingCallback

            self.add_callback(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
        # Our loss is a per-batch mean, so gradient accumulation / DDP averaging need no token counts.
        self.model_accepts_loss_kwargs = False
        model.add_model_tags(self._tag_names)
        self._record_vocabulary(processing_class)
        self._record_settings()

    def _record_vocabulary(self, tokenizer) -> None:
        """Write the training tokenizer's ``vocab_digest`` into the head's config: CD (Mudgal et al., 2023)
        then refuses a base tokenizer that numbers tokens otherwise, even one of the same size."""
        if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
            return
        from ..utils.checks import vocabulary_digest

        self._model_for_prep.config.vocab_digest = vocabulary_digest(tokenizer)

    # ---------------------------------------------------------------------------------------------- data

    def _shape(self, dataset, name: str):
        """Flat ``(prompt, response, target)`` rows with shaped targets (already processed data passes through)."""
        from datasets import Dataset

        if all(c in dataset.column_names for c in PROCESSED_COLUMNS) or "target" in dataset.column_names:
            return dataset
        return Dataset.from_dict(shape_rollouts(normalize_rollout_columns(dataset), self._transform))

    def _prepare_dataset(self, dataset, name: str):
        from datasets import Dataset

        if all(c in dataset.column_names for c in PROCESSED_COLUMNS):
            return dataset
        dataset = self._shape(dataset, name)
        args, tok = self._args_for_prep, self._tokenizer
        chat = args.chat_template
        if chat is None:
            chat = bool(getattr(tok, "chat_template", None))
        self._prompt_format = "chat template" if chat else "raw text"  # the card's usage snippet follows it
        map_kwargs: Dict[str, Any] = {}
        if isinstance(dataset, Dataset):  # an IterableDataset has no num_proc
            map_kwargs["num_proc"] = args.dataset_num_proc
        dataset = dataset.map(
            _tokenize_rollout,
            fn_kwargs={
                "tokenizer": tok,
                "apply_chat_template": chat,
                "max_length": args.max_length,
                "max_response_length": args.max_response_length,
                "dialogue_as_text": bool(args.dialogue_prompts_as_text),
            },
            remove_columns=[c for c in dataset.column_names if c != "target"],
            desc=f"Tokenizing {name} rollouts",
            **map_kwargs,
        )
        kept = dataset.filter(
            lambda n, start: n > 0 and start > 0, input_columns=["n_response", "response_start"],
            desc=f"Dropping empty {name} rollouts", **map_kwargs,
        )
        if len(kept) < len(dataset):
            logger.warning(f"{name}: dropped {len(dataset) - len(kept)} rollouts with an empty prompt or response.")
        if len(kept) == 0:
            raise ValueError(f"The {name} dataset has no usable rollout (all responses empty).")
        kept = kept.remove_columns("n_response")
        if self._use_hidden:
            kept = kept.add_column("hidden_index", self._precompute(kept["input_ids"], name))
        return kept

    @torch.no_grad()
    def _precompute(self, sequences: List[List[int]], name: str) -> List[int]:
        """Run the frozen backbone once over ``sequences``; return their indices in the hidden-state store."""
        from tqdm.auto import tqdm

        model = self._model_for_prep
        device = next(model.head.parameters()).device
        batch_size = max(1, int(self._args_for_prep.per_device_eval_batch_size))
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # little padding
        out: List[Optional[torch.Tensor]] = [None] * len(sequences)
        for start in tqdm(range(0, len(order), batch_size), desc=f"Hidden states ({name})", leave=False):
            idx = order[start : start + batch_size]
            width = max(len(sequences[i]) for i in idx)
            ids = torch.zeros((len(idx), width), dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                mask[row, : len(sequences[i])] = 1
            hidden, _ = model.backbone_hidden_states(ids.to(device), mask.to(device))
            for row, i in enumerate(idx):
                out[i] = hidden[row, : len(sequences[i])].detach().cpu()
        base = len(self._hidden_store)
        self._hidden_store.extend(out)
        return list(range(base, base + len(sequences)))

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["input_ids", "response_start", "target", "hidden_index"]

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> Dict[str, float]:
        """`Trainer.evaluate`, accepting raw calibration data too; the diagnostics (``{prefix}_mse``,
        ``_mse_mid``, ``_spearman_last``, ``_spearman_mid``) are recorded in the head's ``training_metrics``."""
        if eval_dataset is not None and not isinstance(eval_dataset, str):
            eval_dataset = self._prepare_dataset(eval_dataset, metric_key_prefix)
        metrics = super().evaluate(
            eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )
        names = ("mse", "mse_mid", "spearman_last", "spearman_mid")
        found = {f"{metric_key_prefix}_{n}": float(metrics[f"{metric_key_prefix}_{n}"]) for n in names
                 if f"{metric_key_prefix}_{n}" in metrics}
        if found:
            self._model_for_prep.config.training_metrics = found
        return metrics

    # ---------------------------------------------------------------------------------------------- loss

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start, target = inputs["response_start"], inputs["target"]
        lengths = mask.sum(-1)
        head_type = self._model_for_prep.config.head_type
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        if head_type == "q":
            # Q(x, y_<t, y_t) lives at the position before y_t: prefix ends at t-1, action = next token.
            actions = torch.roll(ids, shifts=-1, dims=1)
            valid = (positions >= (start - 1).unsqueeze(1)) & (positions <= (lengths - 2).unsqueeze(1))
        else:
            actions = None
            valid = (positions >= start.unsqueeze(1)) & (positions <= (lengths - 1).unsqueeze(1))
        out = model(input_ids=ids, attention_mask=mask, hidden_states=inputs.get("hidden_states"), actions=actions)
        pred = out.value.float()
        target = target.float()
        validf = valid.float()
        loss_type = self.args.loss_type
        loss = pred.new_zeros(())
        if "fudge" in loss_type:
            count = validf.sum(-1).clamp(min=1)
            loss = loss + ((((pred - target.unsqueeze(1)) ** 2) * validf).sum(-1) / count).mean()
        if loss_type == "consistency":  # the paper's anchor: the value at the last response token
            last, _ = _last_and_mid(inputs, head_type)
            loss = loss + ((pred.gather(1, last.unsqueeze(1)).squeeze(1) - target) ** 2).mean()
        if "consistency" in loss_type:
            # Pooled over every valid consecutive pair of the batch, as the authors' train_value_function.py.
            pair = validf[:, 1:] * validf[:, :-1]
            if pair.sum() > 0:
                consec = (((pred[:, 1:] - pred[:, :-1]) ** 2) * pair).sum() / pair.sum()
                loss = loss + self.args.consistency_weight * consec
        return (loss, {"values": pred}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys=None):
        """Loss, and as predictions the values ``(batch, 2)`` at the last token and mid-response; labels: targets."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        last, mid = _last_and_mid(inputs, self._model_for_prep.config.head_type)
        values = outputs["values"]
        preds = torch.stack([values.gather(1, pos.unsqueeze(1)).squeeze(1) for pos in (last, mid)], -1)
        return loss.detach(), preds, inputs["target"].float()

    # ---------------------------------------------------------------------------------------------- checkpoints

    def train(self, resume_from_checkpoint: Optional[Union[str, bool]] = None, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint=True`` resumes from the last *complete* checkpoint of
        ``output_dir`` (one half-written by a killed save is skipped with a warning, see
        :mod:`hf_stackshape.qhead.checkpoints`), and a named checkpoint that is incomplete is a clear error."""
        from .checkpoints import checkpoint_problem, last_complete_checkpoint

        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No complete checkpoint in {self.args.output_dir} to resume from.")
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)):
            problem = checkpoint_problem(str(resume_from_checkpoint))
            if problem is not None:
                raise ValueError(
                    f"Cannot resume from {resume_from_checkpoint}: {problem}. Pass resume_from_checkpoint=True to "
                    "take the last complete checkpoint, or delete this folder."
                )
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_adapter(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        super()._load_best_model()
        self._load_adapter(self.state.best_model_checkpoint)

    def _load_adapter(self, checkpoint: Optional[str]) -> None:
        """Restore the backbone's LoRA adapter from ``<checkpoint>/adapter`` (the parent loads the head only)."""
        model = self._model_for_prep
        folder = os.path.join(checkpoint or "", ADAPTER_FOLDER)
        if model.config.has_adapter and os.path.isdir(folder):
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(model.backbone, load_peft_weights(folder, device="cpu"))

    def _issue_warnings_after_load(self, load_result) -> None:
        # The checkpoint holds the head only: the backbone's keys are missing on purpose.
        missing = [k for k in load_result.missing_keys if k.startswith("head.")]
        if missing or load_result.unexpected_keys:
            logger.warning(f"Q-head checkpoint: missing {missing}, unexpected {load_result.unexpected_keys}.")

    # ---------------------------------------------------------------------------------------------- card

    def _record_settings(self) -> None:
        args = self.args
        self._model_for_prep.config.training_settings = {
            "loss_type": args.loss_type,
            "consistency_weight": args.consistency_weight,
            "learning_rate": args.learning_rate,
            "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "batch size": args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps,
            "epochs": args.num_train_epochs,
            "train rollouts": len(self.train_dataset) if self.train_dataset is not None else 0,
            "validation rollouts": _count(self.eval_dataset),
            "global step": self.state.global_step,
        }
        if getattr(self, "_prompt_format", None):
            self._model_for_prep.config.training_settings["prompt format"] = self._prompt_format

    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        self._record_settings()
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            self._write_card(output_dir if output_dir is not None else self.args.output_dir)

    def _write_card(self, folder: str, model_name=None, dataset_name=None, tags=None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        repo_id = getattr(self, "hub_model_id", None) or self.args.hub_model_id
        card = render_model_card(
            model.config, repo_id=repo_id, tags=merge_tags(model.model_tags, self._tag_names, tags),
            model_name=model_name, dataset_name=dataset_name,
        )
        atomic_write_text(os.path.join(folder, "README.md"), str(card))

    def create_model_card(
        self,
        model_name: Optional[str] = None,
        dataset_name: Optional[str] = None,
        tags: Optional[Union[str, List[str]]] = None,
    ) -> None:
        """Write ``README.md`` in ``args.output_dir``: the head's card (``hf_stackshape/model_cards/qhead.md``) with
        the shaping settings, the training settings and diagnostics, naming ``args.hub_model_id`` in its usage
        snippet. Same signature as TRL's trainers (``Trainer.push_to_hub`` calls it).

        Args:
            model_name (`str`, *optional*): the card's title.
            dataset_name (`str`, *optional*): the Hub id of the rollouts' dataset (metadata ``datasets``).
            tags (`str` or `list[str]`, *optional*): extra tags.
        """
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        self._record_settings()
        self._write_card(self.args.output_dir, model_name=model_name, dataset_name=dataset_name, tags=tags)


def _check_drop_last(args, train_dataset, eval_dataset) -> None:
    """With ``dataloader_drop_last``, a dataset smaller than one batch (per device x processes) yields no batch at
    all: training would do nothing and evaluation return no metric (no ``eval_mse``). Say so before training."""
    if not args.dataloader_drop_last:
        return
    world = max(1, int(getattr(args, "world_size", 1) or 1))
    checks = [("training", train_dataset, args.per_device_train_batch_size, "per_device_train_batch_size")]
    evals = eval_dataset.items() if isinstance(eval_dataset, dict) else [("validation", eval_dataset)]
    checks += [(name, data, args.per_device_eval_batch_size, "per_device_eval_batch_size") for name, data in evals]
    for name, data, batch, option in checks:
        if data is None or not hasattr(data, "__len__"):
            continue
        if len(data) < int(batch) * world:
            fix = (
                "or hold out more prompts (--validation_split), or set --validation_split 0"
                if name != "training" else "or calibrate more prompts"
            )
            raise ValueError(
                f"--dataloader_drop_last drops every {name} batch: the {name} set holds {len(data)} rollouts, fewer "
                f"than one batch of --{option} {batch}" + (f" x {world} processes" if world > 1 else "")
                + f". Lower --{option} to at most {len(data) // world}, leave --dataloader_drop_last off, {fix}."
            )


def _count(dataset) -> int:
    if isinstance(dataset, dict):
        return sum(len(d) for d in dataset.values())
    return len(dataset) if dataset is not None else 0


def _attach_peft(model: QHeadModel, peft_config) -> None:
    """Wrap the head's backbone in a peft adapter built from ``peft_config`` (the adapter trains with the head)."""
    from peft import PeftConfig, get_peft_model

    if not isinstance(peft_config, PeftConfig):
        raise ValueError(
            f"`peft_config` must be a peft.PeftConfig (e.g. peft.LoraConfig), got {type(peft_config).__name__}."
        )
    if hasattr(model.backbone, "peft_config"):
        raise ValueError(
            "The Q-head's backbone is already a peft model; pass either a peft backbone or `peft_config=`, not both."
        )
    model.backbone = get_peft_model(model.backbone, peft_config)
    model.config.has_adapter = True


def _resolve_model(model, head_kwargs: Optional[Dict[str, Any]]) -> QHeadModel:
    """``model=`` as TRL's trainers take it: a [`QHeadModel`], a causal-LM backbone (loaded or peft-wrapped) or
    its Hub id / folder; a backbone gets a fresh head built with ``head_kwargs`` (``QHeadModel.from_backbone``)."""
    if isinstance(model, QHeadModel):
        if head_kwargs:
            raise ValueError(
                f"head_kwargs={sorted(head_kwargs)} builds a new head on a backbone; `model` is already a QHeadModel."
            )
        return model
    if isinstance(model, (str, os.PathLike)) or isinstance(model, torch.nn.Module):
        if isinstance(model, torch.nn.Module) and not callable(getattr(model, "get_output_embeddings", None)):
            raise ValueError(
                f"`model` must be a QHeadModel, a causal-LM backbone or its id / folder, got {type(model).__name__}."
            )
        import inspect

        from .configuration_qhead import QHeadConfig

        known = {"head_type", "seed", "preset"} | set(inspect.signature(QHeadConfig.__init__).parameters) - {"self", "kwargs"}
        unknown = sorted(set(head_kwargs or {}) - known)
        if unknown:
            raise ValueError(
                f"Unknown head_kwargs {unknown}: they are QHeadModel.from_backbone arguments, one of {sorted(known)}."
            )
        return QHeadModel.from_backbone(model, **(head_kwargs or {}))
    raise ValueError(
        f"`model` must be a QHeadModel, a causal-LM backbone or its Hub id / folder, got {type(model).__name__}."
    )


def _load_processing_class(model: QHeadModel):
    """The backbone's tokenizer, loaded from where the backbone came from (TRL's trainers do the same)."""
    from transformers import AutoTokenizer

    backbone = model.backbone
    base = unwrap_peft(backbone)
    name = model.config.backbone_name_or_path or getattr(base.config, "_name_or_path", None)
    if not name:
        raise ValueError("Cannot tell where the backbone came from to load its tokenizer; pass processing_class=.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot load the backbone's tokenizer from {name!r} ({err}); pass processing_class=.") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _merged_metrics(compute_metrics):
    """Our diagnostics (``mse``, ``mse_mid``, ``spearman_*``: early stopping and the card need them) plus the
    user's ``compute_metrics``; the user's value wins where a name is in both."""
    if compute_metrics is None:
        return _diagnostics

    def merged(eval_pred) -> Dict[str, float]:
        out = dict(_diagnostics(eval_pred))
        out.update(compute_metrics(eval_pred) or {})
        return out

    return merged
