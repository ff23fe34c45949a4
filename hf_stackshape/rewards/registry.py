"""Rewards by name: :func:`load_reward` turns a short spec (a built-in name, ``module:function``, a reward model
path or Hub id) into a :class:`~hf_stackshape.rewards.RewardFunction`, so configs and the command line can name
one. The built-in names are the table of :mod:`.table` (:data:`REWARD_SPECS`), whose entries are imported on
first use."""

from __future__ import annotations

from .adapters import HFRewardModel, RewardFunction, as_reward_function
from .table import REWARD_SPECS, builtin_entry, not_found_error

__all__ = ["load_reward", "REWARD_SPECS", "not_found_error"]


def load_reward(spec, trust_remote_code: bool = False, **kwargs) -> RewardFunction:
    """A reward from a short spec, so configs and the command line can name one.

    Args:
        spec (`str` or reward):
            ``"demo"`` (the bundled demo reward model), ``"vader"`` (VADER sentiment of the response) or
            ``"length"`` (word count) (:data:`REWARD_SPECS`); ``"package.module:function"`` for a Python
            callable ``fn(prompt, response)`` or ``fn(response)``; otherwise a local folder / Hub id of a
            sequence-classification reward model (:meth:`HFRewardModel.from_pretrained`, which receives
            ``kwargs``, as ``"demo"`` does). A non-string (a :class:`RewardFunction`, a callable, a
            ``(model, tokenizer)`` pair) goes through :func:`as_reward_function`.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            A ``module:function`` spec imports and runs that module's code, so, like transformers' remote
            code, it needs this explicit opt-in (CLI: ``--trust_remote_code``): a spec read from a config
            file someone else wrote must not run code unnoticed.

    Examples:

    ```python
    >>> from hf_stackshape.rewards import load_reward
    >>> load_reward("length")(["Hi"], ["one two three"]).tolist()
    [3.0]
    >>> load_reward("builtins:len", trust_remote_code=True)(["Hi"], ["abcd"]).tolist()
    [4.0]

    ```
    """
    if not isinstance(spec, str):
        return as_reward_function(spec)
    name = spec.strip()
    if not name:
        raise ValueError(
            f"Reward spec must be one of {sorted(REWARD_SPECS)}, 'module:function' or a reward model path / Hub id, "
            f"got {spec!r}."
        )
    entry = builtin_entry(name)
    if entry is not None and not entry.model:
        return entry.load()
    head = name.split(":", 1)[0]
    if ":" in name and len(head) > 1 and "/" not in head and "\\" not in head and not head.startswith("."):
        if not trust_remote_code:
            raise ValueError(
                f"The reward spec {name!r} imports the Python module {head!r} and runs its code. If you trust it, "
                "pass trust_remote_code=True (command line: --trust_remote_code), as for transformers' remote code."
            )
        import importlib

        module_name, attr = name.split(":", 1)
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"Cannot import the reward {name!r} ({err}); use 'package.module:function'.") from None
        return as_reward_function(fn)
    return HFRewardModel.from_pretrained(name, **kwargs)
