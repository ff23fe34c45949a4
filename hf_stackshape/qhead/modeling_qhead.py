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
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput, logging

from ..utils.io import atomic_write_text
from ..utils.modeling import decoder_stack, last_hidden_state_module, unwrap_peft
from .configuration_qhead import QHeadConfig

logger = logging.get_logger(__name__)

__all__ = [
    "QHeadModel",
    "QHeadOutput",
    "render_model_card",
    "is_hub_id",
    "last_hidden_state_module",
    "backbone_decoder",
]

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


#: The decoder (no LM head) of a causal LM, also through a peft wrapper: the old name of
#: :func:`hf_stackshape.utils.modeling.decoder_stack`, kept.
backbone_decoder = decoder_stack


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
    >>> qhead = QHeadModel.from_backbone(base, preset="paper")  # the authors' value MLP, seed 0  # doctest: +SKIP
    >>> qhead.save_pretrained("my-qhead")  # head (+ adapter) and a model card, not the backbone  # doctest: +SKIP
    >>> qhead.push_to_hub("me/my-qhead")  # the same files and card, on the Hub  # doctest: +SKIP
    >>> qhead = QHeadModel.from_pretrained("me/my-qhead", backbone=base)  # doctest: +SKIP
    ```
    """

    config_class = QHeadConfig
    base_model_prefix = "qhead"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = []

    def __init__(self, config: QHeadConfig, backbone: Optional[nn.Module] = None, seed: int = 0):
        if backbone is not None:
            _fill_config_from_backbone(config, backbone)
        if config.hidden_size is None or (config.head_type == "q" and config.vocab_size is None):
            raise ValueError(
                "QHeadConfig needs `hidden_size` (and `vocab_size` for a q head); pass `backbone=` or set them."
            )
        super().__init__(config)
        # nn.Linear's own initialisation draws from the global RNG: fork it, so building a head leaves the caller's
        # random stream untouched; the weights come from `reset_head(seed)` alone.
        with torch.random.fork_rng(devices=[]):
            self.head = _ValueHead(config) if config.head_type == "value" else _QHead(config)
        self.post_init()
        self.reset_head(seed)
        # Attached after post_init so the (pretrained) backbone is never re-initialised.
        self.backbone = backbone
        if backbone is not None and not config.has_adapter:
            for p in backbone.parameters():
                p.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        # Nothing here: `__init__` initialises the head once with `reset_head(seed)` (a local generator), so
        # post_init neither draws from the global RNG for it nor runs an 8192-wide orthogonal init twice.
        return

    def reset_head(self, seed: int = 0) -> None:
        """Re-initialise the head from ``seed`` with a local `torch.Generator` (the global RNG is neither read nor
        advanced), so two processes building the same head get the same weights."""
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            for module in self.head.modules():
                if isinstance(module, nn.Linear):
                    _init_linear(module, self.config, generator)

    # ---------------------------------------------------------------------------------------------- build

    @classmethod
    def from_backbone(
        cls,
        backbone: Union[str, os.PathLike, nn.Module],
        head_type: Optional[str] = None,
        seed: int = 0,
        preset: Optional[str] = None,
        **config_kwargs: Any,
    ) -> "QHeadModel":
        """A freshly initialised head on ``backbone`` (a loaded causal LM, a peft model, or an id / path).

        Args:
            backbone: the causal LM whose last hidden state the head reads (loaded, peft-wrapped, or an id / path).
            head_type (`str`, *optional*): ``"value"`` (default) or ``"q"``.
            seed (`int`, *optional*, defaults to 0): the head's initialisation seed (a local generator: the global
                RNG state does not matter, so two processes get the same head).
            preset (`str`, *optional*): start from a named preset's ``qhead_model`` settings (``"paper"``: the
                authors' ``H -> 8192 -> H -> 1`` tanh MLP, orthogonal init); ``config_kwargs`` override it.
            config_kwargs: [`QHeadConfig`] arguments (``head_hidden_size``, ``rank``, ``init``,
                ``base_model_name_or_path``, ``reward_model_name_or_path``, ``shaping``...).

        A peft backbone sets ``has_adapter=True`` (its LoRA trains with the head); any other backbone is frozen in
        place (``requires_grad_(False)`` on its parameters).
        """
        if preset is not None:
            from ..core.presets import get_preset

            config_kwargs = {**get_preset(preset, "qhead_model"), **config_kwargs}
        if head_type is not None:
            config_kwargs["head_type"] = head_type
        if isinstance(backbone, (str, os.PathLike)):
            config_kwargs.setdefault("backbone_name_or_path", str(backbone))
            backbone = AutoModelForCausalLM.from_pretrained(str(backbone))
        config = QHeadConfig(**config_kwargs)
        config.has_adapter = hasattr(backbone, "peft_config")
        model = cls(config, backbone=backbone, seed=seed)
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
        hidden = hidden_states.to(device=self.head_device, dtype=self.head_dtype)
        if actions is not None:
            actions = actions.to(self.head_device)
        if actions is not None and self.config.head_type == "q":
            values = self.head.gather(hidden, actions)
        else:
            values = self.head(hidden)
        return QHeadOutput(value=values, hidden_states=hidden_states, cache=out_cache)

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.head.parameters()).dtype

    @property
    def head_device(self) -> torch.device:
        """Where the head's weights are: the backbone's last hidden state is moved there (with ``device_map`` the
        backbone's last layer can sit on another device than its first, where ``from_backbone`` puts the head)."""
        return next(self.head.parameters()).device

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
        out = decoder_stack(self.backbone)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        return out.last_hidden_state, (getattr(out, "cache", None) if use_cache else None)

    # ---------------------------------------------------------------------------------------------- save / load

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        is_main_process: bool = True,
        state_dict: Optional[Dict[str, torch.Tensor]] = None,
        push_to_hub: bool = False,
        repo_id: Optional[str] = None,
        tags: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> None:
        """Save the head weights, its config (with the shaping settings and training metrics), the peft LoRA
        adapter if any (sub-folder ``adapter/``) and the model card (``README.md``).

        The frozen backbone is not saved: it is re-attached from ``config.backbone_name_or_path`` at load time.
        With ``push_to_hub=True`` the whole folder (head, adapter and card) is uploaded to ``repo_id`` (default: the
        folder's name) once everything is written; ``commit_message``, ``private``, ``token``, ``create_pr`` and
        ``revision`` are passed on to the Hub.

        Args:
            save_directory (`str` or `os.PathLike`): the folder to write.
            push_to_hub (`bool`, *optional*, defaults to `False`): upload the folder afterwards.
            repo_id (`str`, *optional*): the Hub repository named by the card's usage snippet (and the upload).
            tags (`list[str]`, *optional*): extra tags for the card's metadata.
        """
        hub = {k: kwargs.pop(k) for k in _PUSH_KWARGS if k in kwargs}
        os.makedirs(save_directory, exist_ok=True)
        timestamps = self._get_files_timestamps(save_directory) if push_to_hub else {}
        if push_to_hub and is_main_process:
            from transformers.utils.hub import hf_api

            repo_id = repo_id or os.path.basename(os.path.normpath(str(save_directory)))
            repo_id = hf_api().create_repo(
                repo_id, exist_ok=True, private=hub.get("private"), token=hub.get("token")
            ).repo_id
        self.config.has_adapter = self.backbone is not None and hasattr(self.backbone, "peft_config")
        if state_dict is None:
            state_dict = self.state_dict()
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("head.")}
        # auto_map + the self-contained modeling code: AutoModel.from_pretrained(folder, trust_remote_code=True)
        # loads the head in a process without hf_stackshape.
        self.config.auto_map = dict(HEAD_AUTO_MAP)
        # The parent writes config.json and the head's weights; uploading is ours, once the folder is complete.
        super().save_pretrained(save_directory, is_main_process=is_main_process, state_dict=state_dict, **kwargs)
        if not is_main_process:
            return
        _write_portable_code(save_directory)
        if self.config.has_adapter:
            self.backbone.save_pretrained(os.path.join(save_directory, ADAPTER_FOLDER))
        card = render_model_card(self.config, repo_id=repo_id, tags=merge_tags(self.model_tags, tags))
        atomic_write_text(os.path.join(save_directory, "README.md"), str(card))
        if push_to_hub:
            self._upload_modified_files(
                save_directory,
                repo_id,
                timestamps,
                commit_message=hub.get("commit_message"),
                token=hub.get("token"),
                create_pr=hub.get("create_pr", False),
                revision=hub.get("revision"),
                commit_description=hub.get("commit_description"),
            )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: Optional[str] = None,
        commit_description: Optional[str] = None,
        private: Optional[bool] = None,
        token: Optional[Union[bool, str]] = None,
        revision: Optional[str] = None,
        create_pr: bool = False,
        max_shard_size: Optional[Union[int, str]] = "50GB",
        tags: Optional[List[str]] = None,
    ):
        """Upload the head, its LoRA adapter (if any) and its model card to the Hub repository ``repo_id``.

        Same arguments as `transformers.PreTrainedModel.push_to_hub`; unlike it, the uploaded ``README.md`` is this
        head's card (shaping settings, training diagnostics, a usage snippet naming ``repo_id``), not the generic
        transformers card.

        Examples:

        ```python
        >>> qhead.push_to_hub("me/smollm2-srs-value-head")  # doctest: +SKIP
        >>> qhead = QHeadModel.from_pretrained("me/smollm2-srs-value-head", backbone=base)  # doctest: +SKIP
        ```
        """
        import tempfile

        from transformers.utils.hub import hf_api

        repo_id = hf_api().create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp_dir:
            self.save_pretrained(tmp_dir, max_shard_size=max_shard_size, repo_id=repo_id, tags=tags)
            return self._upload_modified_files(
                tmp_dir,
                repo_id,
                files_timestamps={},
                commit_message=commit_message,
                token=token,
                create_pr=create_pr,
                revision=revision,
                commit_description=commit_description,
            )

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
            config ([`QHeadConfig`], *optional*): use this config instead of the saved one.
            backbone_kwargs (`dict`, *optional*): arguments of the backbone's `from_pretrained` (``dtype``, ...).
            kwargs: the usual Hub arguments (``subfolder``, ``revision``, ``token``, ``cache_dir``,
                ``local_files_only``, ``force_download``, ``proxies``), used for the head, its config and its
                adapter (loaded with peft's ``PeftModel.from_pretrained``); ``dtype`` casts the head.

        Examples:

        ```python
        >>> qhead = QHeadModel.from_pretrained("me/smollm2-srs-value-head", revision="main")  # doctest: +SKIP
        >>> qhead = QHeadModel.from_pretrained("me/heads", subfolder="srs", backbone=base)  # doctest: +SKIP
        ```
        """
        from safetensors.torch import load_file
        from transformers.utils import cached_file

        path = str(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
        dtype = kwargs.pop("dtype", None)
        unexpected = sorted(k for k in kwargs if k not in _IGNORED_LOAD_KWARGS)
        if unexpected or model_args:
            raise ValueError(
                f"QHeadModel.from_pretrained got unexpected arguments {unexpected or list(model_args)}; the Hub "
                f"arguments are {list(_HUB_KWARGS)}, and the backbone's go in backbone_kwargs={{...}} (e.g. "
                "backbone_kwargs={'device_map': 'auto'})."
            )
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

            subfolder = "/".join(p for p in (hub_kwargs.get("subfolder"), ADAPTER_FOLDER) if p)
            adapter = os.path.join(path, subfolder)
            if not os.path.isdir(adapter):
                # Resolved through transformers' cache first: peft 0.21 joins a Hub `subfolder` into the file name
                # and passes it again, so it asks for adapter/adapter/...; a resolved folder avoids that.
                file_kwargs = {**hub_kwargs, "subfolder": subfolder}
                adapter = os.path.dirname(cached_file(path, "adapter_config.json", **file_kwargs))
                cached_file(path, "adapter_model.safetensors", **file_kwargs)
            backbone = PeftModel.from_pretrained(backbone, adapter)
        model = cls(config, backbone=backbone)
        weights = cached_file(path, HEAD_WEIGHTS, **hub_kwargs)
        state = load_file(weights)
        missing, unexpected = model.head.load_state_dict(
            {k[len("head.") :]: v for k, v in state.items() if k.startswith("head.")}, strict=False
        )
        if missing or unexpected:
            raise ValueError(
                f"Head weights at {weights} do not match the config: missing {missing}, unexpected {unexpected}."
            )
        model.to(_backbone_device(backbone))
        if dtype not in (None, "auto"):
            model.head.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return model.eval()


#: ``config.json``'s ``auto_map`` of a saved head: the flat files :func:`_write_portable_code` writes beside it.
HEAD_AUTO_MAP = {"AutoConfig": "configuration_qhead.QHeadConfig", "AutoModel": "modeling_qhead.QHeadModel"}


def _write_portable_code(save_directory: Union[str, os.PathLike]) -> None:
    """Write ``configuration_qhead.py``, ``modeling_qhead.py`` and their flat helpers next to a saved head: the
    library's own modules made self-contained by :mod:`hf_stackshape.utils.portable`. The self-contained copy (a head
    loaded with ``trust_remote_code=True``) copies its own files instead."""
    try:
        from ..utils.portable import write_head_code
    except ImportError:  # running as the self-contained copy: these very files are the head's code
        import shutil

        here = os.path.dirname(os.path.abspath(__file__))
        for name in sorted(os.listdir(here)):
            if name.endswith(".py") and name != "__init__.py":
                shutil.copyfile(os.path.join(here, name), os.path.join(str(save_directory), name))
        return
    write_head_code(save_directory)


_HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download", "proxies", "subfolder")
#: Passed along by transformers' Auto classes; nothing to do for a head.
_IGNORED_LOAD_KWARGS = ("_from_auto", "trust_remote_code", "code_revision", "adapter_kwargs", "_commit_hash")
_PUSH_KWARGS = ("commit_message", "commit_description", "private", "token", "create_pr", "revision")
#: Tags of every Q-head card (the trainer and ``add_model_tags`` add theirs).
CARD_TAGS = ["hf_stackshape", "controlled-decoding", "stackelberg-reward-shaping"]


def merge_tags(*groups: Optional[List[str]]) -> List[str]:
    """The tags of ``groups`` (each a tag, a list of tags or ``None``) in order, each once."""
    out: List[str] = []
    for group in groups:
        for tag in [group] if isinstance(group, str) else (group or []):
            if tag not in out:
                out.append(tag)
    return out


_merge_tags = merge_tags  # the old private name, kept


def _init_linear(module: nn.Linear, config: QHeadConfig, generator: Optional[torch.Generator] = None) -> None:
    if config.init == "orthogonal":
        nn.init.orthogonal_(module.weight, gain=1.0, generator=generator)
    else:
        nn.init.normal_(module.weight, mean=0.0, std=config.initializer_range, generator=generator)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _backbone_device(backbone: nn.Module) -> torch.device:
    try:
        return next(backbone.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _fill_config_from_backbone(config: QHeadConfig, backbone: nn.Module) -> None:
    base = unwrap_peft(backbone)
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


def is_hub_id(name: Optional[str]) -> bool:
    """True when ``name`` reads as a Hub repository id (``org/name``), not a local folder or cache path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or os.path.isabs(name) or os.path.exists(name) or name.startswith((".", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return "/" in name


def _card_template() -> str:
    """``hf_stackshape/model_cards/qhead.md``. The self-contained copy (see :mod:`hf_stackshape.utils.portable`) has no
    package data: :func:`~hf_stackshape.utils.portable.head_code_files` writes the template as the flat module
    ``qhead_card.py`` beside it."""
    try:
        return resources.files("hf_stackshape").joinpath("model_cards/qhead.md").read_text(encoding="utf-8")
    except ImportError:
        from .qhead_card import TEMPLATE  # only in the self-contained copy

        return TEMPLATE


def _framework_versions() -> List[tuple]:
    """``(package, version)`` of what trained / saved the head, for the card (installed packages only)."""
    from importlib import metadata

    out = []
    for name in ("hf_stackshape", "transformers", "torch", "peft", "datasets", "huggingface_hub", "safetensors"):
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return out


def render_model_card(
    config: QHeadConfig,
    repo_id: Optional[str] = None,
    tags: Optional[List[str]] = None,
    model_name: Optional[str] = None,
    dataset_name: Optional[str] = None,
):
    """The head's model card, a `huggingface_hub.ModelCard` filled from ``hf_stackshape/model_cards/qhead.md``.

    Metadata: ``library_name``, ``base_model`` (only when it is a Hub id: local folders and cache paths never
    reach the card), ``tags``, the shaping settings and the training diagnostics. The usage snippet loads
    ``repo_id`` (the Hub id; a placeholder when the head has not been pushed).

    Args:
        config ([`QHeadConfig`]): the head's config (shaping settings, ``training_metrics``).
        repo_id (`str`, *optional*): the Hub repository the card describes.
        tags (`list[str]`, *optional*): extra tags.
        model_name (`str`, *optional*): the title (default: the repository's name).
        dataset_name (`str`, *optional*): the Hub id of the rollouts' dataset, recorded as ``datasets``.
    """
    from huggingface_hub import ModelCard, ModelCardData

    template = _card_template()
    shaping = dict(config.shaping or {"name": "raw"})
    transform = shaping.get("name", "raw")
    settings = {k: v for k, v in shaping.items() if k != "name"}
    if config.head_type == "value":
        shape = f"MLP {config.hidden_size} -> {config.head_hidden_size} -> {config.hidden_size} -> 1, tanh"
    else:
        shape = f"low-rank {config.hidden_size} -> {config.rank} -> {config.vocab_size}"
    base = config.base_model_name_or_path or config.backbone_name_or_path
    base_id = base if is_hub_id(base) else None
    backbone_id = config.backbone_name_or_path if is_hub_id(config.backbone_name_or_path) else None
    reward_id = config.reward_model_name_or_path
    metrics = {k: float(v) for k, v in (config.training_metrics or {}).items()}
    settings_rows = list((config.training_settings or {}).items())
    data = ModelCardData(
        library_name="hf_stackshape",
        base_model=base_id,
        datasets=[dataset_name] if dataset_name and is_hub_id(dataset_name) else None,
        tags=merge_tags(CARD_TAGS, [f"{config.head_type}-head", f"{transform}-shaping"], tags),
        stackshape={
            "head_type": config.head_type,
            "transform": transform,
            "shaping": settings,
            "backbone": backbone_id,
            "reward_model": reward_id if is_hub_id(reward_id) else None,
            "training_metrics": {k: round(v, 6) for k, v in metrics.items()},
        },
    )
    if config.training_settings.get("loss_type") == "consistency":
        training_text = (
            "The head regresses its value at the last response token to the rollout's shaped reward, plus "
            f"{config.training_settings.get('consistency_weight', 1.0)} x the mean squared difference of "
            "consecutive prefix values (the authors' `train_value_function.py`)."
        )
    else:
        training_text = (
            "The head regresses every response prefix of base-policy rollouts to the rollout's shaped reward "
            "(CD-FUDGE), optionally with a consistency term between consecutive prefix values."
        )

    def shown(name: Optional[str], hub: Optional[str]) -> str:
        if hub:
            return f"[`{hub}`](https://huggingface.co/{hub})"
        return "a local model" if name else "unknown"

    chat = (config.training_settings or {}).get("prompt format", "chat template") == "chat template"
    if chat:
        prompt_snippet = (
            'prompt = "How do I bake bread?"\n'
            'text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, '
            "tokenize=False)\n"
            'inputs = tokenizer([text], return_tensors="pt", add_special_tokens=False)'
        )
    else:
        prompt_snippet = 'inputs = tokenizer(["How do I bake bread?"], return_tensors="pt")'
    card = ModelCard.from_template(
        data,
        template_str=template,
        model_name=model_name or (repo_id.split("/")[-1] if repo_id else f"{transform}-{config.head_type}-head"),
        repo_id=repo_id or "<your-hub-id>",
        base_model=shown(base, base_id),
        base_model_id=base_id or "<base model id>",
        backbone=shown(config.backbone_name_or_path, backbone_id),
        backbone_note="LoRA adapter saved here" if config.has_adapter else "frozen, not saved here",
        # The base model doubles as the backbone (shared hidden states), or the backbone is not on the Hub.
        backbone_argument="" if backbone_id and backbone_id != base_id else ", backbone=base",
        reward_model=shown(reward_id, reward_id if is_hub_id(reward_id) else None) if reward_id else "unknown",
        head_type=config.head_type,
        head_shape=shape,
        transform=transform,
        shaping=", ".join(f"{k}=`{json.dumps(v)}`" for k, v in settings.items()) or "none",
        training_rows=settings_rows,
        training_text=training_text,
        metrics_rows=[(k, f"{v:.4f}") for k, v in metrics.items()],
        adapter_note=" (and its LoRA adapter, in `adapter/`)" if config.has_adapter else "",
        prompt_snippet=prompt_snippet,
        prompt_format="the chat template's user turn" if chat else "raw text",
        framework_versions=_framework_versions(),
    )
    return card
