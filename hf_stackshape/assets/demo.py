"""The demo's bundled assets: prompts, a small reward model trained by this project, and a gold judge.

* ``data/prompts.jsonl``: a few hundred hand-written user prompts (everyday questions, advice,
  short creative tasks, opinions, explanations, emotional situations, and requests a good assistant
  declines), each with an ``id``, a ``category`` and a ``split`` (``"train"`` for reward-model
  training and threshold calibration, ``"test"`` for evaluation).
* ``data/demo_rm/``: a LoRA adapter (with its one-logit ``score`` head) on SmolLM2-135M-Instruct,
  trained with TRL's ``RewardTrainer`` by ``examples/train_demo_reward_model.py`` on preference pairs
  of SmolLM2 answers to the train prompts, labelled by VADER sentiment. It rewards warm, positive
  answers; :func:`load_demo_reward_model` returns it as an :class:`~hf_stackshape.rewards.HFRewardModel`.
* :func:`vader_reward`: the VADER compound sentiment score in ``[-1, 1]``, the independent gold
  judge the demo reward model was distilled from (use it to evaluate, not to guide); the very reward of
  ``load_reward("vader")`` (:func:`hf_stackshape.rewards.builtin_rewards.vader_reward`, re-exported here).

Together they give the Stackelberg reward shaping demo (Wang et al., 2026, arXiv 2602.02572) a
realistic proxy-vs-gold setup for ARGS (Khanov et al., 2024) and Controlled Decoding (Mudgal et al.,
2023) that runs offline on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from transformers.utils import logging

from ..rewards.adapters import HFRewardModel
from ..rewards.builtin_rewards import vader_reward  # noqa: F401 - the demo's gold judge, one VADER for all
from ..utils.io import read_jsonl
from .defaults import smollm2_path

logger = logging.get_logger(__name__)

__all__ = [
    "DATA_DIR",
    "DEMO_PROMPTS_PATH",
    "DEMO_RM_PATH",
    "demo_prompt_records",
    "demo_prompts",
    "load_demo_reward_model",
    "vader_reward",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEMO_PROMPTS_PATH = DATA_DIR / "prompts.jsonl"
DEMO_RM_PATH = DATA_DIR / "demo_rm"
_SPLITS = ("train", "test")
_TRAIN_SCRIPT = "python examples/train_demo_reward_model.py"


def demo_prompt_records(split: Optional[str] = None) -> List[Dict[str, str]]:
    """The bundled prompts as dicts with ``id``, ``prompt``, ``category`` and ``split``, in file order.

    Args:
        split (`str`, *optional*): ``"train"`` or ``"test"``; ``None`` returns every prompt.
    """
    if split is not None and split not in _SPLITS:
        raise ValueError(f"`split` must be one of {_SPLITS} or None, got {split!r}.")
    if not DEMO_PROMPTS_PATH.is_file():
        raise FileNotFoundError(
            f"The bundled demo prompts are missing ({DEMO_PROMPTS_PATH}); reinstall hf_stackshape "
            "(the file ships as package data)."
        )
    rows = read_jsonl(DEMO_PROMPTS_PATH)
    return [row for row in rows if split is None or row["split"] == split]


def demo_prompts(split: Optional[str] = None) -> List[str]:
    """The bundled demo prompts as plain strings.

    Args:
        split (`str`, *optional*): ``"train"`` (about 210 prompts, for reward-model training and
            threshold calibration) or ``"test"`` (about 100, for evaluation); ``None`` returns all.

    Examples:

    ```python
    >>> from hf_stackshape.assets.demo import demo_prompts
    >>> len(demo_prompts()) >= 300
    True
    ```
    """
    return [row["prompt"] for row in demo_prompt_records(split)]


def load_demo_reward_model(
    path: Optional[Union[str, Path]] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[Union[str, torch.device]] = None,
    merge: bool = True,
    **reward_kwargs,
) -> HFRewardModel:
    """Load the bundled demo reward model (SmolLM2-135M-Instruct + LoRA adapter) offline.

    The base is read from the embedded SmolLM2 folder (:func:`~hf_stackshape.assets.defaults.smollm2_path`),
    never from the adapter's ``base_model_name_or_path``, so the adapter works on any machine.

    Args:
        path (`str` or `Path`, *optional*): an adapter folder (default: the bundled ``data/demo_rm``).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): weights dtype.
        device (`str` or `torch.device`, *optional*): where to run (default: CPU).
        merge (`bool`, *optional*, defaults to `True`): merge the LoRA weights into the base (faster).
        reward_kwargs: forwarded to :class:`~hf_stackshape.rewards.HFRewardModel` (``batch_size``, ...).

    Examples:

    ```python
    >>> from hf_stackshape.assets.demo import load_demo_reward_model
    >>> rm = load_demo_reward_model()  # doctest: +SKIP
    >>> rm.score(["How was your day?"], ["Wonderful, thank you!"])  # doctest: +SKIP
    ```
    """
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(path) if path is not None else DEMO_RM_PATH
    required = ("adapter_config.json", "adapter_model.safetensors")
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"No demo reward model adapter in {folder} (missing {', '.join(missing)}). "
            f"Train one with `{_TRAIN_SCRIPT}` or pass path= to an adapter folder."
        )
    base_path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(base_path, padding_side="left")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The score head is created here and then overwritten by the adapter's saved copy
    # (modules_to_save), so transformers' "newly initialized" notice is expected and harmless.
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        base = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=1, dtype=dtype, pad_token_id=tokenizer.pad_token_id
        )
    finally:
        logging.set_verbosity(verbosity)
    model = PeftModel.from_pretrained(base, str(folder))
    if merge:
        model = model.merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    return HFRewardModel(model, tokenizer, device=device, **reward_kwargs)
