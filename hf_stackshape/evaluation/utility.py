"""The designer's utility ``E_rho[u]`` under the follower's reweighting, computed exactly on N scored samples.

Wang et al. (2026, arXiv 2602.02572) cast reward design as a Stackelberg game: the leader picks a reward ``r``
bounded in ``[0, B]``, the follower (the LLM) answers with ``rho_r ∝ pi_ref exp(r / beta)``, and the leader is
paid ``U(r) = E_{rho_r}[r_U]``. Given ``N`` samples of ``pi_ref`` per prompt with their rewards (the
:class:`~hf_stackshape.calibration.ThresholdCalibrator`'s output dataset as is: columns ``prompt``,
``responses``, ``rewards``, ``threshold``), the follower's policy restricted to the samples is
``rho_i = softmax(r_i / beta)`` (:func:`hf_stackshape.bon.follower_weights`, soft best-of-N), so ``U`` is an
exact finite sum: no decoding, no sampling noise. This module computes it for each reward transform (raw,
SRS, the hard threshold, the paper's baselines) at each ``beta``, on the guiding reward and on an optional
gold reward, with bootstrap confidence intervals over prompts, and plots it against ``1/beta`` like the
paper's Figure 2.

On the samples the theorem is exact: when ``B_eff >= max u - min u`` and ``m*`` is solved with the
uncapped ``gamma = exp(B_eff / beta)`` (the default :data:`~hf_stackshape.bon.BON_SAFEGUARDS`), the hard
threshold's utility equals ``m*`` and is never below the raw reward's (a shifted raw reward is one of the
rewards bounded in ``[0, B_eff]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..bon import BON_SAFEGUARDS, follower_weights, sample_threshold, shape_samples
from ..core.shaping import ThresholdSafeguards, get_safeguards, get_transform
from .stats import bootstrap_ci, paired_bootstrap_ci

__all__ = [
    "UTILITY_TRANSFORMS",
    "follower_utility",
    "rewards_matrix",
    "utility_table",
    "utility_from_dataset",
    "score_samples",
    "plot_utility",
]

#: Rewards compared by default: raw (vanilla), SRS, the theorem's hard threshold and the paper's baselines.
UTILITY_TRANSFORMS = ("raw", "srs", "hard", "minmax", "meanstd", "meansoft")


def follower_utility(
    shaped: torch.Tensor,
    beta: float,
    utilities: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``E_rho[u]`` per prompt, with ``rho_i ∝ exp(shaped_i / beta)`` over the prompt's samples.

    Args:
        shaped (`torch.Tensor` of shape `(P, N)`): the reward the follower optimises (any transform).
        beta (`float`): the follower's KL strength (``math.inf``: the base policy, a plain mean).
        utilities (`torch.Tensor` of shape `(P, N)`): what the leader is paid per sample (``r_U`` or a gold reward).
        mask (`torch.BoolTensor` of shape `(P, N)`, *optional*): ``False`` marks padding of ragged groups.

    Returns:
        `torch.Tensor` of shape `(P,)`, float64.

    Examples:

    ```python
    >>> import torch
    >>> from hf_stackshape.evaluation.utility import follower_utility
    >>> u = torch.tensor([[0.0, 1.0]])
    >>> round(follower_utility(u, 1.0, u).item(), 4)  # e / (1 + e)
    0.7311

    ```
    """
    utilities = torch.as_tensor(utilities).double()
    if utilities.shape != torch.as_tensor(shaped).shape:
        raise ValueError(
            f"`utilities` has shape {tuple(utilities.shape)} but `shaped` has {tuple(torch.as_tensor(shaped).shape)}."
        )
    weights = follower_weights(shaped, beta, mask)
    return (weights * torch.where(weights > 0, utilities, torch.zeros_like(utilities))).sum(dim=-1)


def rewards_matrix(rows: Sequence[Sequence[float]], what: str = "rewards"):
    """``(P, N_max)`` float64 rewards and their mask from one list of rewards per prompt (ragged allowed)."""
    rows = [list(map(float, r)) for r in rows]
    if not rows:
        raise ValueError(f"`{what}` is empty: give one list of sample rewards per prompt.")
    empty = [i for i, r in enumerate(rows) if not r]
    if empty:
        raise ValueError(f"`{what}` rows {empty[:5]} have no samples; every prompt needs N >= 1 scored samples.")
    width = max(len(r) for r in rows)
    values = torch.tensor([r + [0.0] * (width - len(r)) for r in rows], dtype=torch.float64)
    mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    if not torch.isfinite(values[mask]).all():
        raise ValueError(f"`{what}` contain NaN or infinite values; every sample reward must be a finite number.")
    return values, mask


def _betas(betas: Sequence[float]) -> List[float]:
    out = []
    for b in betas:
        if not (isinstance(b, (int, float)) and b > 0 and not math.isnan(b)):
            raise ValueError(f"Every beta must be a number > 0 (math.inf for the base policy), got {b!r}.")
        out.append(float(b))
    if not out:
        raise ValueError("`betas` is empty; give at least one beta, e.g. betas=[2.0, 1.0, 0.5].")
    return out


def utility_table(
    rewards: Union[torch.Tensor, Sequence[Sequence[float]]],
    betas: Sequence[float],
    transforms: Sequence[str] = UTILITY_TRANSFORMS,
    gold_rewards: Optional[Union[torch.Tensor, Sequence[Sequence[float]]]] = None,
    bound: float = 15.0,
    alpha: float = 1.0,
    safeguards: Union[str, ThresholdSafeguards, None] = BON_SAFEGUARDS,
    n_resamples: int = 2000,
    seed: int = 0,
) -> List[Dict[str, object]]:
    """The leader's exact utility for each transform at each ``beta``, with bootstrap CIs over prompts.

    For each ``beta``: ``m*`` per prompt from :func:`~hf_stackshape.core.shaping.solve_threshold` (same ``bound``,
    ``safeguards``), the transform's shaped rewards, the follower's weights ``softmax(shaped / beta)``, and
    ``E_rho[u]`` for ``u`` the guiding rewards (``utility``) and the gold rewards (``gold_utility``).

    Args:
        rewards: ``(P, N)`` tensor or one list of sample rewards per prompt (the guiding reward ``r_U``).
        betas (`list[float]`): the follower's KL strengths (``1/beta`` is the guidance weight).
        transforms (`list[str]`, *optional*): reward transforms by name (:func:`~hf_stackshape.core.shaping.get_transform`).
        gold_rewards (*optional*): the same shape, another reward of the same samples (e.g. a gold RM or a judge).
        bound, alpha, safeguards: the shaping settings (defaults as :class:`~hf_stackshape.bon.StackelbergBestOfN`).
        n_resamples, seed: bootstrap settings (:func:`~hf_stackshape.evaluation.stats.bootstrap_ci`).

    Returns:
        One row per (transform, beta): ``transform``, ``beta``, ``weight`` (``1/beta``), ``utility`` with
        ``utility_ci_low`` / ``utility_ci_high``, ``utility_vs_raw`` with its paired CI (``utility_vs_raw_ci_low`` /
        ``_ci_high``, transforms other than raw, when raw is among ``transforms``), the same keys with ``gold_``
        in front when ``gold_rewards`` is given, ``n`` (prompts) and ``per_prompt`` (the utilities of each prompt).

    Examples:

    ```python
    >>> from hf_stackshape.evaluation.utility import utility_table
    >>> rows = utility_table([[0.0, 1.0, 2.0], [1.0, 1.5, 0.5]], betas=[1.0], transforms=["raw", "hard"])
    >>> [(r["transform"], round(r["utility"], 3)) for r in rows]  # doctest: +SKIP
    ```
    """
    u, mask = rewards_matrix(rewards) if not torch.is_tensor(rewards) else (rewards.double(), None)
    if u.ndim != 2:
        raise ValueError(f"`rewards` must have shape (prompts, N), got {tuple(u.shape)}.")
    gold = None
    if gold_rewards is not None:
        gold, gold_mask = rewards_matrix(gold_rewards, "gold_rewards") if not torch.is_tensor(gold_rewards) else (
            gold_rewards.double(), None)
        if gold.shape != u.shape or (mask is not None and gold_mask is not None and not torch.equal(mask, gold_mask)):
            raise ValueError(
                f"`gold_rewards` must score the same samples as `rewards`: shapes {tuple(gold.shape)} vs {tuple(u.shape)}."
            )
    guards = get_safeguards(safeguards)
    names = [get_transform(t).name for t in transforms]
    if not names:
        raise ValueError("`transforms` is empty; name at least one, e.g. ['raw', 'srs', 'hard'].")
    table: List[Dict[str, object]] = []
    for beta in _betas(betas):
        threshold = sample_threshold(u, beta, bound, guards, mask)
        per_prompt: Dict[str, Dict[str, List[float]]] = {}
        for name in names:
            transform = get_transform(name, bound=bound, alpha=alpha, beta=1.0 if math.isinf(beta) else beta,
                                      safeguards=guards)
            shaped = shape_samples(u, transform, threshold, mask)
            values = {"utility": follower_utility(shaped, beta, u, mask).tolist()}
            if gold is not None:
                values["gold_utility"] = follower_utility(shaped, beta, gold, mask).tolist()
            per_prompt[name] = values
        for name in names:
            row: Dict[str, object] = {"transform": name, "beta": beta, "weight": 0.0 if math.isinf(beta) else 1.0 / beta}
            for key, values in per_prompt[name].items():
                ci = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
                row.update({key: ci["mean"], f"{key}_ci_low": ci["ci_low"], f"{key}_ci_high": ci["ci_high"]})
                if name != "raw" and "raw" in per_prompt:
                    diff = paired_bootstrap_ci(values, per_prompt["raw"][key], n_resamples=n_resamples, seed=seed)
                    row.update({f"{key}_vs_raw": diff["mean"], f"{key}_vs_raw_ci_low": diff["ci_low"],
                                f"{key}_vs_raw_ci_high": diff["ci_high"]})
            row["n"] = int(u.shape[0])
            row["per_prompt"] = per_prompt[name]
            table.append(row)
    return table


def utility_from_dataset(dataset, betas: Sequence[float], rewards_column: str = "rewards",
                         gold_column: Optional[str] = None, **kwargs) -> List[Dict[str, object]]:
    """:func:`utility_table` on a dataset with one list of sample rewards per row (the calibrator's output).

    Args:
        dataset: a `datasets.Dataset` (or anything indexable by column name), e.g. ``ThresholdCalibrator.calibrate``'s.
        betas (`list[float]`): the follower's KL strengths.
        rewards_column (`str`, *optional*, defaults to `"rewards"`): the guiding rewards of the N samples.
        gold_column (`str`, *optional*): a second rewards column (e.g. a gold reward of the same responses).
        kwargs: forwarded to :func:`utility_table`.
    """
    columns = list(getattr(dataset, "column_names", None) or dataset.keys())
    for column in [rewards_column] + ([gold_column] if gold_column else []):
        if column not in columns:
            raise ValueError(f"The dataset has no {column!r} column; its columns are {columns}.")
    gold = dataset[gold_column] if gold_column else None
    return utility_table(dataset[rewards_column], betas, gold_rewards=gold, **kwargs)


def score_samples(dataset, reward, column: str = "gold_rewards", prompt_column: str = "prompt",
                  responses_column: str = "responses"):
    """Add ``column``: another reward of each row's ``N`` responses (e.g. a gold reward of the calibrator's samples).

    Scored by :func:`~hf_stackshape.rewards.score_groups`: an :class:`~hf_stackshape.rewards.HFRewardModel` encodes
    each prompt's prefix once (``score_grouped``); any other reward (a callable, ``"vader"`` through :func:`~hf_stackshape.rewards.load_reward`) scores the pairs.

    Examples:

    ```python
    >>> from hf_stackshape.rewards import CallableReward
    >>> calibration = score_samples(calibration, CallableReward(lambda r: len(r)))  # doctest: +SKIP
    >>> utility_from_dataset(calibration, betas=[1.0], gold_column="gold_rewards")  # doctest: +SKIP
    ```
    """
    from ..rewards.adapters import score_groups
    from ..rewards.registry import load_reward

    reward = load_reward(reward)
    prompts, groups = list(dataset[prompt_column]), [list(g) for g in dataset[responses_column]]
    sizes = sorted({len(g) for g in groups})
    if len(sizes) != 1 or sizes[0] < 1:
        raise ValueError(f"Every row needs the same number N >= 1 of responses, got sizes {sizes}.")
    values = score_groups(reward, prompts, groups).tolist()
    if column in dataset.column_names:
        dataset = dataset.remove_columns(column)
    return dataset.add_column(column, values)


def plot_utility(table: Sequence[Dict[str, object]], path, title: str = "") -> Path:
    """The leader's utility against ``1/beta`` per transform, with 95% bootstrap error bars (cf. Figure 2).

    Left panel: utility on the guiding reward; right panel (when the table has it): on the gold reward.
    Written atomically as PNG; returns the path.
    """
    from ..utils._extras import needs

    matplotlib = needs("matplotlib", "The utility figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..utils.plotting import save_figure

    keys = ["utility"] + (["gold_utility"] if any("gold_utility" in r for r in table) else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    transforms = list(dict.fromkeys(r["transform"] for r in table))
    for ax, key in zip(axes[0], keys):
        for name in transforms:
            rows = sorted((r for r in table if r["transform"] == name), key=lambda r: r["weight"])
            xs = [r["weight"] for r in rows]
            ys = [r[key] for r in rows]
            errors = [[y - r[f"{key}_ci_low"] for y, r in zip(ys, rows)], [r[f"{key}_ci_high"] - y for y, r in zip(ys, rows)]]
            ax.errorbar(xs, ys, yerr=errors, marker="o" if name == "raw" else "s", capsize=3, label=name)
        ax.set_xlabel("1/beta (guidance weight)")
        ax.set_ylabel("E_rho[gold reward]" if key == "gold_utility" else "E_rho[guiding reward]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)
