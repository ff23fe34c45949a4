"""Argument checks shared by the guidance processors (ARGS and CD take the same ``k`` and ``lambda``)."""

from __future__ import annotations

import math


def check_k_and_weight(k, weight) -> float:
    """Validate the candidate count ``k`` and the guidance weight ``lambda``; return ``lambda`` as a float."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive integer (number of candidates per step), got {k!r}.")
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"`weight` (lambda) must be a number >= 0, got {weight!r}.") from None
    if not (weight >= 0 and math.isfinite(weight)):
        raise ValueError(f"`weight` (lambda = 1/beta) must be a finite number >= 0, got {weight!r}; 0 disables guidance.")
    return weight
