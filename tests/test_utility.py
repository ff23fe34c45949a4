"""The exact Stackelberg utility metric: hand computations, the theorem on random discrete problems, the
`evaluate` module, datasets and the plot."""

import itertools
import math

import numpy as np
import pytest
import torch

from hf_stackshape.bon import BON_SAFEGUARDS
from hf_stackshape.evaluation.utility import (
    follower_utility,
    plot_utility,
    score_samples,
    utility_from_dataset,
    utility_table,
)
from hf_stackshape.rewards import CallableReward
from hf_stackshape.core.shaping import solve_threshold


def _row(table, transform, beta):
    (row,) = [r for r in table if r["transform"] == transform and r["beta"] == beta]
    return row


def test_utility_equals_hand_computation():
    e = math.e
    table = utility_table([[0.0, 1.0, 2.0]], betas=[1.0], transforms=["raw", "hard", "srs"],
                          gold_rewards=[[1.0, 0.0, 0.0]], n_resamples=10)
    # raw: rho = (1, e, e^2) / (1 + e + e^2).
    z = 1 + e + e**2
    assert _row(table, "raw", 1.0)["utility"] == pytest.approx((e + 2 * e**2) / z, rel=1e-12)
    assert _row(table, "raw", 1.0)["gold_utility"] == pytest.approx(1 / z, rel=1e-12)
    # hard: B_eff = min(15, 2 * range) = 4, gamma = e^4; m* lies in (1, 2), only u = 2 is above it:
    # gamma (2 - m) - m + (1 - m) = 0  ->  m* = (1 + 2 gamma) / (2 + gamma), and rho = (1, 1, gamma) / (2 + gamma).
    g = e**4
    hard = _row(table, "hard", 1.0)
    assert hard["utility"] == pytest.approx((1 + 2 * g) / (2 + g), rel=1e-12)
    assert hard["gold_utility"] == pytest.approx(1 / (2 + g), rel=1e-12)
    # srs: 4 sigmoid(u - m*), then the same softmax.
    m = (1 + 2 * g) / (2 + g)
    w = [math.exp(4 / (1 + math.exp(-(u - m)))) for u in (0.0, 1.0, 2.0)]
    assert _row(table, "srs", 1.0)["utility"] == pytest.approx((w[1] + 2 * w[2]) / sum(w), rel=1e-12)
    assert hard["utility_vs_raw"] == pytest.approx(hard["utility"] - _row(table, "raw", 1.0)["utility"], rel=1e-12)
    assert hard["n"] == 1 and hard["weight"] == 1.0


def test_base_policy_and_ragged_rows():
    table = utility_table([[0.0, 3.0], [1.0, 2.0, 6.0]], betas=[math.inf, 0.5], transforms=["raw"], n_resamples=10)
    base = _row(table, "raw", math.inf)
    assert base["per_prompt"]["utility"] == pytest.approx([1.5, 3.0]) and base["weight"] == 0.0
    alone = utility_table([[0.0, 3.0]], betas=[0.5], transforms=["raw"], n_resamples=10)
    assert _row(table, "raw", 0.5)["per_prompt"]["utility"][0] == pytest.approx(alone[0]["utility"])


def test_hard_threshold_utility_is_the_threshold():
    """The fixed point of the theorem, m* = E_rho[u] under the threshold reward, on random rewards."""
    u = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for beta in (0.2, 1.0, 5.0):
        table = utility_table(u, betas=[beta], transforms=["hard"], n_resamples=10)
        m = solve_threshold(u, beta, 15.0, safeguards=BON_SAFEGUARDS)
        assert np.allclose(table[0]["per_prompt"]["utility"], m.numpy(), atol=1e-9)


@pytest.mark.parametrize("safeguards", ["none", BON_SAFEGUARDS])
def test_threshold_never_below_raw_on_random_discrete_problems(safeguards):
    """Theorem: with B >= the rewards' range, no reward in [0, B] beats the hard threshold; a shifted raw reward is
    one of them (softmax is shift invariant), so the threshold's utility is never below raw's."""
    rng = np.random.default_rng(0)
    worst = math.inf
    for _ in range(300):
        n = int(rng.integers(2, 9))
        u = rng.integers(0, 6, size=(1, n)).astype(float)
        spread = float(u.max() - u.min())
        bound = max(spread, 1e-3) * float(rng.uniform(1.0, 3.0))
        beta = float(rng.choice([0.1, 0.5, 1.0, 3.0]))
        table = utility_table(u.tolist(), betas=[beta], transforms=["raw", "hard"], bound=bound,
                              safeguards=safeguards, n_resamples=1)
        gap = _row(table, "hard", beta)["utility"] - _row(table, "raw", beta)["utility"]
        worst = min(worst, gap)
        assert gap >= -1e-9, (u, bound, beta, gap)
    assert worst < 1e-6  # ties exist (e.g. all rewards equal), so the bound is attained


@pytest.mark.parametrize("safeguards, scale", [("cd", 2.0), ("none", 0.3)])
def test_the_theorem_needs_an_uncapped_gamma_and_a_bound_covering_the_range(safeguards, scale):
    """Negative controls: the CD script's exponent cap (gamma <= e^2, not the selection's exp(B/beta)) or a bound
    below the rewards' range each let raw beat the threshold on some problem."""
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(100):
        u = rng.integers(0, 6, size=(1, int(rng.integers(2, 9)))).astype(float)
        bound = max(float(u.max() - u.min()), 1e-3) * scale
        beta = float(rng.choice([0.1, 0.5, 1.0, 3.0]))
        table = utility_table(u.tolist(), betas=[beta], transforms=["raw", "hard"], bound=bound,
                              safeguards=safeguards, n_resamples=1)
        gaps.append(_row(table, "hard", beta)["utility"] - _row(table, "raw", beta)["utility"])
    assert min(gaps) < -0.1


def test_threshold_beats_every_bounded_reward_by_brute_force():
    """On 3 samples, search a grid of rewards in [0, B]^3: none beats the threshold reward's utility."""
    rng = np.random.default_rng(1)
    grid = np.linspace(0.0, 1.0, 11)
    for _ in range(20):
        u = torch.tensor(rng.normal(size=(1, 3)))
        bound, beta = 2.0, float(rng.choice([0.3, 1.0]))
        best = max(
            follower_utility(torch.tensor([r]) * bound, beta, u).item() for r in itertools.product(grid, repeat=3)
        )
        hard = utility_table(u, betas=[beta], transforms=["hard"], bound=bound, safeguards="none", n_resamples=1)
        assert hard[0]["utility"] >= best - 1e-9


def test_bootstrap_intervals_cover_the_mean_and_are_seeded():
    u = torch.randn(40, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = utility_table(u, betas=[1.0], transforms=["raw", "srs"], seed=3)
    b = utility_table(u, betas=[1.0], transforms=["raw", "srs"], seed=3)
    assert a == b
    for row in a:
        assert row["utility_ci_low"] < row["utility"] < row["utility_ci_high"]
    assert a[1]["utility_vs_raw_ci_low"] <= a[1]["utility_vs_raw"] <= a[1]["utility_vs_raw_ci_high"]


def test_evaluate_module_dataset_and_plot(tmp_path):
    import datasets

    from hf_stackshape.evaluation import load_metric

    rewards = [[0.1, 0.4, 0.3], [1.0, -1.0, 0.5], [0.0, 0.2, 0.9]]
    gold = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    metric = load_metric("stackelberg_utility")
    out = metric.compute(rewards=rewards, gold_rewards=gold, betas=[2.0, 0.5], transforms=["raw", "srs", "hard"])
    direct = utility_table(rewards, betas=[2.0, 0.5], transforms=["raw", "srs", "hard"], gold_rewards=gold)
    assert out["utility"]["srs"] == [_row(direct, "srs", 2.0)["utility"], _row(direct, "srs", 0.5)["utility"]]
    assert out["gold_utility"]["hard"][1] == _row(direct, "hard", 0.5)["gold_utility"]
    assert all("per_prompt" not in row for row in out["table"])
    # The calibrator's output dataset works as is (prompt, responses, rewards, threshold), gold as a second column.
    ds = datasets.Dataset.from_dict(
        {"prompt": ["a", "b", "c"], "responses": [["x"] * 3] * 3, "rewards": rewards, "threshold": [0.0] * 3,
         "gold": gold}
    )
    from_ds = utility_from_dataset(ds, betas=[2.0, 0.5], gold_column="gold", transforms=["raw", "srs", "hard"])
    assert from_ds == direct
    # A gold column scored from the responses themselves.
    scored = score_samples(ds.remove_columns("gold"), CallableReward(lambda p, r: float(len(p + r))), column="gold")
    assert scored["gold"] == [[2.0] * 3] * 3 and scored.column_names[-1] == "gold"
    with pytest.raises(ValueError, match="no 'nope' column"):
        utility_from_dataset(ds, betas=[1.0], rewards_column="nope")
    path = plot_utility(direct, tmp_path / "utility.png", title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"betas": []}, "betas"),
        ({"betas": [0.0]}, "beta"),
        ({"betas": [1.0], "transforms": ["bogus"]}, "transform"),
        ({"betas": [1.0], "gold_rewards": [[1.0]]}, "gold_rewards"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utility_table([[0.0, 1.0]], **kwargs)
    with pytest.raises(ValueError, match="no samples"):
        utility_table([[0.0], []], betas=[1.0])
