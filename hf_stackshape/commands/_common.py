"""Argument helpers shared by the ``stackshape`` subcommands (model loading, dtypes, reward specs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch


@dataclass
class PromptSourceArguments:
    """Where the prompts come from: a file (``--prompts``) or a dataset (``--dataset --split --column``)."""

    prompts: Optional[str] = field(default=None, metadata={"help": "Prompt file: .jsonl/.json/.csv/.txt."})
    dataset: Optional[str] = field(default=None, metadata={"help": "Hub dataset id or local dataset folder."})
    split: str = field(default="train", metadata={"help": "Split of --dataset."})
    column: str = field(default="prompt", metadata={"help": "Field / column holding the prompt text."})
    limit: Optional[int] = field(default=None, metadata={"help": "Use only the first LIMIT prompts."})

    def load_prompts(self) -> List[str]:
        from ..utils.io import load_prompts

        prompts = load_prompts(path=self.prompts, dataset=self.dataset, split=self.split, column=self.column, limit=self.limit)
        if not prompts:
            raise ValueError("No prompts found; check --prompts / --dataset and --column.")
        return prompts


@dataclass
class EvalPromptSourceArguments(PromptSourceArguments):
    """Prompt source for generation and evaluation (a dataset's ``test`` split by default)."""

    split: str = field(default="test", metadata={"help": "Split of --dataset."})


def dtype_from_name(name: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"Unknown --dtype {name!r}; use float32, bfloat16 or float16.")
    return value


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base_model(name: Optional[str], dtype: str = "float32", device: Optional[str] = None) -> Tuple[object, object]:
    """The base policy: a Hub id / local folder, or the embedded SmolLM2 when ``name`` is None or 'smollm2'."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = dtype_from_name(dtype)
    device = device or default_device()
    if name is None or str(name).lower() in ("smollm2", "default"):
        from ..assets.defaults import load_smollm2

        model, tokenizer = load_smollm2(dtype=torch_dtype, device=device)
        return model, tokenizer
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(name, padding_side="left")
    except (OSError, ValueError) as err:
        if os.path.exists(os.path.expanduser(str(name))):
            raise
        from ..rewards.table import not_found_error

        raise not_found_error("base model", str(name), err, {"smollm2": "the embedded SmolLM2-135M-Instruct"}) from None
    model = model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


TRUST_REMOTE_CODE_HELP = (
    "Allow reward specs of the form 'package.module:function', which import and run that module's code "
    "(like transformers' remote code: a config file must not run code unnoticed)."
)


def load_reward_spec(
    spec: str,
    dtype: str = "float32",
    device: Optional[str] = None,
    batch_size: int = 16,
    trust_remote_code: bool = False,
):
    """A reward named on the command line, resolved by :func:`hf_stackshape.rewards.load_reward` (the same names
    as the Python API: 'demo', 'vader', 'length', 'module:function' with ``trust_remote_code``, an RM path / Hub id)."""
    from ..rewards.registry import load_reward

    return load_reward(
        spec,
        trust_remote_code=trust_remote_code,
        dtype=dtype_from_name(dtype),
        device=device or default_device(),
        batch_size=batch_size,
    )


def load_qhead(path: str, model):
    """A Q-head by folder or Hub id, sharing ``model`` as backbone when it is the head's; clear error on a typo."""
    from ..qhead.modeling_qhead import QHeadModel
    from ..rewards.table import not_found_error

    try:
        return QHeadModel.from_pretrained(path, backbone=model if _same_backbone(path, model) else None)
    except (OSError, ValueError) as err:
        if os.path.exists(os.path.expanduser(path)):
            raise
        raise not_found_error("Q-head", path, err) from None


def _same_backbone(qhead_path: str, model) -> bool:
    """Whether the Q-head's backbone is the loaded base model (then its hidden states are shared)."""
    try:
        from ..qhead.configuration_qhead import QHeadConfig

        config = QHeadConfig.from_pretrained(qhead_path)
    except Exception:
        return False
    name = getattr(model.config, "_name_or_path", None)
    return bool(name) and str(config.backbone_name_or_path) == str(name)
