"""The table of built-in reward names (``"demo"``, ``"vader"``, ``"length"``), with lazy entries.

A leaf module (standard library only): :meth:`~hf_stackshape.rewards.HFRewardModel.from_pretrained` and
:func:`~hf_stackshape.rewards.load_reward` both resolve the built-in names through it, so neither imports the
other's module to know them, and the portable ``custom_generate`` exports (:mod:`hf_stackshape.utils.portable`)
can carry it. Each entry names its loader by ``"package.module:attribute"`` path, imported on first use: the
demo reward model lives in :mod:`hf_stackshape.assets.demo`, a layer above the rewards.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Optional

__all__ = ["REWARD_SPECS", "REWARD_ENTRIES", "RewardEntry", "builtin_entry", "lazy_attr", "not_found_error"]


def lazy_attr(path: str):
    """``"package.module:name"``, imported now (the table's entries are imported on first use)."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"A lazy entry must read 'package.module:attribute', got {path!r}.")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class RewardEntry:
    """One built-in reward name.

    Attributes:
        description (`str`): what it scores, shown in error messages and ``--help`` texts.
        loader (`str`): ``"package.module:function"`` returning the reward, imported on first use.
        model (`bool`): whether it is a neural reward model, whose loader takes ``dtype``, ``device`` and the
            :class:`~hf_stackshape.rewards.HFRewardModel` keyword arguments; a callable reward's takes none.
    """

    description: str
    loader: str
    model: bool = False

    def load(self, **kwargs):
        """The reward; ``kwargs`` reach a model's loader only (a callable reward ignores them, as before)."""
        loader = lazy_attr(self.loader)
        return loader(**kwargs) if self.model else loader()


#: Built-in reward names, by lower-case name.
REWARD_ENTRIES = {
    "demo": RewardEntry(
        "the bundled demo reward model (SmolLM2-135M + LoRA, trained on VADER-labelled pairs; offline)",
        "hf_stackshape.assets.demo:load_demo_reward_model",
        model=True,
    ),
    "vader": RewardEntry(
        "VADER compound sentiment of the response, in [-1, 1] (no model, offline)",
        "hf_stackshape.rewards.builtin_rewards:vader_reward",
    ),
    "length": RewardEntry("number of whitespace words of the response", "hf_stackshape.rewards.builtin_rewards:length_reward"),
}

#: Built-in reward names accepted by :func:`~hf_stackshape.rewards.load_reward`,
#: :meth:`~hf_stackshape.rewards.HFRewardModel.from_pretrained` and the CLI, with what each scores.
REWARD_SPECS = {name: entry.description for name, entry in REWARD_ENTRIES.items()}


def builtin_entry(name) -> Optional[RewardEntry]:
    """The entry of a built-in reward name (any case, surrounding spaces ignored), else ``None``."""
    return REWARD_ENTRIES.get(str(name).strip().lower())


def not_found_error(what: str, name: str, err: BaseException, names: Optional[dict] = None) -> OSError:
    """The error for a ``from_pretrained`` name that is no local path and could not be loaded from the Hub.

    It says that the local path does not exist (with its absolute form, to catch typos), that the Hub
    lookup failed too (and that the Hub is offline when ``HF_HUB_OFFLINE`` is set), the Hub's own reason,
    and the valid built-in ``names``.
    """
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hub = "HF_HUB_OFFLINE is set, so it was not looked up on the Hub" if offline else f"not found on the Hub as a repo id ({reason})"
    message = f"No {what} {name!r}: no local file or folder {os.path.abspath(os.path.expanduser(name))} exists, and {hub}."
    if names:
        message += " Built-in names: " + "; ".join(f"{k!r} ({v})" for k, v in names.items()) + "."
    return OSError(message)
