"""SRS-CD through ``model.generate(custom_generate=..., trust_remote_code=True)``.

Controlled Decoding (Mudgal et al., 2023) guided by a value or Q head trained on Stackelberg-shaped rewards
(Wang et al., 2026, arXiv 2602.02572): at every step the top-k tokens of ``log_softmax(logits / temperature)`` get
``logp + weight * value`` from the head. Exported by hf_stackshape (``stackshape export-generate --method srs-cd``);
the sibling ``srs_*.py``, ``configuration_qhead.py`` and ``modeling_qhead.py`` files are the library's own modules.
"""

import copy

from transformers import GenerationMixin, LogitsProcessorList

from .modeling_qhead import QHeadModel
from .srs_cd import CDLogitsProcessor

#: The Q-head this export was made for (``stackshape export-generate --qhead``); ``qhead=`` overrides it.
DEFAULT_QHEAD = None


def _same_model(name, model) -> bool:
    own = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    return bool(name) and bool(own) and str(name).rstrip("/") == str(own).rstrip("/")


def load_qhead(qhead, model, qhead_backbone="auto", qhead_kwargs=None):
    """The Q-head ``qhead`` (Hub id or folder) with its backbone: the base ``model`` itself when the head was
    trained on it (``qhead_backbone="auto"`` and the names match, or ``"base"``), else the backbone its config
    names (``"config"``)."""
    if isinstance(qhead, QHeadModel):
        return qhead
    if not isinstance(qhead, (str, bytes)) and not hasattr(qhead, "__fspath__"):
        raise ValueError(
            f"qhead= must be a Q-head's Hub id or folder, got {type(qhead).__name__}; a QHeadModel loaded through "
            "hf_stackshape belongs with hf_stackshape's own CDLogitsProcessor."
        )
    qhead = str(qhead)
    if qhead_backbone not in ("auto", "base", "config"):
        raise ValueError(f"qhead_backbone must be 'auto', 'base' or 'config', got {qhead_backbone!r}.")
    config = QHeadModel.config_class.from_pretrained(qhead)
    use_base = qhead_backbone == "base" or (
        qhead_backbone == "auto" and _same_model(config.backbone_name_or_path, model)
    )
    kwargs = dict(qhead_kwargs or {})
    return QHeadModel.from_pretrained(qhead, backbone=model if use_base else None, **kwargs)


def generate(
    model,
    *args,
    qhead=None,
    k=10,
    weight=1.5,
    guidance_temperature=0.7,
    qhead_backbone="auto",
    qhead_kwargs=None,
    **kwargs,
):
    """``model.generate`` with an SRS-CD ``LogitsProcessor`` appended (see README.md for every argument)."""
    qhead = qhead if qhead is not None else DEFAULT_QHEAD
    if qhead is None:
        raise ValueError("srs-cd needs qhead=: the Hub id or folder of a Q-head saved by hf_stackshape.")
    head = load_qhead(qhead, model, qhead_backbone, qhead_kwargs)
    processor = CDLogitsProcessor(
        head,
        k=k,
        weight=weight,
        temperature=guidance_temperature,
        base_model=model,
        tokenizer=kwargs.get("tokenizer"),
    )
    config = copy.deepcopy(kwargs.get("generation_config") or model.generation_config)
    config.update(**{key: value for key, value in kwargs.items() if hasattr(config, key)})
    try:
        processor.check_generation_config(config, kwargs.get("assistant_model"))
        kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), processor])
        return GenerationMixin.generate(model, *args, **kwargs)
    finally:
        processor.close()
