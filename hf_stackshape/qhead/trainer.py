"""Train CD value / Q heads on Stackelberg-shaped rewards (SRS-CD, Wang et al., 2026, arXiv 2602.02572, section 3),
with the CD-FUDGE loss of Controlled Decoding (Mudgal et al., 2023) and the paper's consistency term.

[`QHeadTrainerConfig`] + [`QHeadTrainer`] follow TRL's config + trainer pairs (``RewardConfig`` /
``RewardTrainer``): the config extends `transformers.TrainingArguments` with only what is specific, and the
trainer subclasses `transformers.Trainer`, overriding dataset preparation and ``compute_loss``.

The shaped target of every rollout is computed here, with ``hf_stackshape.shaping.get_transform`` applied per
prompt over its rollouts with the calibrated threshold ``m*(x)``: the very function ARGS and CD decode with,
so training and decoding cannot disagree.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments
from transformers.utils import logging

from ..shaping import get_transform
from ..io import atomic_write_text
from .modeling_qhead import QHeadModel, render_model_card

logger = logging.get_logger(__name__)

__all__ = ["QHeadTrainerConfig", "QHeadTrainer", "QHeadDataCollator", "shape_rollouts", "LOSS_TYPES"]

LOSS_TYPES = ("fudge", "consistency", "fudge+consistency")
GROUPED_COLUMNS = ("prompt", "responses", "rewards")
FLAT_COLUMNS = ("prompt", "response", "reward")
PROCESSED_COLUMNS = ("input_ids", "response_start", "target")


@dataclass
class QHeadTrainerConfig(TrainingArguments):
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
            ``fudge``: every response prefix regressed to the rollout's shaped target (CD-FUDGE; for a ``q`` head
            ``Q(prefix, token actually taken)``). ``consistency``: the last prefix regressed to the target and
            consecutive prefix values pulled together. ``fudge+consistency``: both (the paper's SRS-CD loss).
        consistency_weight (`float`, *optional*, defaults to `0.1`): weight of the consistency term.

        > Data

        max_length (`int`, *optional*, defaults to `512`): prompt + response tokens kept (prompt cut on the left,
            response on the right).
        apply_chat_template (`bool`, *optional*, defaults to `False`): format prompts with the tokenizer's chat
            template (``add_generation_prompt=True``), as the rollouts were generated (the calibrator's
            ``use_chat_template``); CD must then be given chat-formatted prompts too.
        precompute_hidden_states (`bool`, *optional*, defaults to `True`): with a frozen backbone, run it once
            over the data and reuse its last hidden states every epoch (ignored when the backbone trains, e.g.
            LoRA). They are kept in CPU memory in the backbone's dtype: total tokens x hidden size x bytes (e.g.
            10k rollouts x 160 tokens x 576 x 4 B = 3.7 GB for SmolLM2 in float32); turn it off when that does not
            fit. Measured on SmolLM2-135M (CPU, 32 rollouts): the one-off pass costs about one epoch, after which
            an epoch takes ~0.85 s instead of ~15 s, so 15 epochs (the paper's setting) run about 10x faster.
        reward_model_name_or_path (`str`, *optional*): recorded in the saved head's config and model card.
        base_model_name_or_path (`str`, *optional*): recorded in the saved head's config and model card.
    """

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
    max_length: int = field(default=512, metadata={"help": "Max prompt + response tokens."})
    apply_chat_template: bool = field(default=False, metadata={"help": "Format prompts with the chat template."})
    precompute_hidden_states: bool = field(
        default=True, metadata={"help": "With a frozen backbone, compute hidden states once and reuse them."}
    )
    reward_model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Reward model id (card)."})
    base_model_name_or_path: Optional[str] = field(default=None, metadata={"help": "Base model id (card)."})

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.consistency_weight < 0:
            raise ValueError(f"`consistency_weight` must be >= 0, got {self.consistency_weight!r}.")
        if self.max_length < 2:
            raise ValueError(f"`max_length` must be >= 2, got {self.max_length!r}.")
        if self.label_names is None:
            self.label_names = ["target"]  # so evaluation computes the loss
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
    r"""Trainer of CD value / Q heads on (shaped) rewards of base-policy rollouts (SRS-CD).

    Args:
        model ([`QHeadModel`]): the head and its backbone (frozen, or with a peft LoRA adapter).
        args ([`QHeadTrainerConfig`]): training and shaping settings.
        train_dataset (`datasets.Dataset`): the `ThresholdCalibrator` output (prompt, responses, rewards,
            threshold) or its flat form (prompt, response, reward, threshold).
        eval_dataset (`datasets.Dataset`, *optional*): a held-out split of the same schema (eval loss).
        processing_class (`PreTrainedTokenizerBase`): the tokenizer of the backbone.

    Examples:

    ```python
    >>> from hf_stackshape import QHeadModel, QHeadTrainer, QHeadTrainerConfig
    >>> qhead = QHeadModel.from_backbone(base, head_type="q")  # doctest: +SKIP
    >>> args = QHeadTrainerConfig(output_dir="qhead", transform="srs", bound=15.0, alpha=1.0, beta=0.667)
    >>> trainer = QHeadTrainer(qhead, args, train_dataset=calibration, processing_class=tokenizer)  # doctest: +SKIP
    >>> trainer.train(); trainer.save_model()  # doctest: +SKIP
    ```
    """

    _tag_names = ["hf_stackshape", "controlled-decoding", "stackelberg-reward-shaping"]

    def __init__(
        self,
        model: QHeadModel,
        args: Optional[QHeadTrainerConfig] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class: Optional[PreTrainedTokenizerBase] = None,
        data_collator=None,
        **kwargs: Any,
    ):
        if not isinstance(model, QHeadModel):
            raise ValueError(
                f"QHeadTrainer trains a QHeadModel, got {type(model).__name__}; build one with "
                "QHeadModel.from_backbone(backbone, head_type='value'|'q')."
            )
        if model.backbone is None:
            raise ValueError("The QHeadModel has no backbone; build it with QHeadModel.from_backbone(...).")
        if processing_class is None:
            raise ValueError("QHeadTrainer needs `processing_class=` (the backbone's tokenizer) to tokenize rollouts.")
        if args is None:
            args = QHeadTrainerConfig(output_dir="qhead")
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
            train_dataset = self._prepare_dataset(train_dataset, "train")
        if eval_dataset is not None:
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: self._prepare_dataset(v, k) for k, v in eval_dataset.items()}
            else:
                eval_dataset = self._prepare_dataset(eval_dataset, "eval")
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
            **kwargs,
        )
        # Our loss is a per-sample mean, so gradient accumulation / DDP averaging need no token counts.
        self.model_accepts_loss_kwargs = False

    # ---------------------------------------------------------------------------------------------- data

    def _tokenize(self, prompt: str, response: str) -> Tuple[List[int], List[int]]:
        tok, args = self._tokenizer, self._args_for_prep
        # Tokenised as the ThresholdCalibrator feeds prompts to generate (chat template as text, then encoded).
        if args.apply_chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
            p_ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
        r_ids = tok(response, add_special_tokens=False)["input_ids"]
        limit = args.max_length
        if len(p_ids) + len(r_ids) > limit:
            p_ids = p_ids[-max(1, min(len(p_ids), limit // 2)) :]
            r_ids = r_ids[: limit - len(p_ids)]
        return list(p_ids), list(r_ids)

    def _prepare_dataset(self, dataset, name: str):
        from datasets import Dataset

        columns = list(dataset.column_names)
        if all(c in columns for c in PROCESSED_COLUMNS):
            return dataset
        records = shape_rollouts(dataset, self._transform)
        rows: Dict[str, list] = {"input_ids": [], "response_start": [], "target": []}
        dropped = 0
        for prompt, response, target in zip(records["prompt"], records["response"], records["target"]):
            p_ids, r_ids = self._tokenize(prompt, response)
            if not r_ids or not p_ids:
                dropped += 1
                continue
            rows["input_ids"].append(p_ids + r_ids)
            rows["response_start"].append(len(p_ids))
            rows["target"].append(target)
        if dropped:
            logger.warning(f"{name}: dropped {dropped} rollouts with an empty prompt or response.")
        if not rows["input_ids"]:
            raise ValueError(f"The {name} dataset has no usable rollout (all responses empty).")
        if self._use_hidden:
            rows["hidden_index"] = self._precompute(rows["input_ids"], name)
        return Dataset.from_dict(rows)

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
        if eval_dataset is not None and not isinstance(eval_dataset, str):
            eval_dataset = self._prepare_dataset(eval_dataset, metric_key_prefix)
        return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

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
        target = target.float().unsqueeze(1)
        validf = valid.float()
        count = validf.sum(-1).clamp(min=1)
        loss_type = self.args.loss_type
        per_sample = torch.zeros_like(target.squeeze(1))
        if "fudge" in loss_type:
            per_sample = per_sample + (((pred - target) ** 2) * validf).sum(-1) / count
        if "consistency" in loss_type:
            pair = validf[:, 1:] * validf[:, :-1]
            consec = (((pred[:, 1:] - pred[:, :-1]) ** 2) * pair).sum(-1) / pair.sum(-1).clamp(min=1)
            per_sample = per_sample + self.args.consistency_weight * consec
            if loss_type == "consistency":  # anchor the last prefix to the target
                last = (lengths - 1 if head_type == "value" else lengths - 2).clamp(min=0)
                final = pred.gather(1, last.unsqueeze(1)).squeeze(1)
                per_sample = per_sample + (final - target.squeeze(1)) ** 2
        loss = per_sample.mean()
        return (loss, {"values": pred}) if return_outputs else loss

    # ---------------------------------------------------------------------------------------------- card

    def _save(self, output_dir: Optional[str] = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            self.create_model_card(output_dir)

    def create_model_card(self, output_dir: Optional[str] = None, **kwargs: Any) -> None:
        """Write ``README.md`` from the ``model_cards/qhead.md`` template, with the training settings."""
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        training = {
            "loss_type": self.args.loss_type,
            "consistency_weight": self.args.consistency_weight,
            "learning_rate": self.args.learning_rate,
            "epochs": self.args.num_train_epochs,
            "train rollouts": len(self.train_dataset) if self.train_dataset is not None else 0,
            "global step": self.state.global_step,
        }
        atomic_write_text(os.path.join(output_dir, "README.md"), render_model_card(model.config, output_dir, training))
