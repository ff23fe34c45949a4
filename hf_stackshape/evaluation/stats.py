"""Uncertainty of reported numbers: seeded percentile bootstrap over prompts.

Every mean that `stackshape evaluate`, `sweep` and the demo report comes with a 95% confidence interval
from resampling prompts with replacement; a comparison of two methods on the same prompts (SRS vs vanilla)
uses the paired bootstrap of the per-prompt differences, which is much tighter than two separate
intervals when both methods vary with the prompt. Seeded, so a rerun prints the same intervals.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_ci", "DEFAULT_RESAMPLES", "DEFAULT_CONFIDENCE"]

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


def _values(values: Sequence[Optional[float]], what: str) -> np.ndarray:
    array = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {array.shape}.")
    return array


def _check(n_resamples: int, confidence: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"`n_resamples` must be >= 1, got {n_resamples!r}.")
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")


def _summary(array: np.ndarray, n_resamples: int, confidence: float, seed: int) -> Dict[str, float]:
    array = array[~np.isnan(array)]
    n = int(array.size)
    if n == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
    mean = float(array.mean())
    if n == 1:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_resamples), n))
    means = array[idx].mean(axis=1)
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": mean, "ci_low": float(low), "ci_high": float(high), "n": n}


def bootstrap_ci(
    values: Sequence[Optional[float]],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, float]:
    """Mean of ``values`` (one per prompt) with its percentile-bootstrap confidence interval.

    Args:
        values: one number per prompt; ``None`` / NaN entries are left out.
        n_resamples (`int`, defaults to 2000): bootstrap resamples.
        confidence (`float`, defaults to 0.95): coverage of the interval.
        seed (`int`, defaults to 0): seed of the resampling (same seed, same interval).

    Returns:
        ``{"mean", "ci_low", "ci_high", "n"}``; with one value the interval is that value, with none all NaN.

    Examples:

    ```python
    >>> from hf_stackshape.evaluation.stats import bootstrap_ci
    >>> out = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> out["mean"], out["ci_low"] <= 2.5 <= out["ci_high"]
    (2.5, True)
    ```
    """
    _check(n_resamples, confidence)
    return _summary(_values(values, "values"), n_resamples, confidence, seed)


def paired_bootstrap_ci(
    values_a: Sequence[Optional[float]],
    values_b: Sequence[Optional[float]],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, float]:
    """Mean of the per-prompt differences ``a - b`` with its paired-bootstrap confidence interval.

    ``values_a[i]`` and ``values_b[i]`` must belong to the same prompt; pairs with a missing side are left out.
    Returns ``{"mean", "ci_low", "ci_high", "n"}`` of the difference.
    """
    _check(n_resamples, confidence)
    a = _values(values_a, "values_a")
    b = _values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"Paired values need one pair per prompt: got {a.size} and {b.size} values.")
    return _summary(a - b, n_resamples, confidence, seed)
