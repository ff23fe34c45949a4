"""Configuration of the value / Q heads used by Controlled Decoding (Mudgal et al., 2023) with Stackelberg
reward shaping (Wang et al., 2026, arXiv 2602.02572)."""

from __future__ import annotations

from typing import Any, Dict, Optional

from transformers import PretrainedConfig

from ..core.presets import FromPresetMixin

__all__ = ["QHeadConfig", "HEAD_TYPES", "INIT_SCHEMES"]

#: ``value``: one value per prefix ``V(x, y_<=t)``; ``q``: one value per next token ``Q(x, y_<t, v)``.
HEAD_TYPES = ("value", "q")
#: ``normal``: N(0, initializer_range) weights, zero biases; ``orthogonal``: orthogonal weights (gain 1), zero
#: biases, as in the authors' value function.
INIT_SCHEMES = ("normal", "orthogonal")


class QHeadConfig(FromPresetMixin, PretrainedConfig):
    r"""Configuration of a [`QHeadModel`]: a head on the last hidden state of a causal-LM backbone.

    Only the head is described (and saved); the backbone is re-attached by id or local path at load time.

    Args:
        head_type (`str`, *optional*, defaults to `"value"`):
            ``"value"``: an MLP ``H -> head_hidden_size -> H -> 1`` with tanh activations (the paper's CD value
            function), one value per prefix. ``"q"``: a low-rank projection ``H -> rank -> V`` giving one value
            per next token of the vocabulary (CD-FUDGE style), so all candidates are scored in one forward.
        backbone_name_or_path (`str`, *optional*):
            Hub id or local folder of the causal-LM backbone (the base model itself, frozen, or a smaller LM).
            Required by `from_pretrained` unless a loaded `backbone=` is passed.
        hidden_size (`int`, *optional*):
            Hidden size ``H`` of the backbone's last hidden state (filled from the backbone).
        vocab_size (`int`, *optional*):
            Vocabulary size ``V`` of the backbone tokenizer (filled from the backbone); CD checks it against the
            base model's vocabulary.
        vocab_digest (`str`, *optional*):
            Digest of the training tokenizer's token -> id mapping (written by ``QHeadTrainer``); CD refuses a
            tokenizer with another mapping, even of the same size.
        head_hidden_size (`int`, *optional*, defaults to 256):
            Inner width of the value MLP (the paper uses 8192 on 8B models; small by default).
        rank (`int`, *optional*, defaults to 16):
            Rank of the ``q`` head's projection (``rank * V`` parameters, a few MB).
        base_model_name_or_path (`str`, *optional*):
            The base model that CD guides (recorded for the model card and checks).
        reward_model_name_or_path (`str`, *optional*):
            The reward model whose (shaped) scores the head was trained on.
        shaping (`dict`, *optional*):
            The reward transform's settings, ``get_transform(...).to_dict()`` (name, bound, alpha, beta,
            safeguards), so decoding uses the same shaping as training.
        has_adapter (`bool`, *optional*, defaults to `False`):
            Whether a peft LoRA adapter of the backbone is saved next to the head (sub-folder ``adapter``).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the ``normal`` initialisation of the head.
        init (`str`, *optional*, defaults to `"normal"`):
            Initialisation of the head's linear layers: ``"normal"`` (``N(0, initializer_range)``) or
            ``"orthogonal"`` (gain 1, the authors' value function). Biases start at zero either way.
        training_settings (`dict`, *optional*):
            How the head was trained (loss, learning rate, epochs, rollouts...), filled by [`QHeadTrainer`] and
            shown on the model card.
        training_metrics (`dict`, *optional*):
            Diagnostics of the training run (validation MSE, Spearman correlations...), filled by
            [`QHeadTrainer`] and shown on the model card.

    Examples:

    ```python
    >>> from hf_stackshape import QHeadConfig
    >>> config = QHeadConfig.from_preset("paper", hidden_size=576)  # the authors' value MLP
    >>> config.head_hidden_size, config.init
    (8192, 'orthogonal')
    ```
    """

    model_type = "stackshape_qhead"
    #: ``QHeadConfig.from_preset(name, **overrides)``: the preset's ``qhead_model`` settings, ``overrides`` (any
    #: argument above) on top; ``"paper"`` is the authors' value function (``H -> 8192 -> H -> 1``, tanh,
    #: orthogonal init).
    _preset_component = "qhead_model"

    def __init__(
        self,
        head_type: str = "value",
        backbone_name_or_path: Optional[str] = None,
        hidden_size: Optional[int] = None,
        vocab_size: Optional[int] = None,
        head_hidden_size: int = 256,
        rank: int = 16,
        base_model_name_or_path: Optional[str] = None,
        reward_model_name_or_path: Optional[str] = None,
        shaping: Optional[Dict[str, Any]] = None,
        has_adapter: bool = False,
        initializer_range: float = 0.02,
        init: str = "normal",
        training_settings: Optional[Dict[str, Any]] = None,
        training_metrics: Optional[Dict[str, float]] = None,
        vocab_digest: Optional[str] = None,
        **kwargs,
    ):
        if head_type not in HEAD_TYPES:
            raise ValueError(f"`head_type` must be one of {HEAD_TYPES}, got {head_type!r}.")
        if init not in INIT_SCHEMES:
            raise ValueError(f"`init` must be one of {INIT_SCHEMES}, got {init!r}.")
        for name, value in (("head_hidden_size", head_hidden_size), ("rank", rank)):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        self.head_type = head_type
        self.backbone_name_or_path = backbone_name_or_path
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.vocab_digest = vocab_digest
        self.head_hidden_size = int(head_hidden_size)
        self.rank = int(rank)
        self.base_model_name_or_path = base_model_name_or_path
        self.reward_model_name_or_path = reward_model_name_or_path
        self.shaping = dict(shaping) if shaping else {"name": "raw"}
        self.has_adapter = bool(has_adapter)
        self.initializer_range = float(initializer_range)
        self.init = init
        self.training_settings = dict(training_settings) if training_settings else {}
        self.training_metrics = dict(training_metrics) if training_metrics else {}
        super().__init__(**kwargs)
