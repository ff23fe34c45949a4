"""Pure functions behind the evaluation metrics of Wang et al. (2026), section 5.

No model, tokenizer, network or file in sight: the ``evaluate`` modules in
``hf_stackshape/evaluation/metrics/`` and the ``stackshape evaluate`` command are thin adapters that
call these functions, so every number the package reports is computed in exactly one place.

* :func:`diversity` - ``prod_{n=2..4} (1 - rep_n)``, by default exactly as the paper's authors compute it
  (``definition="paper"``: ``rep_n = 1 - unique n-grams / (total n-grams + 1)`` on NLTK word tokens of the
  response cut at the next ``"\n\nHuman:"`` turn); ``definition="ours"`` keeps our earlier variant.
* :func:`summarize` - mean, spread and the seeded 95% bootstrap confidence interval over prompts.
* :func:`mean_pool`, :func:`cosine_similarity` - coherence as the cosine similarity of prompt and
  response sentence embeddings.
* :func:`win_tie_summary` - the judge win-tie rate ``(wins + ties) / total`` with its interval.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import torch

from .stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci

__all__ = [
    "whitespace_tokens",
    "word_tokens",
    "cut_at_next_turn",
    "ngram_repetition",
    "repetitions",
    "diversity",
    "diversity_batch",
    "summarize",
    "mean_pool",
    "cosine_similarity",
    "win_tie_summary",
    "check_diversity_definition",
    "DIVERSITY_ORDERS",
    "DIVERSITY_DEFINITIONS",
    "NEXT_TURN_MARKERS",
]

#: The n-gram orders of the paper's diversity measure.
DIVERSITY_ORDERS = (2, 3, 4)
#: ``"paper"``: the authors' metrics script (the default); ``"ours"``: whitespace words, ``unique / total``.
DIVERSITY_DEFINITIONS = ("paper", "ours")
#: Where the authors' metrics script cuts a response: the model starting the user's next turn (HH-RLHF format).
NEXT_TURN_MARKERS = ("###Human:", "\n\nHuman:")


def check_diversity_definition(definition: str) -> str:
    """``definition`` if it is one of :data:`DIVERSITY_DEFINITIONS`, else a ``ValueError`` naming the choices."""
    if definition not in DIVERSITY_DEFINITIONS:
        raise ValueError(
            f"Unknown diversity definition {definition!r}; use 'paper' (the authors' metrics script) or 'ours'."
        )
    return definition


def whitespace_tokens(text: str) -> List[str]:
    """The tokenisation of ``definition="ours"``: ``str.split()`` (runs of whitespace), case kept."""
    return text.split()


def word_tokens(text: str) -> List[str]:
    """The tokenisation of ``definition="paper"``: NLTK's ``word_tokenize(text, preserve_line=True)``.

    That is the call of the authors' metrics script: the Penn Treebank rules (punctuation split off,
    ``"don't" -> ["do", "n't"]``, quotes rewritten as ``` `` ``` / ``''``) on the whole text, without sentence
    splitting, so it needs none of NLTK's downloadable data (no ``punkt``) and runs offline.
    """
    from ..utils._extras import needs

    tokenize = needs("nltk.tokenize", "The paper's diversity (NLTK tokens; or pass definition='ours')")
    return tokenize.word_tokenize(text, preserve_line=True)


def cut_at_next_turn(text: str, markers: Sequence[str] = NEXT_TURN_MARKERS) -> str:
    """``text`` up to the first of ``markers`` (each applied in turn), as the authors' metrics script does.

    A base model continuing an HH-RLHF dialogue often goes on to write the user's next turn; only the
    text before it is the response.
    """
    for marker in markers:
        text = text.split(marker)[0]
    return text


def ngram_repetition(tokens: Sequence[str], n: int, definition: str = "paper") -> float:
    """Repetition ``rep_n`` of the ``n``-grams of one token sequence.

    * ``definition="paper"`` (the authors' script): ``rep_n = 1 - unique / (total + 1)``. The ``+ 1`` makes
      even a text without any repeat score ``rep_n > 0``, and a sequence shorter than ``n`` (no n-gram)
      scores ``rep_n = 1``: its factor ``1 - rep_n`` in :func:`diversity` is 0.
    * ``definition="ours"``: ``rep_n = 1 - unique / total``, and ``0`` for a sequence shorter than ``n``
      (nothing repeated, factor 1).
    """
    check_diversity_definition(definition)
    if n < 1:
        raise ValueError(f"The n-gram order must be >= 1, got n={n}.")
    total = max(len(tokens) - n + 1, 0)
    unique = len({tuple(tokens[i : i + n]) for i in range(total)})
    if definition == "paper":
        return 1.0 - unique / (total + 1)
    return 1.0 - unique / total if total else 0.0


def repetitions(
    text: str, orders: Iterable[int] = DIVERSITY_ORDERS, definition: str = "paper"
) -> Dict[int, float]:
    """``{n: rep_n}`` of one response under ``definition`` (see :func:`diversity`)."""
    if check_diversity_definition(definition) == "paper":
        tokens = word_tokens(cut_at_next_turn(text))
    else:
        tokens = whitespace_tokens(text)
    return {n: ngram_repetition(tokens, n, definition) for n in orders}


def diversity(text: str, orders: Iterable[int] = DIVERSITY_ORDERS, definition: str = "paper") -> float:
    """Diversity of one response: ``prod_{n in orders} (1 - rep_n)`` (Wang et al. 2026; ARGS, Khanov et al. 2024).

    Args:
        text (`str`): the response (without the prompt).
        orders (`Iterable[int]`, *optional*, defaults to `(2, 3, 4)`): the n-gram orders.
        definition (`str`, *optional*, defaults to `"paper"`):
            ``"paper"``: the authors' metrics script, so numbers compare with the paper's tables. The
            response is cut at the next turn (:func:`cut_at_next_turn`), tokenised with NLTK
            (:func:`word_tokens`), and ``rep_n = 1 - unique / (total + 1)``; a response shorter than ``n``
            words gets the factor 0 for that order, so the empty response scores 0, and even a text without
            repeats scores below 1 (``"a b c d e"``: ``(4/5)(3/4)(2/3) = 0.4``).
            ``"ours"``: whitespace words, no cut, ``rep_n = 1 - unique / total``, a factor 1 for responses
            shorter than ``n`` (the empty response scores 1), a text without repeats scores exactly 1.

    Examples:

    ```python
    >>> round(diversity("a b a b a b"), 4)  # (1 - 4/6) * (1 - 3/5) * (1 - 2/4) = 1/15
    0.0667
    >>> round(diversity("a b a b a b", definition="ours"), 4)  # (2/5) * (2/4) * (2/3)
    0.1333
    ```
    """
    value = 1.0
    for rep in repetitions(text, orders, definition).values():
        value *= 1.0 - rep
    return value


def diversity_batch(
    texts: Sequence[str], orders: Iterable[int] = DIVERSITY_ORDERS, definition: str = "paper"
) -> List[float]:
    """:func:`diversity` of each text."""
    orders = tuple(orders)
    return [diversity(t, orders, definition) for t in texts]


def summarize(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Dict[str, float]:
    """Mean, sample standard deviation, count and the bootstrap confidence interval of per-sample values.

    Args:
        values: one number per prompt.
        confidence (`float`, *optional*, defaults to 0.95): coverage of the interval.
        seed (`int`, *optional*, defaults to 0): seed of the resampling (same seed, same interval).
        n_resamples (`int`, *optional*, defaults to 2000): bootstrap resamples.

    Returns:
        ``{"mean", "std", "count", "ci_low", "ci_high"}``: the interval is the percentile bootstrap over
        prompts of :func:`hf_stackshape.evaluation.stats.bootstrap_ci`; with no value everything but
        ``count`` is ``nan``, with one value the interval is that value.
    """
    n = len(values)
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "count": 0, "ci_low": nan, "ci_high": nan}
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    std = float(t.std(unbiased=True)) if n > 1 else 0.0
    mean = float(t.mean())
    if torch.isnan(t).any():  # a broken score must show, not vanish from the interval
        ci = {"ci_low": float("nan"), "ci_high": float("nan")}
    else:
        ci = bootstrap_ci(t.tolist(), n_resamples=n_resamples, confidence=confidence, seed=seed)
    return {"mean": mean, "std": std, "count": n, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}


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


def win_tie_summary(
    winners: Sequence[Optional[str]], confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> Dict[str, object]:
    """Win-tie rate of the candidate (side ``"a"``) against the baseline (side ``"b"``).

    Args:
        winners: one entry per comparison: ``"a"`` (candidate wins), ``"b"`` (baseline wins), ``"tie"``,
            or ``None`` for a comparison that failed (no answer from the judge). Failed comparisons are
            counted apart and excluded from ``total``; they are never silently scored as ties.
        confidence (`float`, *optional*, defaults to 0.95), seed (`int`, *optional*, defaults to 0): the
            bootstrap interval of the win-tie rate over the counted comparisons.

    Returns:
        ``{"win_tie": (wins + ties) / total, "win_tie_ci_low", "win_tie_ci_high", "win_rate", "tie_rate",
        "loss_rate", "wins", "ties", "losses", "total", "failed", "failed_indices"}`` (rates are ``nan`` when
        ``total == 0``).
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
    # The win-tie rate is the mean of a 0/1 outcome per comparison: its interval is that mean's bootstrap.
    outcomes = [0.0 if w == "b" else 1.0 for w in winners if w is not None]
    ci = summarize(outcomes, confidence=confidence, seed=seed)
    return {
        "win_tie": rate(wins + ties),
        "win_tie_ci_low": ci["ci_low"],
        "win_tie_ci_high": ci["ci_high"],
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
