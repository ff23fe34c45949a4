"""Pure tensor math of Stackelberg reward shaping (Wang et al., 2026, arXiv 2602.02572).

Nothing in this module touches a model, a tokenizer or a file: every function takes reward tensors
and returns tensors, so ARGS, CD, the calibrator and the Q-head trainer all share one implementation.

Notation (see the paper, section 3):

* ``u``: utilities ``r_U(x, y_i)`` of ``N`` samples of one prompt, shape ``(..., N)``;
* ``p``: optional weights of the samples (e.g. base probabilities of the top-k next tokens);
* ``gamma = exp(B / beta)``;
* ``F(m) = sum_i p_i w_i (u_i - m)`` with ``w_i = gamma`` if ``u_i > m`` else ``1``.

``F`` is continuous, strictly decreasing and piecewise linear in ``m``: its unique root ``m*`` is the
optimal threshold, and ``m* = sum p_i w_i u_i / sum p_i w_i`` (the fixed point ``m* = E_rho[u]``).
:func:`solve_threshold` finds that root exactly from the sorted rewards, for a whole batch of
prompts at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Type, Union

import torch

__all__ = [
    "check_positive",
    "ThresholdSafeguards",
    "NO_SAFEGUARDS",
    "ARGS_SAFEGUARDS",
    "CD_SAFEGUARDS",
    "get_safeguards",
    "effective_bound",
    "shaping_gamma",
    "threshold_objective",
    "solve_threshold",
    "bisect_threshold",
    "RewardTransform",
    "RawTransform",
    "MinMaxTransform",
    "MeanStdTransform",
    "MeanSoftTransform",
    "CapTransform",
    "HardThresholdTransform",
    "SoftThresholdTransform",
    "TRANSFORMS",
    "get_transform",
]


# --------------------------------------------------------------------------------------------------
# Safeguards
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdSafeguards:
    """Numerical safeguards the paper's authors apply before solving for the threshold.

    Args:
        bound_clip (`float`, *optional*):
            When set, the reward bound is clipped to ``B_eff = min(B, bound_clip * (max u - min u))``,
            so the shaped reward never spans more than a multiple of the rewards' own range. ARGS
            uses ``1.01``, CD uses ``2.0``.
        exponent_cap (`float`, *optional*):
            When set, ``gamma = exp(min(B_eff / beta, exponent_cap))`` (CD uses ``2.0``).
        gamma_cap (`float`, *optional*):
            When set, ``gamma = min(exp(B_eff / beta), gamma_cap)`` (ARGS uses ``2.0``).
    """

    bound_clip: Optional[float] = None
    exponent_cap: Optional[float] = None
    gamma_cap: Optional[float] = None

    def __post_init__(self):
        for name in ("bound_clip", "exponent_cap", "gamma_cap"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a positive finite number or None, got {value!r}.")
        if self.gamma_cap is not None and self.gamma_cap < 1:
            raise ValueError(f"`gamma_cap` must be >= 1 (gamma = exp(B/beta) >= 1), got {self.gamma_cap!r}.")


NO_SAFEGUARDS = ThresholdSafeguards()
#: The ARGS script of the paper: ``B_eff = min(B, 1.01 * range)``, ``gamma = min(exp(B_eff/beta), 2)``.
ARGS_SAFEGUARDS = ThresholdSafeguards(bound_clip=1.01, gamma_cap=2.0)
#: The offline CD script of the paper: ``B_eff = min(B, 2 * range)``, ``gamma = exp(min(B_eff/beta, 2))``.
CD_SAFEGUARDS = ThresholdSafeguards(bound_clip=2.0, exponent_cap=2.0)

_SAFEGUARD_PRESETS = {"none": NO_SAFEGUARDS, "args": ARGS_SAFEGUARDS, "cd": CD_SAFEGUARDS}


def get_safeguards(value: Union[str, ThresholdSafeguards, None]) -> ThresholdSafeguards:
    """Resolve ``"none"``, ``"args"``, ``"cd"`` or a :class:`ThresholdSafeguards` instance."""
    if value is None:
        return NO_SAFEGUARDS
    if isinstance(value, ThresholdSafeguards):
        return value
    if isinstance(value, str) and value.lower() in _SAFEGUARD_PRESETS:
        return _SAFEGUARD_PRESETS[value.lower()]
    raise ValueError(
        f"Unknown safeguards {value!r}: use one of {sorted(_SAFEGUARD_PRESETS)} or a ThresholdSafeguards(...)."
    )


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def check_positive(name: str, value: float) -> float:
    """``value`` as a float; raises a ValueError naming ``name`` unless it is a positive finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a positive number, got {value!r}.") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
    return value


_check_positive = check_positive  # the old private name, kept for code that imported it


def _prepare(
    rewards: torch.Tensor,
    weights: Optional[torch.Tensor],
    mask: Optional[torch.Tensor],
    what: str = "rewards",
):
    """Validate ``rewards`` (..., N) and return (rewards as float64, normalised weights, bool mask)."""
    rewards = torch.as_tensor(rewards)
    if rewards.ndim == 0:
        raise ValueError(f"`{what}` must have at least one dimension (..., N), got a scalar.")
    if rewards.shape[-1] < 1:
        raise ValueError(f"`{what}` needs N >= 1 samples per prompt, got shape {tuple(rewards.shape)}.")
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    if mask is None:
        mask = torch.ones(rewards.shape, dtype=torch.bool, device=rewards.device)
    else:
        mask = torch.as_tensor(mask, device=rewards.device)
        if mask.shape != rewards.shape:
            raise ValueError(f"`mask` has shape {tuple(mask.shape)} but `{what}` has {tuple(rewards.shape)}.")
        mask = mask.bool()
    empty = ~mask.any(dim=-1)
    if empty.any():
        rows = torch.nonzero(empty).flatten().tolist()[:5]
        raise ValueError(f"Every prompt needs N >= 1 unmasked sample; rows {rows} have none. Drop those rows.")
    valid = rewards[mask]
    if torch.isnan(valid).any():
        raise ValueError(
            f"`{what}` contain NaN at {int(torch.isnan(valid).sum())} unmasked positions; fix the reward model "
            "or exclude them with `mask=`."
        )
    if torch.isinf(valid).any():
        bad = valid[torch.isinf(valid)][0].item()
        raise ValueError(
            f"`{what}` contain an infinite value ({bad}); rewards must be finite. Exclude it with `mask=`."
        )
    work = torch.where(mask, rewards, torch.zeros_like(rewards)).double()
    if weights is None:
        p = mask.double()
    else:
        p = torch.as_tensor(weights, device=rewards.device).double()
        if p.shape != rewards.shape:
            raise ValueError(f"`weights` has shape {tuple(p.shape)} but `{what}` has {tuple(rewards.shape)}.")
        if not torch.isfinite(p[mask]).all() or (p[mask] < 0).any():
            raise ValueError("`weights` must be finite and non-negative on unmasked samples.")
        p = torch.where(mask, p, torch.zeros_like(p))
    total = p.sum(dim=-1, keepdim=True)
    if (total <= 0).any():
        raise ValueError("`weights` sum to zero over the unmasked samples of some prompt; give positive weights.")
    return work, p / total, mask


def _masked_min_max(u: torch.Tensor, mask: torch.Tensor):
    big = torch.finfo(u.dtype).max
    lo = torch.where(mask, u, torch.full_like(u, big)).amin(dim=-1)
    hi = torch.where(mask, u, torch.full_like(u, -big)).amax(dim=-1)
    return lo, hi


def effective_bound(
    rewards: torch.Tensor,
    bound: float,
    safeguards: Union[str, ThresholdSafeguards, None] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The reward bound actually used per prompt, ``B_eff`` (``B`` unless ``bound_clip`` is set)."""
    bound = check_positive("B", bound)
    guards = get_safeguards(safeguards)
    u, _, mask = _prepare(rewards, None, mask)
    lo, hi = _masked_min_max(u, mask)
    return _clipped_bound(lo, hi, bound, guards).to(_out_dtype(rewards))


def shaping_gamma(
    b_eff: torch.Tensor, beta: float, safeguards: Union[str, ThresholdSafeguards, None] = None
) -> torch.Tensor:
    """``gamma = exp(B_eff / beta)`` with the optional exponent and gamma caps."""
    beta = check_positive("beta", beta)
    guards = get_safeguards(safeguards)
    exponent = torch.as_tensor(b_eff).double() / beta
    if guards.exponent_cap is not None:
        exponent = exponent.clamp(max=guards.exponent_cap)
    gamma = torch.exp(exponent.clamp(max=700.0))  # exp(709) overflows float64
    if guards.gamma_cap is not None:
        gamma = gamma.clamp(max=guards.gamma_cap)
    return gamma


def _out_dtype(rewards) -> torch.dtype:
    rewards = torch.as_tensor(rewards)
    return rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()


# --------------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------------


def _clipped_bound(lo: torch.Tensor, hi: torch.Tensor, bound: float, guards: ThresholdSafeguards) -> torch.Tensor:
    """``B_eff = min(B, bound_clip * (max u - min u))`` per prompt (``B`` without a clip)."""
    b_eff = torch.full_like(lo, bound)
    if guards.bound_clip is not None:
        b_eff = torch.minimum(b_eff, guards.bound_clip * (hi - lo))
    return b_eff


def _threshold_problem(rewards, beta, bound, weights, mask, safeguards):
    """Validated inputs of the threshold equation: ``(u, p, mask, min u, max u, gamma[..., 1])``."""
    beta = check_positive("beta", beta)
    bound = check_positive("B", bound)
    guards = get_safeguards(safeguards)
    u, p, mask = _prepare(rewards, weights, mask)
    lo, hi = _masked_min_max(u, mask)
    gamma = shaping_gamma(_clipped_bound(lo, hi, bound, guards), beta, guards).unsqueeze(-1)
    return u, p, mask, lo, hi, gamma


def threshold_objective(
    m: torch.Tensor,
    rewards: torch.Tensor,
    gamma: torch.Tensor,
    weights: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The empirical ``F(m) = sum_i p_i w_i (u_i - m)`` (weights normalised), per prompt.

    ``m`` and ``gamma`` have the batch shape ``rewards.shape[:-1]`` (or broadcast to it).
    """
    u, p, mask = _prepare(rewards, weights, mask)
    m = torch.as_tensor(m, dtype=torch.float64, device=u.device).unsqueeze(-1)
    g = torch.as_tensor(gamma, dtype=torch.float64, device=u.device).unsqueeze(-1)
    w = torch.where(u > m, g, torch.ones_like(u))
    return (p * w * (u - m)).sum(dim=-1)


def solve_threshold(
    rewards: torch.Tensor,
    beta: float,
    bound: float,
    weights: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    safeguards: Union[str, ThresholdSafeguards, None] = None,
) -> torch.Tensor:
    """Optimal Stackelberg threshold ``m*(x)`` for a batch of prompts (Wang et al., 2026, Thm. 3.x).

    Solves ``F(m) = sum_i p_i w_i(m) (u_i - m) = 0`` with ``w_i = gamma`` if ``u_i > m`` else ``1`` and
    ``gamma = exp(B_eff / beta)``, **exactly**: ``F`` is linear between consecutive sorted rewards, so
    after one sort the segment holding the root is found from cumulative sums and the root is the
    self-normalised estimate ``sum p w u / sum p w`` on it. Cost ``O(N log N)`` per prompt, vectorised
    over the batch; no iteration, no tolerance.

    Args:
        rewards (`torch.Tensor` of shape `(..., N)`):
            Utilities ``r_U(x, y_i)`` of ``N`` samples for each prompt of the batch.
        beta (`float`):
            KL strength of the follower (``lambda = 1 / beta`` is the guidance weight). Must be > 0.
        bound (`float`):
            Upper bound ``B`` of the shaped reward. Must be > 0.
        weights (`torch.Tensor` of shape `(..., N)`, *optional*):
            Non-negative sample weights ``p_i`` (e.g. softmax of the top-k logits); uniform if omitted.
        mask (`torch.BoolTensor` of shape `(..., N)`, *optional*):
            ``False`` marks padding in ragged batches; masked samples are ignored.
        safeguards (`str` or [`ThresholdSafeguards`], *optional*, defaults to `"none"`):
            ``"args"`` or ``"cd"`` reproduce the numerical safeguards of the paper's ARGS and CD scripts.

    Returns:
        `torch.Tensor` of shape `rewards.shape[:-1]`: the threshold per prompt, in the dtype of
        ``rewards``. It lies in ``[mean_p u, max u]`` and equals the common value when all rewards tie.

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape import solve_threshold
    >>> u = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    >>> m = solve_threshold(u, beta=1.0, bound=1.0)
    >>> bool(u.mean() <= m <= u.max())
    True
    ```
    """
    out_dtype = _out_dtype(rewards)
    u, p, mask, lo, hi, gamma = _threshold_problem(rewards, beta, bound, weights, mask, safeguards)

    # The root is shift-equivariant (m*(u + c) = m*(u) + c): work with u - max u <= 0, so the cumulative
    # sums below stay on the scale of the rewards' range, not of their magnitude.
    shifted = u - hi.unsqueeze(-1)
    # Sort descending; masked samples (p = 0) go last and never count as "above".
    key = torch.where(mask, shifted, torch.full_like(u, -math.inf))
    s, order = torch.sort(key, dim=-1, descending=True)
    ps = torch.gather(p, -1, order)
    valid = torch.gather(mask, -1, order)
    s = torch.where(valid, s, torch.zeros_like(s))

    # With the top j samples above m: F_j(m) = A_j - m C_j, where
    # C_j = 1 + (gamma - 1) * sum_{i<j} p_i and A_j = E_p[u] + (gamma - 1) * sum_{i<j} p_i s_i.
    # Both are divided by gamma (same roots, same signs) so that a huge gamma = exp(B / beta) cannot
    # overflow: c_j = 1/gamma + (1 - 1/gamma) * sum_{i<j} p_i, likewise a_j.
    zero = torch.zeros_like(s[..., :1])
    cp = torch.cat([zero, torch.cumsum(ps, dim=-1)], dim=-1)  # (..., N + 1)
    cq = torch.cat([zero, torch.cumsum(ps * s, dim=-1)], dim=-1)
    mean = cq[..., -1:]
    inv = 1.0 / gamma
    c = inv + (1.0 - inv) * cp
    a = inv * mean + (1.0 - inv) * cq
    # F at each sorted reward s_j (continuity makes ties harmless): F(s_j) = A_j - s_j C_j.
    f_at = a[..., :-1] - s * c[..., :-1]
    # The root is above exactly the samples with F(s_j) < 0 (F decreasing): that count picks the segment.
    j_star = ((f_at < 0) & valid).sum(dim=-1, keepdim=True)
    m = (torch.gather(a, -1, j_star) / torch.gather(c, -1, j_star)).squeeze(-1) + hi
    # Rounding can push m a hair outside its segment; the true root always lies in [min u, max u].
    m = torch.minimum(torch.maximum(m, lo), hi)
    return m.to(out_dtype)


def bisect_threshold(
    rewards: torch.Tensor,
    beta: float,
    bound: float,
    weights: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    safeguards: Union[str, ThresholdSafeguards, None] = None,
    steps: int = 60,
) -> torch.Tensor:
    """Vectorised bisection on ``[min u, max u]`` for the same root as :func:`solve_threshold`.

    Provided as an independent reference (tests, benchmarks) and to mirror the paper's scripts, which
    run 30 bisection steps. Prefer :func:`solve_threshold`: it is exact and faster.
    """
    if int(steps) < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps!r}.")
    out_dtype = _out_dtype(rewards)
    u, p, mask, lo, hi, gamma = _threshold_problem(rewards, beta, bound, weights, mask, safeguards)
    a, b = lo.clone(), hi.clone()
    for _ in range(int(steps)):
        mid = 0.5 * (a + b)
        w = torch.where(u > mid.unsqueeze(-1), gamma, torch.ones_like(u))
        f = (p * w * (u - mid.unsqueeze(-1))).sum(dim=-1)
        a = torch.where(f > 0, mid, a)
        b = torch.where(f > 0, b, mid)
    return (0.5 * (a + b)).to(out_dtype)


# --------------------------------------------------------------------------------------------------
# Reward transforms
# --------------------------------------------------------------------------------------------------


class RewardTransform:
    """Base class of the reward transforms fed to ARGS and CD (the paper's SRS and its baselines).

    A transform maps the rewards of ``N`` candidates per prompt, shape ``(..., N)``, to shaped rewards of
    the same shape. Subclasses implement :meth:`transform`; :meth:`__call__` validates the input and
    keeps masked positions at ``0``.

    Every transform accepts (and may ignore) ``weights`` (candidate probabilities), ``mask`` and
    ``threshold`` (a precomputed ``m*(x)`` per prompt, shape ``rewards.shape[:-1]``).
    """

    name: str = "base"
    #: Whether the transform uses the Stackelberg threshold (and thus `beta`).
    uses_threshold: bool = False

    def __call__(
        self,
        rewards: torch.Tensor,
        weights: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        threshold: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        out_dtype = _out_dtype(rewards)
        u, p, mask = _prepare(rewards, weights, mask)
        if threshold is not None:
            threshold = torch.as_tensor(threshold, device=u.device).double()
            if threshold.shape != u.shape[:-1]:
                raise ValueError(
                    f"`threshold` must have the batch shape {tuple(u.shape[:-1])}, got {tuple(threshold.shape)}."
                )
            if not torch.isfinite(threshold).all():
                raise ValueError("`threshold` must be finite; recompute m*(x) with the ThresholdCalibrator.")
        out = self.transform(u, p, mask, threshold)
        out = torch.where(mask, out, torch.zeros_like(out))
        return out.to(out_dtype)

    def transform(self, u, p, mask, threshold):  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Settings that identify this transform (saved with Q-heads and in result tables)."""
        out = {"name": self.name}
        out.update({k: v for k, v in vars(self).items() if not k.startswith("_")})
        if isinstance(out.get("safeguards"), ThresholdSafeguards):
            out["safeguards"] = vars(out["safeguards"]).copy()
        return out

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({settings})"


def _masked_mean_std(u, mask):
    n = mask.sum(dim=-1, keepdim=True).double()
    mean = (u * mask).sum(dim=-1, keepdim=True) / n
    var = (((u - mean) ** 2) * mask).sum(dim=-1, keepdim=True) / n
    return mean, var.sqrt()


class RawTransform(RewardTransform):
    """The reward itself, ``r_U`` (vanilla ARGS / CD)."""

    name = "raw"

    def transform(self, u, p, mask, threshold):
        return u


class MinMaxTransform(RewardTransform):
    """``B_eff * (r - min r) / (max r - min r)`` over the candidates; ``0`` when all rewards tie.

    Args:
        bound (`float`, *optional*, defaults to 12.0): the bound ``B``.
        safeguards (`str`, *optional*, defaults to `"args"`): ``bound_clip`` gives ``B_eff``.
    """

    name = "minmax"

    def __init__(self, bound: float = 12.0, safeguards: Union[str, ThresholdSafeguards, None] = "args"):
        self.bound = check_positive("B", bound)
        self.safeguards = get_safeguards(safeguards)

    def transform(self, u, p, mask, threshold):
        lo, hi = _masked_min_max(u, mask)
        span = (hi - lo).unsqueeze(-1)
        b = _clipped_bound(lo, hi, self.bound, self.safeguards).unsqueeze(-1)
        scaled = (u - lo.unsqueeze(-1)) / torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, b * scaled, torch.zeros_like(u))


class MeanStdTransform(RewardTransform):
    """``(r - mean r) / std r`` over the candidates (population std); ``0`` when all rewards tie."""

    name = "meanstd"

    def transform(self, u, p, mask, threshold):
        mean, std = _masked_mean_std(u, mask)
        return torch.where(std > 0, (u - mean) / torch.where(std > 0, std, torch.ones_like(std)), torch.zeros_like(u))


class _SigmoidTransform(RewardTransform):
    def __init__(
        self,
        bound: float = 12.0,
        alpha: float = 1.5,
        beta: float = 2.0,
        safeguards: Union[str, ThresholdSafeguards, None] = "args",
    ):
        self.bound = check_positive("B", bound)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.safeguards = get_safeguards(safeguards)

    def _b_eff(self, u, mask):
        lo, hi = _masked_min_max(u, mask)
        return _clipped_bound(lo, hi, self.bound, self.safeguards).unsqueeze(-1)

    def _threshold(self, u, p, mask, threshold):
        if threshold is not None:
            return threshold
        return solve_threshold(u, self.beta, self.bound, weights=p, mask=mask, safeguards=self.safeguards)


class MeanSoftTransform(_SigmoidTransform):
    """``B_eff * sigmoid(alpha * (r - mean r))``: the SRS sigmoid centred at the candidates' mean, one of the
    paper's baselines (Wang et al., 2026, section 5).

    As in the authors' ARGS script, the mean is the plain (unweighted) mean of the candidates' rewards, so the
    centre ignores the base policy; ``weighted_mean=True`` centres at the base policy's expectation
    ``sum_i p_i r_i`` instead (``p`` = the ``weights`` passed at call time, e.g. ``softmax(top-k logits)``).

    Args:
        bound (`float`, *optional*, defaults to 12.0): the bound ``B`` (``B_eff`` after the safeguards' clip).
        alpha (`float`, *optional*, defaults to 1.5): sigmoid sharpness.
        beta (`float`, *optional*, defaults to 2.0): unused (kept so one config drives every transform).
        safeguards (`str`, *optional*, defaults to `"args"`): ``bound_clip`` gives ``B_eff``.
        weighted_mean (`bool`, *optional*, defaults to `False`): centre at the ``weights``-weighted mean.

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape import get_transform
    >>> meansoft = get_transform("meansoft", bound=12.0, alpha=1.0, safeguards="none")
    >>> meansoft(torch.tensor([[0.0, 1.0, 2.0]]))  # centred at the plain mean 1.0
    tensor([[3.2273, 6.0000, 8.7727]])
    ```
    """

    name = "meansoft"

    def __init__(
        self,
        bound: float = 12.0,
        alpha: float = 1.5,
        beta: float = 2.0,
        safeguards: Union[str, ThresholdSafeguards, None] = "args",
        weighted_mean: bool = False,
    ):
        super().__init__(bound=bound, alpha=alpha, beta=beta, safeguards=safeguards)
        self.weighted_mean = bool(weighted_mean)

    def transform(self, u, p, mask, threshold):
        if self.weighted_mean:
            mean = (p * u).sum(dim=-1, keepdim=True)
        else:
            mean, _ = _masked_mean_std(u, mask)
        return self._b_eff(u, mask) * torch.sigmoid(self.alpha * (u - mean))


class CapTransform(RewardTransform):
    """The authors' ``cap`` baseline for ARGS: ``clamp(r - min r, 0, cap)`` over the candidates.

    Every candidate's reward is shifted so that the worst candidate gets ``0``, then clipped at ``cap``; with
    ``cap=None`` it is only the shift, which leaves ARGS's argmax unchanged relative to raw rewards but bounds
    nothing. One of the paper's baselines (Wang et al., 2026, section 5), fed to ARGS (Khanov et al., 2024)
    as method ``cap-args``.

    Args:
        cap (`float`, *optional*): the upper clip, a positive number; ``None`` (default) only shifts.

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape import get_transform
    >>> get_transform("cap", cap=1.5)(torch.tensor([[-1.0, 0.0, 2.0]]))
    tensor([[0.0000, 1.0000, 1.5000]])
    ```
    """

    name = "cap"

    def __init__(self, cap: Optional[float] = None):
        self.cap = None if cap is None else check_positive("cap", cap)

    def transform(self, u, p, mask, threshold):
        lo, _ = _masked_min_max(u, mask)
        shifted = (u - lo.unsqueeze(-1)).clamp(min=0.0)
        return shifted if self.cap is None else shifted.clamp(max=self.cap)


class HardThresholdTransform(_SigmoidTransform):
    """The optimal bang-bang reward ``B_eff * 1[r > m*]`` (Wang et al., 2026, threshold optimality).

    This is the theorem's threshold reward, the limit ``alpha -> inf`` of SRS, kept for analysis and
    ablations; it is not one of the baselines the paper compares against.
    """

    name = "hard"

    def transform(self, u, p, mask, threshold):
        m = self._threshold(u, p, mask, threshold).unsqueeze(-1)
        return torch.where(u > m, self._b_eff(u, mask).expand_as(u), torch.zeros_like(u))


class SoftThresholdTransform(_SigmoidTransform):
    """Stackelberg reward shaping, SRS: ``B_eff * sigmoid(alpha * (r - m*(x)))`` (Wang et al., 2026).

    ``m*`` is the optimal threshold of :func:`solve_threshold` over the candidates (weighted by
    ``weights``), or the precomputed per-prompt ``threshold`` (from the [`ThresholdCalibrator`]) when
    one is passed. ``alpha -> inf`` recovers the hard threshold; ``alpha -> 0`` a constant reward.

    Args:
        bound (`float`, *optional*, defaults to 12.0): the reward bound ``B`` (paper's ARGS default).
        alpha (`float`, *optional*, defaults to 1.5): sigmoid sharpness (paper's ARGS default).
        beta (`float`, *optional*, defaults to 2.0): KL strength ``1/lambda`` used in ``gamma``.
        safeguards (`str`, *optional*, defaults to `"args"`): see [`ThresholdSafeguards`].

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape import get_transform
    >>> srs = get_transform("srs", bound=12.0, alpha=1.5, beta=2.0)
    >>> srs(torch.tensor([[0.1, 0.5, 2.0]])).shape
    torch.Size([1, 3])
    ```
    """

    name = "srs"
    uses_threshold = True

    def transform(self, u, p, mask, threshold):
        m = self._threshold(u, p, mask, threshold).unsqueeze(-1)
        return self._b_eff(u, mask) * torch.sigmoid(self.alpha * (u - m))


HardThresholdTransform.uses_threshold = True

TRANSFORMS: Dict[str, Type[RewardTransform]] = {
    "raw": RawTransform,
    "minmax": MinMaxTransform,
    "meanstd": MeanStdTransform,
    "meansoft": MeanSoftTransform,
    "cap": CapTransform,
    "hard": HardThresholdTransform,
    "srs": SoftThresholdTransform,
}
_ALIASES = {"vanilla": "raw", "soft": "srs", "sigmoid": "srs", "threshold": "hard"}


def get_transform(name: Union[str, RewardTransform], **kwargs) -> RewardTransform:
    """Build a reward transform by name: ``raw`` (alias ``vanilla``), ``minmax``, ``meanstd``,
    ``meansoft``, ``cap``, ``hard``, ``srs`` (alias ``soft``). Keyword arguments a transform does not take
    (e.g. ``alpha`` for ``raw``) are ignored, so one config can drive every method.
    """
    if isinstance(name, RewardTransform):
        return name
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in TRANSFORMS:
        raise ValueError(f"Unknown reward transform {name!r}; choose one of {sorted(TRANSFORMS)} (or 'vanilla').")
    cls = TRANSFORMS[key]
    if cls.__init__ is RewardTransform.__init__ or cls.__init__ is object.__init__:
        return cls()
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})
