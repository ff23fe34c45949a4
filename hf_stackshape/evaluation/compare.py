"""One comparison of a method with its baseline on the same prompts, with paired intervals.

Wang et al. (2026), section 5, compare each shaped method (SRS-ARGS, SRS-CD, ...) with its vanilla method
(ARGS, Khanov et al. 2024; CD, Mudgal et al. 2023) at the same ``1/beta``: the per-prompt difference of every
metric with its **paired** bootstrap interval (:func:`~hf_stackshape.evaluation.stats.paired_bootstrap_ci`,
much tighter than two separate intervals when both methods vary with the prompt) and the judge's win-tie rate
(:func:`~hf_stackshape.evaluation.scores.win_tie_scores`). ``stackshape sweep``, ``stackshape evaluate`` and
the demo all report this comparison through :func:`compare_to_baseline`.

Examples:

```python
>>> from hf_stackshape.evaluation.compare import compare_to_baseline
>>> cmp = compare_to_baseline({"reward": [1.0, 2.0, 4.0]}, {"reward": [0.0, 2.0, 1.0]}, n_resamples=200)
>>> cmp.differences["reward"]["mean"], cmp.differences["reward"]["n"]
(1.3333333333333333, 3)
>>> sorted(cmp.columns("_vs_vanilla"))
['reward_vs_vanilla', 'reward_vs_vanilla_ci_high', 'reward_vs_vanilla_ci_low']

```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, paired_bootstrap_ci

__all__ = ["Comparison", "compare_to_baseline", "match_by_prompt"]


@dataclass
class Comparison:
    """A method against its baseline on paired prompts.

    Attributes:
        n (`int`): the number of pairs compared.
        differences (`dict[str, dict]`): per metric (in the order given), the paired difference ``method -
            baseline``: ``{"mean", "ci_low", "ci_high", "n"}`` (:func:`~hf_stackshape.evaluation.stats.paired_bootstrap_ci`).
        win_tie (`dict`, *optional*): the judge's verdicts, :func:`~hf_stackshape.evaluation.scores.win_tie_scores`
            of the method (side a) against the baseline (side b); ``None`` without a judge or without pairs.
    """

    n: int
    differences: Dict[str, Dict[str, float]] = field(default_factory=dict)
    win_tie: Optional[Dict[str, object]] = None

    def columns(self, suffix: str) -> Dict[str, float]:
        """Flat table columns, as the sweep's ``results.csv`` / ``results.json`` hold them: ``win_tie<suffix>``
        (when judged) then ``<metric><suffix>``, each followed by ``_ci_low`` and ``_ci_high``."""
        out: Dict[str, float] = {}
        if self.win_tie is not None:
            for end in ("", "_ci_low", "_ci_high"):
                out[f"win_tie{suffix}{end}"] = self.win_tie[f"win_tie{end}"]
        for metric, diff in self.differences.items():
            out[f"{metric}{suffix}"] = diff["mean"]
            out[f"{metric}{suffix}_ci_low"] = diff["ci_low"]
            out[f"{metric}{suffix}_ci_high"] = diff["ci_high"]
        return out


def match_by_prompt(prompts: Sequence[str], baseline_prompts: Sequence[str]) -> List[Tuple[int, int]]:
    """Pairs ``(i, j)``: row ``i`` of ``prompts`` with the first baseline row ``j`` that answers the same prompt;
    rows whose prompt the baseline lacks are left out (in the order of ``prompts``)."""
    first: Dict[str, int] = {}
    for j, prompt in enumerate(baseline_prompts):
        first.setdefault(prompt, j)
    return [(i, first[p]) for i, p in enumerate(prompts) if p in first]


def compare_to_baseline(
    values: Mapping[str, Sequence[Optional[float]]],
    baseline_values: Mapping[str, Sequence[Optional[float]]],
    prompts: Optional[Sequence[str]] = None,
    responses: Optional[Sequence[str]] = None,
    baseline_responses: Optional[Sequence[str]] = None,
    judge=None,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Compare a method with its baseline, row ``i`` of each answering the same prompt.

    Args:
        values, baseline_values: per-row metric values of the method and of the baseline, by metric name
            (``{"reward": [...], "gold_reward": [...]}``); every metric of ``values`` must be in
            ``baseline_values``, with as many rows. ``None`` / NaN rows leave their pair out of that metric.
        prompts, responses, baseline_responses (*optional*): the texts, for the judge's win-tie rate.
        judge (*optional*): a :class:`~hf_stackshape.evaluation.judges.Judge` (or what
            :func:`~hf_stackshape.evaluation.judges.load_judge` takes); without one, no win-tie rate.
        confidence, seed, n_resamples: the bootstrap intervals (same seed, same intervals).

    Returns:
        A :class:`Comparison`.
    """
    missing = [name for name in values if name not in baseline_values]
    if missing:
        raise ValueError(
            f"The baseline has no values of {missing}; give both sides the same metrics (baseline has "
            f"{sorted(baseline_values)})."
        )
    differences = {
        name: paired_bootstrap_ci(list(rows), list(baseline_values[name]), n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)
        for name, rows in values.items()
    }
    if values:
        n = len(next(iter(values.values())))
    else:
        n = len(responses) if responses is not None else 0
    win_tie = None
    if judge is not None and n:
        if prompts is None or responses is None or baseline_responses is None:
            raise ValueError("A win-tie rate needs `prompts`, `responses` and `baseline_responses` with the judge.")
        from .scores import win_tie_scores

        win_tie = win_tie_scores(prompts, responses, baseline_responses, judge, confidence=confidence, seed=seed)
    return Comparison(n=n, differences=differences, win_tie=win_tie)
