"""Checks shared by the guidance processors: ARGS and CD take the same ``k`` and ``lambda``, need a tokenizer
that matches the model they guide, and share one rule about ``generate``'s sampling temperature."""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["check_k_and_weight", "check_k_fits", "vocabulary_digest", "same_vocabulary", "check_temperature"]


def check_k_and_weight(k, weight) -> float:
    """Validate the candidate count ``k`` and the guidance weight ``lambda``; return ``lambda`` as a float."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive integer (number of candidates per step), got {k!r}.")
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"`weight` (lambda) must be a number >= 0, got {weight!r}.") from None
    if not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(
            f"`weight` (lambda = 1/beta) must be a finite number >= 0, got {weight!r}; 0 disables guidance."
        )
    return weight


def check_k_fits(k: int, vocab: Optional[int], what: str) -> None:
    """``ValueError`` when ``k`` candidates cannot be drawn from a vocabulary of ``vocab`` tokens."""
    if vocab is not None and k > int(vocab):
        raise ValueError(f"`k`={k} is larger than the vocabulary ({int(vocab)} {what}); use a smaller k.")


def check_temperature(temperature, name: str = "temperature") -> float:
    """A positive finite sampling temperature, as a float."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (temperature > 0 and math.isfinite(temperature))
    ):
        raise ValueError(f"`{name}` must be a positive finite number, got {temperature!r}.")
    return float(temperature)


def vocabulary_digest(tokenizer) -> str:
    """Digest of a tokenizer's token -> id mapping (``get_vocab()``, added tokens included): the ``vocab`` entry
    of :func:`hf_stackshape.utils.runs.tokenizer_fingerprint`.

    Two tokenizers with the same digest map every token string to the same id, which is what a model, a reward
    model or a Q-head trained on one needs from the other (the same size is not enough: two 32k vocabularies
    can number their tokens differently).
    """
    from .runs import tokenizer_fingerprint

    return tokenizer_fingerprint(tokenizer)["vocab"]


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers map every token to the same id (identity, else equal :func:`vocabulary_digest`)."""
    if a is b:
        return True
    try:
        return len(a) == len(b) and vocabulary_digest(a) == vocabulary_digest(b)
    except Exception:  # tokenizers without get_vocab: be safe
        return False
