"""The follower's best response on a finite set of samples (layer 1, pure tensor math).

On ``N`` samples from ``pi_ref`` the KL-regularised follower ``rho ∝ pi_ref exp(r / beta)`` puts probability
``softmax(r / beta)`` on each sample (soft best-of-N, Verdun et al., 2025), and the theorem of Wang et al.
(2026, arXiv 2602.02572) holds exactly on them with ``m*`` solved from the same samples. Used by
:class:`~hf_stackshape.bon.StackelbergBestOfN` and the utility metric (:mod:`hf_stackshape.evaluation.utility`).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .shaping import RewardTransform, ThresholdSafeguards, solve_threshold

__all__ = [
    "inverse_beta",
    "SELECTIONS",
    "BON_SAFEGUARDS",
    "follower_weights",
    "effective_sample_size",
    "sample_threshold",
    "shape_samples",
]

#: ``soft``: sample from ``softmax(shaped / beta)``; ``argmax``: the best shaped reward (classic best-of-N).
SELECTIONS = ("soft", "argmax")

#: Default safeguards: the offline CD script's bound clip ``B_eff = min(B, 2 * (max u - min u))`` without its
#: exponent cap, so that ``m*`` is solved with the very ``gamma = exp(B_eff / beta)`` of the selection that
#: follows (the theorem is then exact on the samples) while ``B_eff`` stays on the scale of the rewards.
BON_SAFEGUARDS = ThresholdSafeguards(bound_clip=2.0)


def inverse_beta(beta: float) -> float:
    """``1 / beta``; ``beta = inf`` (guidance weight 0) gives 0, i.e. the base policy (uniform selection)."""
    try:
        beta = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"`beta` must be a positive number (or math.inf for no guidance), got {beta!r}.") from None
    if not beta > 0 or math.isnan(beta):
        raise ValueError(f"`beta` must be > 0 (or math.inf for no guidance), got {beta!r}.")
    return 0.0 if math.isinf(beta) else 1.0 / beta


_inverse_beta = inverse_beta  # the old private name, kept


def follower_weights(shaped: torch.Tensor, beta: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The follower's best response on ``N`` base samples: ``rho_i ∝ exp(shaped_i / beta)``.

    The samples come from ``pi_ref``, so on them the KL-regularised policy ``rho ∝ pi_ref exp(r / beta)`` puts
    probability ``softmax(r / beta)`` on sample ``i`` (soft best-of-N, Verdun et al., 2025).

    Args:
        shaped (`torch.Tensor` of shape `(..., N)`): the (shaped) rewards of the samples.
        beta (`float`): KL strength, ``> 0``; ``math.inf`` gives uniform weights (the base policy).
        mask (`torch.BoolTensor` of shape `(..., N)`, *optional*): ``False`` marks padding (weight 0).

    Returns:
        `torch.Tensor` of shape `(..., N)`, float64: probabilities summing to 1 over the unmasked samples.

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape.core.follower import follower_weights
    >>> [round(w, 4) for w in follower_weights(torch.tensor([0.0, 1.0]), beta=1.0).tolist()]  # [1, e] / (1 + e)
    [0.2689, 0.7311]

    ```
    """
    inverse = inverse_beta(beta)
    logits = torch.as_tensor(shaped).double() * inverse
    if mask is not None:
        mask = torch.as_tensor(mask, device=logits.device).bool()
        if mask.shape != logits.shape:
            raise ValueError(f"`mask` has shape {tuple(mask.shape)} but `shaped` has {tuple(logits.shape)}.")
        if not mask.any(dim=-1).all():
            raise ValueError("Every prompt needs at least one unmasked sample; drop the rows without any.")
        logits = logits.masked_fill(~mask, -math.inf)
    return torch.softmax(logits, dim=-1)


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` over the last dimension (1 to N)."""
    w = torch.as_tensor(weights).double()
    return w.sum(dim=-1) ** 2 / (w**2).sum(dim=-1)


def sample_threshold(
    rewards: torch.Tensor,
    beta: float,
    bound: float,
    safeguards: Union[str, ThresholdSafeguards, None] = BON_SAFEGUARDS,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``m*(x)`` per prompt from its ``N`` sample rewards, float64 (:func:`~hf_stackshape.core.shaping.solve_threshold`
    with uniform weights; with ``beta = inf`` the follower ignores the reward and ``m*`` is the plain mean)."""
    u = torch.as_tensor(rewards).double()
    if inverse_beta(beta) == 0.0:
        keep = torch.ones_like(u, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        return (u * keep).sum(-1) / keep.sum(-1)
    return solve_threshold(u, beta, bound, mask=mask, safeguards=safeguards)


def shape_samples(
    rewards: torch.Tensor,
    transform: RewardTransform,
    threshold: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``transform(rewards)`` at the threshold ``m*``, float64, with samples tied with ``m*`` counted above it.

    A sample exactly at ``m*`` adds nothing to ``F(m*)``, so giving it the bound keeps the fixed point
    ``m* = E_rho[u]``; and when ``B / beta`` is large, ``m*`` is within a rounding error of ``max u`` and rounds to
    it, where a strict ``u > m*`` would leave no sample above the threshold (a uniform choice instead of the best).
    """
    below = torch.nextafter(torch.as_tensor(threshold).double(), torch.tensor(-math.inf, dtype=torch.float64))
    return transform(torch.as_tensor(rewards).double(), mask=mask, threshold=below).double()
