"""Pure functions behind the evaluation metrics of Wang et al. (2026), section 5.

No model, tokenizer, network or file in sight: the ``evaluate`` modules in
``hf_stackshape/evaluation/metrics/`` and the ``stackshape evaluate`` command are thin adapters that
call these functions, so every number the package reports is computed in exactly one place.

* :func:`diversity` - ``prod_{n=2..4} (1 - rep_n)`` with ``rep_n = 1 - unique n-grams / total n-grams``
  (the diversity measure used by ARGS, Khanov et al. 2024, and by the SRS paper).
* :func:`mean_pool`, :func:`cosine_similarity` - coherence as the cosine similarity of prompt and
  response sentence embeddings.
* :func:`win_tie_summary` - the judge win-tie rate ``(wins + ties) / total``.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import torch

__all__ = [
    "whitespace_tokens",
    "ngram_repetition",
    "diversity",
    "diversity_batch",
    "summarize",
    "mean_pool",
    "cosine_similarity",
    "win_tie_summary",
    "DIVERSITY_ORDERS",
]

#: The n-gram orders of the paper's diversity measure.
DIVERSITY_ORDERS = (2, 3, 4)


def whitespace_tokens(text: str) -> List[str]:
    """The tokenisation of :func:`diversity`: ``str.split()`` (runs of whitespace), case kept.

    Whitespace words make the measure independent of any model's tokenizer, so numbers from different
    language models are comparable.
    """
    return text.split()


def ngram_repetition(tokens: Sequence[str], n: int) -> float:
    """``rep_n = 1 - unique n-grams / total n-grams`` of one token sequence.

    A sequence shorter than ``n`` has no n-gram and therefore nothing repeated: ``rep_n = 0`` (the
    factor ``1 - rep_n`` of :func:`diversity` is then 1, a neutral element of the product).
    """
    if n < 1:
        raise ValueError(f"The n-gram order must be >= 1, got n={n}.")
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    unique = len({tuple(tokens[i : i + n]) for i in range(total)})
    return 1.0 - unique / total


def diversity(text: str, orders: Iterable[int] = DIVERSITY_ORDERS) -> float:
    """Diversity of one response: ``prod_{n in orders} (1 - rep_n)`` over whitespace tokens.

    1 means no repeated n-gram, values near 0 mean a degenerate, looping text. Responses shorter than
    ``n`` words contribute a factor 1 for that order (see :func:`ngram_repetition`); the empty response
    therefore scores 1 - check response lengths alongside this metric.

    Examples:

    ```python
    >>> diversity("a b c d e")
    1.0
    >>> round(diversity("a b a b a b"), 4)  # (2/5) * (2/4) * (2/3): unique / total n-grams
    0.1333
    ```
    """
    tokens = whitespace_tokens(text)
    value = 1.0
    for n in orders:
        value *= 1.0 - ngram_repetition(tokens, n)
    return value


def diversity_batch(texts: Sequence[str], orders: Iterable[int] = DIVERSITY_ORDERS) -> List[float]:
    """:func:`diversity` of each text."""
    orders = tuple(orders)
    return [diversity(t, orders) for t in texts]


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """Mean, sample standard deviation and count of per-sample values (``nan`` mean when empty)."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    std = float(t.std(unbiased=True)) if n > 1 else 0.0
    return {"mean": float(t.mean()), "std": std, "count": n}


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states over the real (mask 1) tokens: ``[batch, seq, dim] -> [batch, dim]``.

    The pooling of sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)``.
    """
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    summed = (hidden_states * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise cosine similarity of two ``[batch, dim]`` tensors (float64 accumulate), in ``[-1, 1]``."""
    if a.shape != b.shape:
        raise ValueError(f"Embeddings must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    a = a.double()
    b = b.double()
    num = (a * b).sum(-1)
    den = a.norm(dim=-1).clamp(min=eps) * b.norm(dim=-1).clamp(min=eps)
    return (num / den).clamp(-1.0, 1.0)


def win_tie_summary(winners: Sequence[Optional[str]]) -> Dict[str, object]:
    """Win-tie rate of the candidate (side ``"a"``) against the baseline (side ``"b"``).

    Args:
        winners: one entry per comparison: ``"a"`` (candidate wins), ``"b"`` (baseline wins), ``"tie"``,
            or ``None`` for a comparison that failed (no answer from the judge). Failed comparisons are
            counted apart and excluded from ``total``; they are never silently scored as ties.

    Returns:
        ``{"win_tie": (wins + ties) / total, "win_rate", "tie_rate", "loss_rate", "wins", "ties",
        "losses", "total", "failed", "failed_indices"}`` (rates are ``nan`` when ``total == 0``).
    """
    wins = ties = losses = 0
    failed: List[int] = []
    for i, w in enumerate(winners):
        if w == "a":
            wins += 1
        elif w == "b":
            losses += 1
        elif w == "tie":
            ties += 1
        elif w is None:
            failed.append(i)
        else:
            raise ValueError(f"A winner must be 'a', 'b', 'tie' or None (failed), got {w!r} at index {i}.")
    total = wins + ties + losses
    rate = (lambda k: k / total) if total else (lambda k: float("nan"))
    return {
        "win_tie": rate(wins + ties),
        "win_rate": rate(wins),
        "tie_rate": rate(ties),
        "loss_rate": rate(losses),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "total": total,
        "failed": len(failed),
        "failed_indices": failed,
    }
