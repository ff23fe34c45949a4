"""Renamed settings: one name per knob, the old name kept as a deprecated alias that warns (``FutureWarning``).

Two forms, one rule (the old name warns and means the new one; giving both is an error naming them):

* :func:`renamed_kwargs`, a decorator for a function or constructor: ``@renamed_kwargs(n="num_samples")``;
* :func:`deprecated_field` + :func:`resolve_renamed_fields` for a dataclass whose fields are command-line
  options (``HfArgumentParser``): the class lists its renames in ``RENAMED_FIELDS = {"old": "new"}``, the old
  field stays (``--use_chat_template`` keeps working) and ``__post_init__`` moves its value to the new one.
  :func:`renamed_fields` gives a dataclass's renames, which the CLI uses to map old flags and config keys
  before parsing.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, Dict, Mapping

__all__ = [
    "deprecation_message",
    "warn_renamed",
    "renamed_kwargs",
    "move_renamed",
    "deprecated_field",
    "renamed_fields",
    "resolve_renamed_fields",
]

def deprecation_message(old: str, new: str, where: str = "") -> str:
    place = f" of {where}" if where else ""
    return f"`{old}`{place} is deprecated and will be removed in a future version; use `{new}` (same meaning)."


def warn_renamed(old: str, new: str, where: str = "", stacklevel: int = 3) -> None:
    """Warn (``FutureWarning``) that ``old`` was renamed ``new``."""
    warnings.warn(deprecation_message(old, new, where), FutureWarning, stacklevel=stacklevel)


def _both_given(old: str, new: str, where: str = "") -> ValueError:
    place = f" ({where})" if where else ""
    return ValueError(f"Both `{new}` and its deprecated alias `{old}` given{place}; pass only `{new}`.")


def move_renamed(kwargs: Dict[str, Any], renames: Mapping[str, str], where: str = "", stacklevel: int = 4) -> Dict[str, Any]:
    """Move each deprecated key of ``kwargs`` (in place) to its new name, warning; both given is an error."""
    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise _both_given(old, new, where)
            warn_renamed(old, new, where, stacklevel=stacklevel)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def renamed_kwargs(**renames: str) -> Callable:
    """Decorator: accept each old keyword ``old=...`` of ``renames`` (``old="new"``) as ``new``, with a
    ``FutureWarning``; passing both is a ``ValueError``.

    Examples:

    ```python
    >>> import warnings
    >>> @renamed_kwargs(n="num_samples")
    ... def draw(num_samples=8):
    ...     return num_samples
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     draw(n=3), caught[0].category.__name__
    (3, 'FutureWarning')
    ```
    """

    def decorate(func: Callable) -> Callable:
        where = func.__qualname__.replace(".__init__", "")

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            move_renamed(kwargs, renames, where)
            return func(*args, **kwargs)

        wrapper.__renamed_kwargs__ = dict(renames)
        return wrapper

    return decorate


def deprecated_field(new: str, help: str = "") -> Any:
    """A dataclass field kept under an old name (default ``None`` = not given) that means field ``new`` (list the
    pair in the class's ``RENAMED_FIELDS``)."""
    return dataclasses.field(default=None, metadata={"help": help or f"Deprecated alias of --{new}."})


def renamed_fields(*dataclass_types: type) -> Dict[str, str]:
    """``{old: new}``: the ``RENAMED_FIELDS`` of the dataclasses (and of their bases)."""
    out: Dict[str, str] = {}
    for dtype in dataclass_types:
        for klass in reversed(getattr(dtype, "__mro__", ())):
            out.update(vars(klass).get("RENAMED_FIELDS", {}))
    return out


def resolve_renamed_fields(obj: Any, stacklevel: int = 4) -> None:
    """In ``__post_init__``: move each deprecated field that was given (not ``None``) to its new field, with a
    ``FutureWarning``, and reset it to ``None``; both given (the new one not ``None``) is a ``ValueError``."""
    where = type(obj).__name__
    for old, new in renamed_fields(type(obj)).items():
        value = getattr(obj, old)
        if value is None:
            continue
        if getattr(obj, new) is not None:
            raise _both_given(old, new, where)
        warn_renamed(old, new, where, stacklevel=stacklevel)
        setattr(obj, new, value)
        setattr(obj, old, None)
