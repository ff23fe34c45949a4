"""The method registry (layer 1): method names, the decoder each one runs, and the settings it runs with.

A *method* names a decoder and a reward transform, as in the paper's tables (Wang et al., 2026): ``base``,
``<transform>-args`` (ARGS, Khanov et al., 2024), ``<transform>-cd`` (Controlled Decoding, Mudgal et al., 2023)
and ``<transform>-bon`` (best-of-N), with ``vanilla`` = the raw reward. Decoders are named here by lazy class
path, so the registry imports no decoder: :func:`decoder_class` imports one on first use.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Dict, Optional

from .presets import get_preset
from .shaping import TRANSFORMS, get_transform

__all__ = [
    "DECODERS",
    "DECODER_CLASSES",
    "DECODER_KEYS",
    "METHOD_EXAMPLES",
    "Method",
    "parse_method",
    "decoder_class",
    "decoder_settings",
]

DECODERS = ("args", "cd", "bon")

#: Each decoder's class, by import path (imported on first use by :func:`decoder_class`).
DECODER_CLASSES = {
    "args": "hf_stackshape.guidance.args:ARGSLogitsProcessor",
    "cd": "hf_stackshape.guidance.cd:CDLogitsProcessor",
    "bon": "hf_stackshape.bon:StackelbergBestOfN",
}
METHOD_EXAMPLES = (
    "base",
    "args",
    "srs-args",
    "minmax-args",
    "meanstd-args",
    "meansoft-args",
    "hard-args",
    "cd",
    "srs-cd",
    "bon",
    "soft-bon",
    "srs-bon",
)


@dataclass(frozen=True)
class Method:
    """A decoding method: ``decoder`` in ``{None, "args", "cd", "bon"}``, the reward ``transform`` it uses and,
    for best-of-N, the ``selection`` (``"soft"`` or ``"argmax"``)."""

    name: str
    decoder: Optional[str]
    transform: str = "raw"
    selection: Optional[str] = None

    @property
    def label(self) -> str:
        if self.decoder is None:
            return "base"
        if self.decoder == "bon":
            if self.transform == "raw":
                return "bon" if self.selection == "argmax" else "soft-bon"
            return f"{self.transform}-bon"
        prefix = "vanilla" if self.transform == "raw" else self.transform
        return f"{prefix}-{self.decoder}"

    @property
    def vanilla(self) -> str:
        """The method this one is compared with: the same decoder (and selection) on the raw reward."""
        return "soft-bon" if self.decoder == "bon" and self.selection == "soft" else str(self.decoder)


def parse_method(name: str) -> Method:
    """Parse ``"srs-args"``, ``"args"``, ``"vanilla-cd"``, ``"base"``... into a :class:`Method`."""
    text = str(name).strip().lower()
    if text in ("base", "greedy", "none", "sample"):
        return Method(text, None, "raw")
    if text in ("bon", "soft-bon"):
        return Method(text, "bon", "raw", "argmax" if text == "bon" else "soft")
    if text in DECODERS:
        return Method(text, text, "raw")
    if "-" in text:
        transform, decoder = text.rsplit("-", 1)
        if decoder in DECODERS:
            try:
                canonical = get_transform(transform).name
            except ValueError:
                canonical = None
            if canonical is not None:
                return Method(text, decoder, canonical, "soft" if decoder == "bon" else None)
    raise ValueError(
        f"Unknown method {name!r}. Use 'base', '<decoder>' or '<transform>-<decoder>' with decoder in "
        f"{list(DECODERS)} and transform in {sorted(TRANSFORMS) + ['vanilla']} (e.g. {', '.join(METHOD_EXAMPLES)})."
    )


#: Keyword arguments of each decoder that a method run records and a preset may set (``presets.get_preset``).
DECODER_KEYS = {
    "args": ("k", "weight", "bound", "alpha", "beta", "safeguards", "cap", "rm_input"),
    "cd": ("k", "weight", "temperature"),
    "bon": ("beta", "bound", "alpha"),
}


def decoder_class(decoder: str) -> type:
    """The class that runs ``decoder`` (``"args"``, ``"cd"`` or ``"bon"``), imported on first use."""
    if decoder not in DECODER_CLASSES:
        raise ValueError(f"Unknown decoder {decoder!r}; use one of {list(DECODER_CLASSES)}.")
    module, _, name = DECODER_CLASSES[decoder].partition(":")
    return getattr(importlib.import_module(module), name)


def decoder_settings(method, preset: Optional[str] = None, **explicit) -> Dict[str, Any]:
    """The settings ``method``'s decoder runs with: its class defaults, then ``preset``, then ``explicit``.

    ``explicit`` values that are ``None`` mean "not given". The result always holds ``weight``, the guidance
    weight ``lambda = 1/beta`` actually used (``0.0`` for the base policy; ``1/beta`` for best-of-N), so a
    record never says ``null`` where a default applied. ARGS's ``beta`` defaults to ``1 / weight`` (the
    authors' script), and is recorded resolved.

    Args:
        method (`str` or [`Method`]): see :func:`parse_method`.
        preset (`str`, *optional*): a preset of :mod:`hf_stackshape.core.presets` (e.g. ``"paper"``); its component
            named after the decoder (``args``, ``cd``) fills what ``explicit`` leaves unset.
        explicit: ``k``, ``weight``, ``bound``, ``alpha``, ``beta``, ``temperature`` (CD), ...

    Examples:

    ```python
    >>> from hf_stackshape.core.methods import decoder_settings
    >>> decoder_settings("srs-args")["weight"], decoder_settings("cd")["weight"]
    (0.5, 1.5)
    >>> decoder_settings("srs-args", preset="paper", weight=2.0)["rm_input"]
    'raw'
    ```
    """
    method = method if isinstance(method, Method) else parse_method(method)
    if method.decoder is None:
        return {"weight": 0.0}
    keys = DECODER_KEYS[method.decoder]
    parameters = inspect.signature(decoder_class(method.decoder).__init__).parameters
    settings = {key: parameters[key].default for key in keys if key in parameters}
    if preset is not None:
        component = get_preset(preset, method.decoder) if method.decoder in ("args", "cd") else {}
        settings.update({key: value for key, value in component.items() if key in keys})
    weight = explicit.pop("weight", None)
    settings.update({key: value for key, value in explicit.items() if value is not None and key in keys})
    if method.decoder == "bon":
        if weight is not None:
            settings["beta"] = float("inf") if weight == 0 else 1.0 / float(weight)
        beta = settings["beta"]
        settings["weight"] = 0.0 if beta == float("inf") else 1.0 / float(beta)
        return settings
    if weight is not None:
        settings["weight"] = float(weight)
    if method.decoder == "args" and settings.get("beta") is None and settings["weight"] > 0:
        settings["beta"] = 1.0 / settings["weight"]
    return settings
