"""Value / Q heads for Controlled Decoding (CD, Mudgal et al., 2023) trained on Stackelberg-shaped rewards
(SRS-CD, Wang et al., 2026, arXiv 2602.02572, section 3).

A [`QHeadModel`] is a small head on the last hidden state of a causal-LM backbone. It saves, loads and
shares like any Hugging Face model (``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``), but only
the head (and a peft LoRA adapter of the backbone, if any) is stored: the frozen backbone is re-attached by
id or local path (``config.backbone_name_or_path``), or passed in already loaded (``backbone=``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any, Dict, Optional, Union

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput, logging

from ..io import atomic_write_text
from .configuration_qhead import QHeadConfig

logger = logging.get_logger(__name__)

__all__ = ["QHeadModel", "QHeadOutput", "render_model_card", "last_hidden_state_module", "backbone_decoder"]

ADAPTER_FOLDER = "adapter"
HEAD_WEIGHTS = "model.safetensors"


@dataclass
class QHeadOutput(ModelOutput):
    """Output of [`QHeadModel`].

    Args:
        value (`torch.FloatTensor`): ``(batch, seq)`` prefix values ``V(x, y_<=t)`` for a ``value`` head, or
            ``(batch, seq, vocab)`` next-token values ``Q(x, y_<=t, v)`` for a ``q`` head.
        hidden_states (`torch.FloatTensor` of shape `(batch, seq, hidden)`): the backbone's last hidden state.
        cache (`transformers.Cache`, *optional*): the backbone's KV cache when ``use_cache=True``.
    """

    value: Optional[torch.FloatTensor] = None
    hidden_states: Optional[torch.FloatTensor] = None
    cache: Optional[Any] = None


def backbone_decoder(backbone: nn.Module) -> nn.Module:
    """The decoder (no LM head) of a causal LM, also through a peft wrapper (LoRA layers are injected in place)."""
    model = backbone
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return model.get_decoder() if hasattr(model, "get_decoder") else model


def last_hidden_state_module(backbone: nn.Module) -> nn.Module:
    """The module whose output is the decoder's last hidden state (the final norm), for forward hooks."""
    decoder = backbone_decoder(backbone)
    for name in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
        if isinstance(getattr(decoder, name, None), nn.Module):
            return getattr(decoder, name)
    raise ValueError(
        f"Cannot find the final norm of {type(decoder).__name__} to capture its last hidden state; pass "
        "share_hidden_states=False to CDLogitsProcessor so the Q-head runs its own backbone pass."
    )


class _ValueHead(nn.Module):
    """The paper's CD value MLP: ``H -> hidden -> H -> 1`` with tanh activations."""

    def __init__(self, config: QHeadConfig):
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.head_hidden_size)
        self.dense_out = nn.Linear(config.head_hidden_size, config.hidden_size)
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.score(torch.tanh(self.dense_out(torch.tanh(self.dense_in(hidden))))).squeeze(-1)


class _QHead(nn.Module):
    """CD-FUDGE style Q head: a low-rank ``H -> rank -> V`` projection, one value per next token."""

    def __init__(self, config: QHeadConfig):
        super().__init__()
        self.down = nn.Linear(config.hidden_size, config.rank, bias=False)
        self.up = nn.Linear(config.rank, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(hidden))

    def gather(self, hidden: torch.Tensor, actions: torch.LongTensor) -> torch.Tensor:
        """``Q(h, a)`` for one action per position without the vocabulary-wide output: ``(..., )``."""
        return (self.down(hidden) * self.up.weight[actions]).sum(-1) + self.up.bias[actions]


class QHeadModel(PreTrainedModel):
    r"""A value or Q head on a causal-LM backbone, for Controlled Decoding (Mudgal et al., 2023) with
    Stackelberg reward shaping (Wang et al., 2026).

    ``forward(input_ids, attention_mask)`` runs the backbone and the head; ``forward(hidden_states=...)`` runs the
    head only (precomputed or shared hidden states). Only the head and, if the backbone is a peft model, its
    adapter are saved; the backbone is re-attached at load time.

    Args:
        config ([`QHeadConfig`]): the head's configuration.
        backbone (`PreTrainedModel`, *optional*): the causal-LM backbone (a transformers model or a peft model).

    Examples:

    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> from hf_stackshape import QHeadModel
    >>> base = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP
    >>> qhead = QHeadModel.from_backbone(base, head_type="q", rank=16)  # doctest: +SKIP
    >>> qhead.save_pretrained("my-qhead")  # head (+ adapter) and a model card, not the backbone  # doctest: +SKIP
    >>> qhead = QHeadModel.from_pretrained("my-qhead", backbone=base)  # doctest: +SKIP
    ```
    """

    config_class = QHeadConfig
    base_model_prefix = "qhead"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = []

    def __init__(self, config: QHeadConfig, backbone: Optional[nn.Module] = None):
        if backbone is not None:
            _fill_config_from_backbone(config, backbone)
        if config.hidden_size is None or (config.head_type == "q" and config.vocab_size is None):
            raise ValueError(
                "QHeadConfig needs `hidden_size` (and `vocab_size` for a q head); pass `backbone=` or set them."
            )
        super().__init__(config)
        self.head = _ValueHead(config) if config.head_type == "value" else _QHead(config)
        self.post_init()
        # Attached after post_init so the (pretrained) backbone is never re-initialised.
        self.backbone = backbone
        if backbone is not None and not config.has_adapter:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ---------------------------------------------------------------------------------------------- build

    @classmethod
    def from_backbone(
        cls,
        backbone: Union[str, os.PathLike, nn.Module],
        head_type: str = "value",
        **config_kwargs: Any,
    ) -> "QHeadModel":
        """A freshly initialised head on ``backbone`` (a loaded causal LM, a peft model, or an id / path).

        ``config_kwargs`` go to [`QHeadConfig`] (``head_hidden_size``, ``rank``, ``base_model_name_or_path``,
        ``reward_model_name_or_path``, ``shaping``...). A peft backbone sets ``has_adapter=True`` (its LoRA trains
        with the head); any other backbone is frozen in place (``requires_grad_(False)`` on its parameters).
        """
        if isinstance(backbone, (str, os.PathLike)):
            config_kwargs.setdefault("backbone_name_or_path", str(backbone))
            backbone = AutoModelForCausalLM.from_pretrained(str(backbone))
        config = QHeadConfig(head_type=head_type, **config_kwargs)
        config.has_adapter = hasattr(backbone, "peft_config")
        model = cls(config, backbone=backbone)
        return model.to(_backbone_device(backbone))

    @property
    def is_frozen_backbone(self) -> bool:
        """True when no backbone parameter is trained (hidden states can then be precomputed)."""
        return self.backbone is None or not any(p.requires_grad for p in self.backbone.parameters())

    # ---------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        hidden_states: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        cache: Optional[Any] = None,
        use_cache: bool = False,
        actions: Optional[torch.LongTensor] = None,
    ) -> QHeadOutput:
        """Values of every position: ``(batch, seq)`` for a value head, ``(batch, seq, vocab)`` for a q head.

        Pass ``hidden_states`` (the backbone's last hidden state) to skip the backbone. For a q head, ``actions``
        (``(batch, seq)`` token ids) returns only ``Q(prefix, action)``, shape ``(batch, seq)``.
        """
        out_cache = None
        if hidden_states is None:
            if input_ids is None:
                raise ValueError("QHeadModel.forward needs `input_ids` (or precomputed `hidden_states`).")
            hidden_states, out_cache = self.backbone_hidden_states(
                input_ids, attention_mask, position_ids=position_ids, cache=cache, use_cache=use_cache
            )
        hidden = hidden_states.to(self.head_dtype)
        if actions is not None and self.config.head_type == "q":
            values = self.head.gather(hidden, actions)
        else:
            values = self.head(hidden)
        return QHeadOutput(value=values, hidden_states=hidden_states, cache=out_cache)

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    def backbone_hidden_states(
        self,
        input_ids: torch.LongTensor,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        cache: Optional[Any] = None,
        use_cache: bool = False,
    ):
        """``(last hidden state, cache)`` of the backbone's decoder (no LM head, so no vocabulary-wide logits).

        With a 2D ``attention_mask`` (left padding) and no ``position_ids``, positions follow the mask as in
        ``generate``.
        """
        if self.backbone is None:
            raise ValueError(
                "This QHeadModel has no backbone: load it with QHeadModel.from_pretrained(path, backbone=model) "
                "or set `backbone_name_or_path` in its config, or pass precomputed `hidden_states=`."
            )
        if position_ids is None and attention_mask is not None and attention_mask.ndim == 2 and cache is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = backbone_decoder(self.backbone)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, (getattr(out, "cache", None) if use_cache else None)

    # ---------------------------------------------------------------------------------------------- save / load

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args: Any, **kwargs: Any) -> None:
        """Save the head weights, config (with the shaping settings), the LoRA adapter if any, and a model card.

        The frozen backbone is not saved: it is re-attached from ``config.backbone_name_or_path`` at load time.
        """
        os.makedirs(save_directory, exist_ok=True)
        is_main = kwargs.get("is_main_process", True)
        self.config.has_adapter = self.backbone is not None and hasattr(self.backbone, "peft_config")
        state_dict = kwargs.pop("state_dict", None)
        if state_dict is None:
            state_dict = self.state_dict()
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("head.")}
        super().save_pretrained(save_directory, *args, state_dict=state_dict, **kwargs)
        if not is_main:
            return
        if self.config.has_adapter:
            self.backbone.save_pretrained(os.path.join(save_directory, ADAPTER_FOLDER))
        atomic_write_text(os.path.join(save_directory, "README.md"), render_model_card(self.config, save_directory))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *model_args: Any,
        backbone: Optional[nn.Module] = None,
        config: Optional[QHeadConfig] = None,
        backbone_kwargs: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> "QHeadModel":
        """Load a saved head (local folder or Hub repo) and re-attach its backbone.

        Args:
            pretrained_model_name_or_path (`str`): folder or Hub id written by `save_pretrained` / `push_to_hub`.
            backbone (`PreTrainedModel`, *optional*): an already loaded backbone (e.g. the base model itself,
                so it is not loaded twice). Otherwise ``config.backbone_name_or_path`` is loaded with
                `AutoModelForCausalLM.from_pretrained(..., **backbone_kwargs)`.
            kwargs: Hub arguments (``revision``, ``token``, ``cache_dir``, ``local_files_only``...).
        """
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        path = str(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        if config is None:
            config = QHeadConfig.from_pretrained(path, **hub_kwargs)
        if backbone is None:
            if not config.backbone_name_or_path:
                raise ValueError(
                    f"The Q-head at {path!r} records no `backbone_name_or_path`; pass the backbone explicitly: "
                    "QHeadModel.from_pretrained(path, backbone=model)."
                )
            try:
                backbone = AutoModelForCausalLM.from_pretrained(config.backbone_name_or_path, **(backbone_kwargs or {}))
            except OSError as err:
                raise ValueError(
                    f"Cannot load the Q-head's backbone {config.backbone_name_or_path!r} ({err}); pass it with "
                    "QHeadModel.from_pretrained(path, backbone=model) or fix `backbone_name_or_path`."
                ) from err
        if config.has_adapter and not hasattr(backbone, "peft_config"):
            from peft import PeftModel

            adapter = os.path.join(path, ADAPTER_FOLDER)
            if not os.path.isdir(adapter):  # a Hub repo: the adapter lives in a sub-folder
                adapter_config = cached_file(path, "adapter_config.json", subfolder=ADAPTER_FOLDER, **hub_kwargs)
                cached_file(path, "adapter_model.safetensors", subfolder=ADAPTER_FOLDER, **hub_kwargs)
                adapter = os.path.dirname(adapter_config)
            backbone = PeftModel.from_pretrained(backbone, adapter)
        model = cls(config, backbone=backbone)
        weights = os.path.join(path, HEAD_WEIGHTS)
        if not os.path.isfile(weights):
            weights = cached_file(path, HEAD_WEIGHTS, **hub_kwargs)
        state = load_file(weights)
        missing, unexpected = model.head.load_state_dict(
            {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}, strict=False
        )
        if missing or unexpected:
            raise ValueError(f"Head weights at {weights} do not match the config: missing {missing}, unexpected {unexpected}.")
        model.to(_backbone_device(backbone))
        if kwargs.get("dtype") not in (None, "auto"):
            model.head.to(kwargs["dtype"])
        return model.eval()


_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download", "proxies", "subfolder")


def _backbone_device(backbone: nn.Module) -> torch.device:
    try:
        return next(backbone.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _fill_config_from_backbone(config: QHeadConfig, backbone: nn.Module) -> None:
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    bconf = getattr(base, "config", None)
    if bconf is None:
        return
    text = bconf.get_text_config() if hasattr(bconf, "get_text_config") else bconf
    hidden, vocab = getattr(text, "hidden_size", None), getattr(text, "vocab_size", None)
    for name, value in (("hidden_size", hidden), ("vocab_size", vocab)):
        current = getattr(config, name)
        if current is not None and value is not None and current != value:
            raise ValueError(
                f"The Q-head was built for {name}={current} but the backbone has {name}={value}; attach the backbone "
                f"it was trained on ({config.backbone_name_or_path!r})."
            )
        if current is None:
            setattr(config, name, value)
    if config.backbone_name_or_path is None:
        name = getattr(bconf, "_name_or_path", None) or getattr(text, "_name_or_path", None)
        config.backbone_name_or_path = name or None


def render_model_card(config: QHeadConfig, save_directory: Optional[str] = None, training: Optional[dict] = None) -> str:
    """Fill ``hf_stackshape/model_cards/qhead.md`` (the single template) from a [`QHeadConfig`]."""
    template = resources.files("hf_stackshape").joinpath("model_cards/qhead.md").read_text(encoding="utf-8")
    shaping = dict(config.shaping or {"name": "raw"})
    transform = shaping.get("name", "raw")
    settings = {k: v for k, v in shaping.items() if k != "name"}
    if config.head_type == "value":
        shape = f"MLP {config.hidden_size} -> {config.head_hidden_size} -> {config.hidden_size} -> 1, tanh"
    else:
        shape = f"low-rank {config.hidden_size} -> {config.rank} -> {config.vocab_size}"
    rows = "\n".join(f"| {k} | `{v}` |" for k, v in (training or {}).items())
    name = os.path.basename(os.path.normpath(save_directory)) if save_directory else "qhead"
    text = Template(template).safe_substitute(
        model_name=name,
        repo_id=name,
        base_model=config.base_model_name_or_path or config.backbone_name_or_path or "unknown",
        backbone=config.backbone_name_or_path or "unknown",
        backbone_note="LoRA adapter saved here" if config.has_adapter else "frozen, not saved here",
        reward_model=config.reward_model_name_or_path or "unknown",
        head_type=config.head_type,
        head_shape=shape,
        transform=transform,
        shaping=", ".join(f"{k}=`{json.dumps(v)}`" for k, v in settings.items()) or "none",
        training_rows=rows,
        adapter_note=" (and its LoRA adapter, in `adapter/`)" if config.has_adapter else "",
    )
    return text.replace("base_model: unknown\n", "")
