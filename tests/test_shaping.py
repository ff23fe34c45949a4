"""The shaping core against closed forms, a plain scalar bisection and a brute-force Stackelberg search.

References used here are written from PAPER.md section 2 with Python floats, independently of
``hf_stackshape.core.shaping`` (in particular, never through ``bisect_threshold``).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hf_stackshape.core.shaping import (
    ARGS_SAFEGUARDS,
    CD_SAFEGUARDS,
    NO_SAFEGUARDS,
    TRANSFORMS,
    HardThresholdTransform,
    RawTransform,
    SoftThresholdTransform,
    ThresholdSafeguards,
    bisect_threshold,
    effective_bound,
    get_safeguards,
    get_transform,
    shaping_gamma,
    solve_threshold,
    threshold_objective,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESETS = ["none", "args", "cd"]


# --------------------------------------------------------------------------------------------------
# Plain-Python references (PAPER.md section 2)
# --------------------------------------------------------------------------------------------------


def ref_bound_and_gamma(u, beta, bound, preset):
    """B_eff and gamma exactly as the paper's scripts write them."""
    span = max(u) - min(u)
    if preset == "none":
        return bound, math.exp(bound / beta)
    if preset == "args":
        b_eff = min(bound, 1.01 * span)
        return b_eff, min(math.exp(b_eff / beta), 2.0)
    if preset == "cd":
        b_eff = min(bound, 2.0 * span)
        return b_eff, math.exp(min(b_eff / beta, 2.0))
    raise AssertionError(preset)


def ref_objective(m, u, p, gamma):
    total = sum(p)
    return sum(pi * (gamma if ui > m else 1.0) * (ui - m) for ui, pi in zip(u, p)) / total


def ref_bisection(u, p, gamma, steps=200):
    """Scalar bisection of F on [min u, max u]; 200 halvings reach float64 resolution."""
    lo, hi = min(u), max(u)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if ref_objective(mid, u, p, gamma) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ref_threshold(u, beta, bound, preset="none", p=None):
    p = [1.0] * len(u) if p is None else p
    _, gamma = ref_bound_and_gamma(u, beta, bound, preset)
    return ref_bisection(u, p, gamma)


def tol(u):
    return 1e-9 * (1.0 + max(abs(x) for x in u))


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------

reward = st.floats(-20.0, 20.0, allow_nan=False, allow_infinity=False, width=64)
weight = st.floats(0.01, 5.0, allow_nan=False, width=64)
betas = st.floats(0.1, 5.0)
bounds = st.floats(0.05, 20.0)


@st.composite
def ragged_batch(draw, with_weights):
    """Rows of different lengths, padded with junk (NaN, huge values) that the mask must hide."""
    rows = draw(st.lists(st.lists(reward, min_size=1, max_size=10), min_size=1, max_size=5))
    n = max(len(r) for r in rows)
    pads = draw(st.sampled_from([float("nan"), 1e6, -1e6, 0.0]))
    u = torch.full((len(rows), n), pads, dtype=torch.float64)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    w = torch.full((len(rows), n), -1.0 if with_weights else 1.0, dtype=torch.float64)  # junk if masked
    for i, row in enumerate(rows):
        u[i, : len(row)] = torch.tensor(row, dtype=torch.float64)
        mask[i, : len(row)] = True
        if with_weights:
            w[i, : len(row)] = torch.tensor(draw(st.lists(weight, min_size=len(row), max_size=len(row))))
    return rows, u, mask, (w if with_weights else None)


# --------------------------------------------------------------------------------------------------
# solve_threshold == scalar bisection, every preset, weights, masks
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(batch=ragged_batch(with_weights=False), beta=betas, bound=bounds, preset=st.sampled_from(PRESETS))
def test_solve_matches_scalar_bisection_masked(batch, beta, bound, preset):
    rows, u, mask, _ = batch
    got = solve_threshold(u, beta, bound, mask=mask, safeguards=preset)
    assert got.shape == (len(rows),) and got.dtype == torch.float64
    for i, row in enumerate(rows):
        assert got[i].item() == pytest.approx(ref_threshold(row, beta, bound, preset), abs=tol(row))


@SETTINGS
@given(batch=ragged_batch(with_weights=True), beta=betas, bound=bounds, preset=st.sampled_from(PRESETS))
def test_solve_matches_scalar_bisection_weighted(batch, beta, bound, preset):
    rows, u, mask, w = batch
    got = solve_threshold(u, beta, bound, weights=w, mask=mask, safeguards=preset)
    for i, row in enumerate(rows):
        p = w[i, : len(row)].tolist()
        assert got[i].item() == pytest.approx(ref_threshold(row, beta, bound, preset, p), abs=tol(row))


@SETTINGS
@given(rows=st.lists(st.lists(reward, min_size=4, max_size=4), min_size=1, max_size=4), beta=betas, bound=bounds)
def test_solve_unmasked_and_library_bisection_agree(rows, beta, bound):
    u = torch.tensor(rows, dtype=torch.float64)
    exact = solve_threshold(u, beta, bound)
    for i, row in enumerate(rows):
        assert exact[i].item() == pytest.approx(ref_threshold(row, beta, bound), abs=tol(row))
    torch.testing.assert_close(bisect_threshold(u, beta, bound), exact, atol=1e-9 * (1 + u.abs().max()), rtol=0)


def test_solve_large_gamma_and_large_rewards_do_not_overflow():
    # exp(B / beta) = exp(1200) is beyond float64; the root then sits at max u (for either sign).
    for sign in (1.0, -1.0):
        u = sign * torch.tensor([[1e5, 2e5, 3e5, 4e5]], dtype=torch.float64)
        assert solve_threshold(u, beta=0.01, bound=12.0).item() == pytest.approx(u.max().item(), rel=1e-12)


def test_shift_equivariance():
    u = torch.tensor([[0.3, -1.2, 2.5, 0.9, 0.0]], dtype=torch.float64)
    m = solve_threshold(u, 0.8, 2.0)
    for c in (-1e4, 3.0, 1e6):
        assert solve_threshold(u + c, 0.8, 2.0).item() == pytest.approx(m.item() + c, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Safeguard presets reproduce the paper's formulas
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(row=st.lists(reward, min_size=1, max_size=8), beta=betas, bound=bounds, preset=st.sampled_from(PRESETS))
def test_presets_reproduce_paper_formulas(row, beta, bound, preset):
    u = torch.tensor([row], dtype=torch.float64)
    b_ref, g_ref = ref_bound_and_gamma(row, beta, bound, preset)
    b_eff = effective_bound(u, bound, safeguards=preset)
    assert b_eff.item() == pytest.approx(b_ref, rel=1e-12, abs=1e-12)
    assert shaping_gamma(b_eff, beta, safeguards=preset).item() == pytest.approx(g_ref, rel=1e-12)


def test_preset_objects_and_resolution():
    assert get_safeguards("args") is ARGS_SAFEGUARDS and get_safeguards("ARGS") is ARGS_SAFEGUARDS
    assert get_safeguards("cd") is CD_SAFEGUARDS and get_safeguards("none") is NO_SAFEGUARDS
    assert get_safeguards(None) is NO_SAFEGUARDS
    custom = ThresholdSafeguards(bound_clip=3.0)
    assert get_safeguards(custom) is custom
    assert (ARGS_SAFEGUARDS.bound_clip, ARGS_SAFEGUARDS.gamma_cap, ARGS_SAFEGUARDS.exponent_cap) == (1.01, 2.0, None)
    assert (CD_SAFEGUARDS.bound_clip, CD_SAFEGUARDS.gamma_cap, CD_SAFEGUARDS.exponent_cap) == (2.0, None, 2.0)
    with pytest.raises(ValueError, match="args"):
        get_safeguards("paper")
    for bad in (dict(bound_clip=0.0), dict(exponent_cap=-1.0), dict(gamma_cap=0.5), dict(gamma_cap=float("inf"))):
        with pytest.raises(ValueError):
            ThresholdSafeguards(**bad)


def test_hand_computed_threshold():
    # u = [0, 1, 3], gamma = 2: with only 3 above m, m = (0 + 1 + 2 * 3) / (1 + 1 + 2) = 1.75 in (1, 3).
    u = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    assert solve_threshold(u, beta=1.0, bound=math.log(2.0)).item() == pytest.approx(1.75, abs=1e-12)
    # ARGS preset, B = 12, beta = 2: B_eff = 3.03, gamma = min(e^1.515, 2) = 2, same root.
    assert solve_threshold(u, beta=2.0, bound=12.0, safeguards="args").item() == pytest.approx(1.75, abs=1e-12)
    # CD preset, B = 12, beta = 2: B_eff = 6, gamma = e^min(3, 2) = e^2 -> m = (1 + 3 e^2) / (2 + e^2).
    e2 = math.exp(2.0)
    assert solve_threshold(u, beta=2.0, bound=12.0, safeguards="cd").item() == pytest.approx((1 + 3 * e2) / (2 + e2))
    # Weights [1, 1, 2] (normalised to 1/4, 1/4, 1/2), gamma = 2: m = (1/4 + 2 * 3/2) / (1/2 + 1) = 13/6.
    w = torch.tensor([1.0, 1.0, 2.0])
    assert solve_threshold(u, beta=1.0, bound=math.log(2.0), weights=w).item() == pytest.approx(13 / 6)


# --------------------------------------------------------------------------------------------------
# Fixed point m* = E_rho[u], range, monotone F
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    row=st.lists(reward, min_size=1, max_size=10),
    data=st.data(),
    beta=betas,
    bound=bounds,
    preset=st.sampled_from(PRESETS),
)
def test_fixed_point_and_range(row, data, beta, bound, preset):
    p = data.draw(st.lists(weight, min_size=len(row), max_size=len(row)))
    u = torch.tensor([row], dtype=torch.float64)
    w = torch.tensor([p], dtype=torch.float64)
    m = solve_threshold(u, beta, bound, weights=w, safeguards=preset).item()
    _, gamma = ref_bound_and_gamma(row, beta, bound, preset)
    # Fixed point: m* equals the self-normalised tilted mean with w = gamma above m*.
    # (A sample within rounding of m* may count as above or not: F is continuous there, the ratio is not.)
    close = 1e-8 * (1 + max(map(abs, row)))
    ratios = []
    for above in (lambda x: x > m, lambda x: x >= m - close):
        tilt = [pi * (gamma if above(ui) else 1.0) for ui, pi in zip(row, p)]
        ratios.append(sum(t * ui for t, ui in zip(tilt, row)) / sum(tilt))
    assert min(abs(m - r) for r in ratios) <= close, (m, ratios)
    mean = sum(pi * ui for pi, ui in zip(p, row)) / sum(p)
    assert mean - tol(row) <= m <= max(row) + tol(row)
    # F(m*) ~ 0 through the library objective with the preset's gamma.
    g = shaping_gamma(effective_bound(u, bound, safeguards=preset), beta, safeguards=preset)
    scale = gamma * (1 + max(map(abs, row)))
    assert abs(threshold_objective(torch.tensor([m], dtype=torch.float64), u, g, weights=w).item()) <= 1e-9 * scale


@SETTINGS
@given(
    row=st.lists(reward, min_size=1, max_size=10),
    ms=st.lists(st.floats(-30, 30), min_size=2, max_size=6),
    beta=betas,
    bound=st.floats(0.05, 5.0),
)
def test_objective_monotone_decreasing_and_matches_reference(row, ms, beta, bound):
    u = torch.tensor([row], dtype=torch.float64)
    gamma = math.exp(bound / beta)
    ms = sorted(ms)
    values = [threshold_objective(torch.tensor([m], dtype=torch.float64), u, torch.tensor([gamma], dtype=torch.float64)).item() for m in ms]
    for m, v in zip(ms, values):
        assert v == pytest.approx(ref_objective(m, row, [1.0] * len(row), gamma), rel=1e-9, abs=1e-9)
    for (m1, v1), (m2, v2) in zip(zip(ms, values), zip(ms[1:], values[1:])):
        # F' <= -1: strictly decreasing with slope at most -1.
        assert v1 - v2 >= (m2 - m1) * (1 - 1e-9) - 1e-9 * gamma * (1 + max(map(abs, row)))


# --------------------------------------------------------------------------------------------------
# The threshold reward is the optimal bounded reward (brute-force Stackelberg search)
# --------------------------------------------------------------------------------------------------


def tilted_utility(r, p, u, beta):
    """E_{rho_r}[u] for rho_r ∝ p exp(r / beta); ``r`` has shape (..., K)."""
    logits = np.log(p) + r / beta
    logits = logits - logits.max(axis=-1, keepdims=True)
    q = np.exp(logits)
    return (q * u).sum(axis=-1) / q.sum(axis=-1)


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(2, 5),
    seed=st.integers(0, 2**31 - 1),
    beta=st.floats(0.2, 3.0),
    bound=st.floats(0.2, 6.0),
)
def test_threshold_reward_maximises_utility(k, seed, beta, bound):
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k))
    u = rng.normal(size=k) * 2.0
    assume(np.min(np.abs(u[:, None] - u[None, :]) + np.eye(k)) > 1e-3)  # no near-ties
    m = solve_threshold(torch.tensor(u), beta, bound, weights=torch.tensor(p)).item()
    r_star = np.where(u > m, bound, 0.0)
    best = tilted_utility(r_star, p, u, beta)
    assert best == pytest.approx(m, abs=1e-9)  # the fixed point: utility achieved equals the threshold

    # Every bang-bang reward (all corners of [0, B]^k), random interior rewards, and a local optimiser.
    corners = np.array(list(itertools.product([0.0, bound], repeat=k)))
    randoms = rng.uniform(0.0, bound, size=(4000, k))
    assert tilted_utility(corners, p, u, beta).max() <= best + 1e-9
    assert tilted_utility(corners, p, u, beta).max() == pytest.approx(best, abs=1e-9)
    assert tilted_utility(randoms, p, u, beta).max() <= best + 1e-9
    for start in rng.uniform(0.0, bound, size=(3, k)):
        res = minimize(lambda r: -tilted_utility(r, p, u, beta), start, bounds=[(0.0, bound)] * k, method="L-BFGS-B")
        assert -res.fun <= best + 1e-7
    # And the raw utility as reward (clipped into the box) does no better.
    assert tilted_utility(np.clip(u - u.min(), 0, bound), p, u, beta) <= best + 1e-9


# --------------------------------------------------------------------------------------------------
# Soft threshold limits
# --------------------------------------------------------------------------------------------------


@SETTINGS
@given(rows=st.lists(st.lists(reward, min_size=3, max_size=3), min_size=1, max_size=4), bound=bounds, beta=betas)
def test_srs_tends_to_hard_and_to_constant(rows, bound, beta):
    u = torch.tensor(rows, dtype=torch.float64)
    hard = get_transform("hard", bound=bound, beta=beta, safeguards="none")(u)
    sharp = get_transform("srs", bound=bound, beta=beta, alpha=1e4, safeguards="none")(u)
    m = solve_threshold(u, beta, bound).unsqueeze(-1)
    away = (u - m).abs() > 1e-2
    torch.testing.assert_close(sharp[away], hard[away], atol=1e-12 * bound, rtol=0)
    flat = get_transform("srs", bound=bound, beta=beta, alpha=1e-9, safeguards="none")(u)
    torch.testing.assert_close(flat, torch.full_like(u, bound / 2), atol=1e-6 * bound, rtol=0)
    # Soft reward is monotone in u and stays in [0, B].
    soft = get_transform("srs", bound=bound, beta=beta, alpha=1.5, safeguards="none")(u)
    assert ((soft >= 0) & (soft <= bound)).all()
    order = u.argsort(dim=-1)
    assert (soft.gather(-1, order).diff(dim=-1) >= 0).all()


# --------------------------------------------------------------------------------------------------
# Transforms: hand-computed values
# --------------------------------------------------------------------------------------------------

U = [0.0, 1.0, 3.0]
B_EFF = 1.01 * 3.0  # ARGS default: min(12, 1.01 * range)
M_STAR = 1.75  # see test_hand_computed_threshold (gamma = 2)
MEAN, STD = 4.0 / 3.0, math.sqrt(14.0 / 9.0)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


HAND = {
    "raw": U,
    "minmax": [0.0, B_EFF / 3.0, B_EFF],
    "meanstd": [(x - MEAN) / STD for x in U],
    "meansoft": [B_EFF * sig(1.5 * (x - MEAN)) for x in U],
    "cap": [0.0, 1.0, 3.0],  # r - min r, no cap by default
    "hard": [0.0, 0.0, B_EFF],
    "srs": [B_EFF * sig(1.5 * (x - M_STAR)) for x in U],
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_transform_hand_values(name):
    t = get_transform(name, bound=12.0, alpha=1.5, beta=2.0, safeguards="args")
    got = t(torch.tensor([U], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([HAND[name]], dtype=torch.float64), atol=1e-12, rtol=0)


def test_transform_hand_values_weighted_and_unclipped():
    u = torch.tensor([U], dtype=torch.float64)
    w = torch.tensor([[1.0, 1.0, 2.0]])
    wmean = 0.25 * 0.0 + 0.25 * 1.0 + 0.5 * 3.0
    weighted = get_transform("meansoft", bound=12.0, alpha=1.5, beta=2.0, weighted_mean=True)
    got = weighted(u, weights=w)
    torch.testing.assert_close(got, torch.tensor([[B_EFF * sig(1.5 * (x - wmean)) for x in U]], dtype=torch.float64))
    # safeguards none: the full bound B; gamma = exp(log 2 / 1) = 2, weighted root 13/6.
    srs = get_transform("srs", bound=math.log(2.0), alpha=2.0, beta=1.0, safeguards="none")
    want = [math.log(2.0) * sig(2.0 * (x - 13 / 6)) for x in U]
    torch.testing.assert_close(srs(u, weights=w), torch.tensor([want], dtype=torch.float64))
    minmax = get_transform("minmax", bound=2.0, safeguards="none")
    torch.testing.assert_close(minmax(u), torch.tensor([[0.0, 2.0 / 3.0, 2.0]], dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# Transforms: edge cases
# --------------------------------------------------------------------------------------------------


ALL = sorted(TRANSFORMS)


def make(name, **kw):
    kw = {**dict(bound=12.0, alpha=1.5, beta=2.0, safeguards="args"), **kw}
    return get_transform(name, **kw)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [1, 4])
def test_all_rewards_equal(name, n):
    u = torch.full((2, n), 0.7)
    out = make(name)(u)
    assert torch.isfinite(out).all()
    want = {"raw": 0.7}.get(name, 0.0)  # ARGS clip: B_eff = 1.01 * 0 = 0 for every bounded transform
    torch.testing.assert_close(out, torch.full_like(u, want))
    assert torch.allclose(solve_threshold(u, 2.0, 12.0, safeguards="args"), torch.tensor(0.7))
    assert torch.allclose(solve_threshold(u, 2.0, 12.0), torch.tensor(0.7))
    # Without the clip, the sigmoids sit at B/2 and the hard threshold gives 0 (nothing strictly above).
    free = make(name, safeguards="none")(u)
    want_free = {"raw": 0.7, "meansoft": 6.0, "srs": 6.0}.get(name, 0.0)
    torch.testing.assert_close(free, torch.full_like(u, want_free))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rewards_raise(name, bad):
    u = torch.tensor([[0.0, bad, 1.0]])
    with pytest.raises(ValueError, match="NaN" if math.isnan(bad) else "infinite"):
        make(name)(u)
    with pytest.raises(ValueError, match="rewards"):
        solve_threshold(u, 1.0, 1.0)
    # The same value under the mask is fine.
    out = make(name)(u, mask=torch.tensor([[True, False, True]]))
    assert torch.isfinite(out).all() and out[0, 1] == 0


@pytest.mark.parametrize("name", ALL)
def test_mask_zeroes_padding_and_ignores_it(name):
    t = make(name)
    rows = [[0.2, -1.0, 2.5, 0.9], [1.5, 0.1]]
    u = torch.tensor([rows[0], rows[1] + [99.0, -99.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 2.0, 0.5, 1.0], [0.3, 0.7, 5.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    out = t(u, weights=w, mask=mask)
    assert (out[1, 2:] == 0).all()
    for i, row in enumerate(rows):
        alone = t(torch.tensor([row], dtype=torch.float64), weights=w[i : i + 1, : len(row)])
        torch.testing.assert_close(out[i, : len(row)], alone[0])


@pytest.mark.parametrize("name", ["hard", "srs"])
def test_precomputed_threshold(name):
    t = make(name, safeguards="none", bound=3.0)
    u = torch.tensor([[0.0, 1.0, 3.0], [2.0, -1.0, 0.5]], dtype=torch.float64)
    m = torch.tensor([0.5, 1.0])
    out = t(u, threshold=m)
    want = 3.0 * (u > m[:, None]).double() if name == "hard" else 3.0 * torch.sigmoid(1.5 * (u - m[:, None].double()))
    torch.testing.assert_close(out, want)
    # Without `threshold`, the transform solves for it itself: different values here.
    assert not torch.allclose(t(u), out)
    with pytest.raises(ValueError, match="batch shape"):
        t(u, threshold=torch.tensor([0.5]))
    with pytest.raises(ValueError, match="finite"):
        t(u, threshold=torch.tensor([0.5, float("nan")]))


def test_meansoft_is_centred_at_the_plain_mean_like_the_paper():
    # The authors' meansoft ARGS script: B_eff * sigmoid(alpha * (r - mean r)), the plain mean of the k
    # rewards, even though the candidates come with base probabilities.
    u = torch.tensor([[1.0, 2.0, 6.0]], dtype=torch.float64)
    p = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    b_eff = min(12.0, 1.01 * (6.0 - 1.0))  # 5.05
    plain = [b_eff * sig(2.0 * (x - 3.0)) for x in (1.0, 2.0, 6.0)]  # mean (1 + 2 + 6) / 3 = 3
    meansoft = get_transform("meansoft", bound=12.0, alpha=2.0, safeguards="args")
    assert meansoft.weighted_mean is False
    torch.testing.assert_close(meansoft(u, weights=p), torch.tensor([plain], dtype=torch.float64))
    torch.testing.assert_close(meansoft(u), meansoft(u, weights=p))  # the weights do not move it
    # The option: centred at sum p r = 0.7 + 0.4 + 0.6 = 1.7.
    weighted = [b_eff * sig(2.0 * (x - 1.7)) for x in (1.0, 2.0, 6.0)]
    option = get_transform("meansoft", bound=12.0, alpha=2.0, safeguards="args", weighted_mean=True)
    torch.testing.assert_close(option(u, weights=p), torch.tensor([weighted], dtype=torch.float64))
    assert option.to_dict()["weighted_mean"] is True


def test_cap_shifts_by_the_minimum_and_clips():
    u = torch.tensor([[-2.0, 0.5, 3.0], [4.0, 4.0, 1.0]], dtype=torch.float64)
    # No cap: r - min r per row (min -2 and 1).
    torch.testing.assert_close(get_transform("cap")(u), torch.tensor([[0.0, 2.5, 5.0], [3.0, 3.0, 0.0]], dtype=torch.float64))
    # cap = 2: clamp(r - min r, 0, 2).
    capped = get_transform("cap", cap=2.0, bound=12.0, alpha=1.5)  # foreign keywords ignored
    torch.testing.assert_close(capped(u), torch.tensor([[0.0, 2.0, 2.0], [2.0, 2.0, 0.0]], dtype=torch.float64))
    assert capped.to_dict() == {"name": "cap", "cap": 2.0}
    # The minimum is over the unmasked candidates only.
    mask = torch.tensor([[False, True, True], [True, True, True]])
    torch.testing.assert_close(get_transform("cap")(u, mask=mask)[0], torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="cap"):
            get_transform("cap", cap=bad)


@pytest.mark.parametrize("name", ["raw", "minmax", "meanstd", "meansoft", "cap"])
def test_threshold_argument_is_ignored_by_others(name):
    u = torch.tensor([[0.0, 1.0, 3.0]])
    t = make(name)
    torch.testing.assert_close(t(u, threshold=torch.tensor([100.0])), t(u))


@pytest.mark.parametrize("name", ALL)
def test_batch_shapes(name):
    torch.manual_seed(0)
    u = torch.randn(2, 3, 5, dtype=torch.float64)
    t = make(name)
    out = t(u)
    assert out.shape == u.shape
    flat = t(u.reshape(6, 5)).reshape(2, 3, 5)
    torch.testing.assert_close(out, flat)
    for i, j in [(0, 0), (1, 2)]:
        torch.testing.assert_close(out[i, j], t(u[i, j]))  # 1-D (N,) input works too
    assert solve_threshold(u, 2.0, 12.0).shape == (2, 3)
    assert solve_threshold(u[0, 0], 2.0, 12.0).shape == ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ALL)
def test_dtype_preserved(name, dtype):
    u = torch.tensor([[0.0, 1.0, 3.0, -0.5]]).to(dtype)
    out = make(name)(u)
    assert out.dtype == dtype
    ref = make(name)(u.double())
    torch.testing.assert_close(out.double(), ref, atol=0.05 if dtype in (torch.float16, torch.bfloat16) else 1e-5, rtol=0.01)
    assert solve_threshold(u, 2.0, 12.0).dtype == dtype
    assert bisect_threshold(u, 2.0, 12.0).dtype == dtype


def test_integer_rewards_become_default_float():
    out = make("raw")(torch.tensor([[1, 2, 3]]))
    assert out.dtype == torch.get_default_dtype()
    assert solve_threshold(torch.tensor([[1, 2, 3]]), 1.0, 1.0).dtype == torch.get_default_dtype()


def test_get_transform_aliases_and_unknown():
    assert isinstance(get_transform("vanilla"), RawTransform)
    assert isinstance(get_transform("RAW"), RawTransform)
    assert isinstance(get_transform("soft"), SoftThresholdTransform)
    assert isinstance(get_transform("sigmoid"), SoftThresholdTransform)
    assert isinstance(get_transform("threshold"), HardThresholdTransform)
    for name, cls in TRANSFORMS.items():
        assert type(get_transform(name)) is cls and get_transform(name).name == name
    t = get_transform("srs")
    assert get_transform(t) is t
    with pytest.raises(ValueError) as err:
        get_transform("zscore")
    for name in ALL:
        assert name in str(err.value)
    assert "zscore" in str(err.value)


def test_get_transform_ignores_foreign_kwargs_and_keeps_own():
    kw = dict(bound=5.0, alpha=3.0, beta=0.5, safeguards="cd", unknown_field=1, another=None)
    assert get_transform("raw", **kw).to_dict() == {"name": "raw"}
    assert get_transform("meanstd", **kw).to_dict() == {"name": "meanstd"}
    mm = get_transform("minmax", **kw).to_dict()
    assert mm["bound"] == 5.0 and "alpha" not in mm and mm["safeguards"] == vars(CD_SAFEGUARDS)
    srs = get_transform("srs", **kw)
    assert (srs.bound, srs.alpha, srs.beta, srs.safeguards) == (5.0, 3.0, 0.5, CD_SAFEGUARDS)
    assert srs.to_dict() == {"name": "srs", "bound": 5.0, "alpha": 3.0, "beta": 0.5, "safeguards": vars(CD_SAFEGUARDS)}
    assert "alpha=3.0" in repr(srs)
    # None means "the transform's default".
    assert get_transform("srs", alpha=None).alpha == 1.5


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_beta_bound_alpha(bad):
    u = torch.tensor([[0.0, 1.0]])
    with pytest.raises(ValueError, match="beta"):
        solve_threshold(u, beta=bad, bound=1.0)
    with pytest.raises(ValueError, match="B"):
        solve_threshold(u, beta=1.0, bound=bad)
    with pytest.raises(ValueError, match="beta"):
        bisect_threshold(u, beta=bad, bound=1.0)
    with pytest.raises(ValueError, match="alpha"):
        get_transform("srs", alpha=bad)
    with pytest.raises(ValueError, match="beta"):
        get_transform("hard", beta=bad)
    with pytest.raises(ValueError, match="B"):
        get_transform("minmax", bound=bad)
    with pytest.raises(ValueError, match="B"):
        effective_bound(u, bad)


def test_empty_and_bad_shapes():
    with pytest.raises(ValueError, match="N >= 1"):
        solve_threshold(torch.zeros(3, 0), 1.0, 1.0)
    with pytest.raises(ValueError, match="N >= 1"):
        get_transform("srs")(torch.zeros(2, 3, 0))
    with pytest.raises(ValueError, match="scalar"):
        solve_threshold(torch.tensor(1.0), 1.0, 1.0)
    u = torch.tensor([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="rows \\[1\\]"):
        solve_threshold(u, 1.0, 1.0, mask=torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="mask"):
        solve_threshold(u, 1.0, 1.0, mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps"):
        bisect_threshold(u, 1.0, 1.0, steps=0)


@pytest.mark.parametrize(
    "weights, match",
    [
        (torch.ones(2, 2), "shape"),
        (torch.ones(3), "shape"),
        (torch.tensor([[1.0, -0.1, 1.0], [1.0, 1.0, 1.0]]), "non-negative"),
        (torch.tensor([[1.0, float("nan"), 1.0], [1.0, 1.0, 1.0]]), "finite"),
        (torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), "sum to zero"),
    ],
)
def test_bad_weights(weights, match):
    u = torch.tensor([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=match):
        solve_threshold(u, 1.0, 1.0, weights=weights)
    with pytest.raises(ValueError, match=match):
        get_transform("srs")(u, weights=weights)


def test_zero_weight_samples_do_not_move_the_threshold_but_stay_in_range():
    u = torch.tensor([[0.0, 1.0, 3.0, 10.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    m = solve_threshold(u, 1.0, math.log(2.0), weights=w)
    assert m.item() == pytest.approx(13 / 6)


def test_threshold_benchmark_smoke():
    """The benchmark's paper-style loop agrees with solve_threshold (timings are not checked)."""
    from hf_stackshape.benchmarks.threshold import BenchArgs, run

    threads = torch.get_num_threads()
    out = run(BenchArgs(prompts=40, samples=6, repeats=1, bisection_prompts=10))
    assert torch.get_num_threads() == threads  # restored
    assert out["bisection_prompts_timed"] == 10 and out["targets"] == {"ratio_vs_bisection": ">= 50"}
    assert out["max_abs_diff"] < 1e-5  # 30 halvings of a range of ~10, plus float32 rounding
    assert out["ratio_vs_bisection"] > 0 and out["solve_threshold_s"] > 0


@SETTINGS
@given(
    rewards=st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=12),
    shift=st.floats(-100, 100, allow_nan=False),
    cap=st.one_of(st.none(), st.floats(0.01, 20.0)),
)
def test_cap_and_meansoft_properties(rewards, shift, cap):
    u = torch.tensor([rewards], dtype=torch.float64)
    p = torch.rand(u.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.01
    capped = get_transform("cap", cap=cap)(u)
    limit = math.inf if cap is None else cap
    assert (capped >= 0).all() and (capped <= limit).all()
    assert capped.min() == 0.0  # the worst candidate gets 0
    # Order-preserving, and blind to a common shift of the rewards (up to rounding of the shift).
    order = torch.argsort(u[0])
    assert (capped[0, order].diff() >= -1e-9).all()
    torch.testing.assert_close(get_transform("cap", cap=cap)(u + shift), capped, atol=1e-9, rtol=0)
    # meansoft (paper): centred at the plain mean, so the candidate weights never move it; shift-invariant.
    meansoft = get_transform("meansoft", bound=12.0, alpha=1.5, safeguards="args")
    torch.testing.assert_close(meansoft(u, weights=p), meansoft(u))
    torch.testing.assert_close(meansoft(u + shift), meansoft(u), atol=1e-7, rtol=0)
