"""Score rows of generations per settings group, and compare each group with a baseline (``stackshape evaluate``).

The steps, each callable on its own:

1. plan: :func:`group_rows` groups rows by their full settings (every column except the id and the texts);
   :func:`baseline_from_group`, :func:`baseline_from_rows` and :func:`baseline_from_column` name the baseline;
2. score: :class:`Scorer` gives each group's per-sample metrics with their seeded 95% bootstrap intervals
   (:func:`score_method_groups`);
3. compare: :func:`compare_groups` pairs each group's rows with the baseline's by prompt and reports the paired
   difference of every metric and the judge's win-tie rate (:func:`~hf_stackshape.evaluation.compare.compare_to_baseline`,
   the comparison of Wang et al., 2026, section 5).

:func:`evaluate_groups` runs them in order and returns ``(report_groups, per_sample_rows, baseline_info)``.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from transformers.utils import logging

from .compare import compare_to_baseline, match_by_prompt
from .stats import DEFAULT_CONFIDENCE

logger = logging.get_logger(__name__)

__all__ = [
    "Columns", "Baseline", "Scorer", "PER_SAMPLE", "row_settings", "group_rows", "baseline_from_group",
    "baseline_from_rows", "baseline_from_column", "score_method_groups", "compare_groups", "evaluate_groups", "format_report",
]

#: Per-sample metric name -> (key of the per-sample list, key of the mean) in :mod:`hf_stackshape.evaluation.scores`.
PER_SAMPLE = {"reward": ("rewards", "average_reward"), "diversity": ("diversities", "diversity"), "coherence": ("coherences", "coherence")}


@dataclass(frozen=True)
class Columns:
    """Which columns of a row hold the prompt, the response, the method name and (optionally) a baseline answer."""

    prompt: str = "prompt"
    response: str = "response"
    method: Optional[str] = "method"
    baseline: Optional[str] = None


@dataclass
class Baseline:
    """What every group is compared with: a group (``key``), rows of a file (``rows``), or a column (``column``)."""

    label: str
    settings: Dict[str, Any]
    files: List[str]
    rows: Optional[List[dict]] = None
    key: Optional[str] = None
    column: Optional[str] = None

    def info(self) -> Dict[str, Any]:
        return {"label": self.label, "settings": self.settings, "files": self.files}


# ----------------------------------------------------------------------------------------------- plan


def row_settings(row: dict, columns: Columns) -> Dict[str, Any]:
    """What made a row: every column but the id, the texts and the scores a previous evaluation added."""
    skip = {"id", columns.prompt, columns.response, columns.baseline, "judgement", "group", *PER_SAMPLE}
    settings = {k: v for k, v in row.items() if k not in skip}
    if columns.method and columns.method != "method" and columns.method in settings:
        settings["method"] = settings.pop(columns.method)
    return settings


def _key(settings: Dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _labels(groups: "OrderedDict[str, Dict[str, Any]]") -> Dict[str, str]:
    """A short name per group: its method, plus the settings that differ between groups with that method."""
    labels = {}
    for key, group in groups.items():
        settings = group["settings"]
        method = str(settings.get("method", "all"))
        peers = [g["settings"] for g in groups.values() if str(g["settings"].get("method", "all")) == method]
        differing = sorted(
            {k for other in peers for k in set(other) | set(settings) if other.get(k) != settings.get(k)} - {"method"}
        )
        labels[key] = method + (" (" + ", ".join(f"{k}={settings.get(k)}" for k in differing) + ")" if differing else "")
    return labels


def group_rows(rows: List[dict], columns: Columns = Columns()) -> "OrderedDict[str, Dict[str, Any]]":
    """Rows grouped by settings, in order of first appearance: ``{key: {"settings", "rows", "files", "label"}}``
    (``rows`` are indices into ``rows``; each row carries its source file as ``_file``)."""
    groups: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
    for i, row in enumerate(rows):
        settings = row_settings(row, columns)
        group = groups.setdefault(_key(settings), {"settings": settings, "rows": [], "files": []})
        group["rows"].append(i)
        if row["_file"] not in group["files"]:
            group["files"].append(row["_file"])
    for key, label in _labels(groups).items():
        groups[key]["label"] = label
        distinct = len({rows[i][columns.prompt] for i in groups[key]["rows"]})
        if distinct < len(groups[key]["rows"]):
            logger.warning(
                "Group %r has %d rows for %d distinct prompts (files %s): the same settings ran a prompt twice, so "
                "its intervals count that prompt twice.", label, len(groups[key]["rows"]), distinct, groups[key]["files"],
            )
    return groups


def baseline_from_group(rows: List[dict], groups, method: str, weight: Optional[float] = None) -> Baseline:
    """The group of ``method`` (at ``weight``, when it ran at several) as every other group's baseline."""
    matches = [
        key for key, g in groups.items()
        if str(g["settings"].get("method")) == method and (weight is None or g["settings"].get("weight") == weight)
    ]
    if not matches:
        methods = sorted({g["label"] for g in groups.values()})
        raise ValueError(f"--baseline_method {method!r} has no rows; the groups are {methods}.")
    if len(matches) > 1:
        found = [groups[k]["label"] for k in matches]
        raise ValueError(
            f"--baseline_method {method!r} matches {len(matches)} groups ({found}); pick one with "
            "--baseline_weight, or pass its rows as --baseline_file."
        )
    group = groups[matches[0]]
    return Baseline(group["label"], group["settings"], group["files"], rows=[rows[i] for i in group["rows"]],
                    key=matches[0])


def baseline_from_rows(rows: List[dict], source: str, columns: Columns = Columns()) -> Baseline:
    """The rows of a baseline file (one setting: rows of several would give a prompt several baseline answers)."""
    seen: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
    for row in rows:
        settings = row_settings(row, columns)
        seen.setdefault(_key(settings), settings)
    if len(seen) >= 2:
        variants = list(seen.values())
        differing = sorted({k for a in variants for b in variants for k in set(a) | set(b) if a.get(k) != b.get(k)})
        shown = "; ".join(", ".join(f"{k}={v.get(k)!r}" for k in differing) for v in variants[:5])
        raise ValueError(
            f"--baseline_file {source} holds rows of {len(variants)} settings ({shown}), so a prompt has "
            "several baseline answers. Keep one setting in the file, or pass the file with --generations and pick the "
            "baseline with --baseline_method (and --baseline_weight)."
        )
    return Baseline("baseline", row_settings(rows[0], columns), [source], rows=rows)


def baseline_from_column(column: str, files: Sequence[str]) -> Baseline:
    """A baseline answer on each row, in ``column`` (judged only: it has no scores)."""
    return Baseline(f"column {column!r}", {}, list(files), column=column)


# ----------------------------------------------------------------------------------------------- score


class Scorer:
    """Per-sample scores of lists of (prompt, response), with their means and bootstrap CIs.

    Args:
        reward (*optional*): the ``reward`` metric's reward (any :class:`~hf_stackshape.rewards.RewardFunction`).
        diversity (`str`, *optional*): the diversity definition (``"paper"`` or ``"ours"``); ``None`` skips it.
        embedder (*optional*): a :class:`~hf_stackshape.evaluation.embeddings.SentenceEmbedder` for coherence.
    """

    def __init__(self, reward=None, diversity: Optional[str] = None, embedder=None,
                 confidence: float = DEFAULT_CONFIDENCE, seed: int = 0):
        self.reward, self.diversity, self.embedder = reward, diversity, embedder
        self.confidence, self.seed = confidence, seed

    def score(self, prompts: List[str], responses: List[str]) -> Tuple[Dict[str, Any], Dict[str, List[float]]]:
        """``(summary, per_sample)``: the means with their CIs (and ``count``), and ``{metric: values}``."""
        from . import scores

        options = dict(confidence=self.confidence, seed=self.seed)
        summary: Dict[str, Any] = {"count": len(prompts)}
        per_sample: Dict[str, List[float]] = {}
        parts = []
        if self.reward is not None:
            parts.append(("reward", scores.reward_scores(prompts, responses, self.reward, **options)))
        if self.diversity is not None:
            parts.append(("diversity", scores.diversity_scores(responses, definition=self.diversity, **options)))
        if self.embedder is not None:
            parts.append(("coherence", scores.coherence_scores(prompts, responses, self.embedder, **options)))
        for name, out in parts:
            per_sample[name] = out.pop(PER_SAMPLE[name][0])
            summary.update(out)
        return summary, per_sample


def score_method_groups(rows: List[dict], groups, scorer: Scorer, samples: List[dict], columns: Columns = Columns()):
    """Score every group; returns ``(results by label, per-sample scores by group key)`` and writes each row's
    scores and group label into ``samples``."""
    results: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
    per_group_scores: Dict[str, Dict[str, List[float]]] = {}
    for key, group in groups.items():
        idx = group["rows"]
        out, per_sample = scorer.score([rows[i][columns.prompt] for i in idx], [rows[i][columns.response] for i in idx])
        per_group_scores[key] = per_sample
        for name, values in per_sample.items():
            for i, value in zip(idx, values):
                samples[i][name] = value
        for i in idx:
            samples[i]["group"] = group["label"]
        results[group["label"]] = {"settings": group["settings"], "files": group["files"], **out}
    return results, per_group_scores


# ----------------------------------------------------------------------------------------------- compare


def compare_groups(rows: List[dict], groups, results, per_group_scores, samples: List[dict], baseline: Baseline,
                   baseline_scores: Dict[str, List[float]], judge=None, columns: Columns = Columns(),
                   confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> None:
    """Add each group's comparison with ``baseline`` to ``results`` (``vs_baseline``: the paired differences;
    ``win_tie``: the judge's rate, its failed rows as indices of ``rows``) and each verdict to ``samples``."""
    for key, group in groups.items():
        if key == baseline.key:
            continue
        idx = group["rows"]
        out = results[group["label"]]
        prompts = [rows[i][columns.prompt] for i in idx]
        if baseline.column:
            pairs = [(k, k) for k in range(len(idx))]
            answers = [rows[i][baseline.column] for i in idx]
            values, base_values = {}, {}
        else:
            pairs = match_by_prompt(prompts, [r[columns.prompt] for r in baseline.rows])
            answers = [baseline.rows[j][columns.response] for _, j in pairs]
            values = {PER_SAMPLE[n][1]: [v[k] for k, _ in pairs] for n, v in per_group_scores[key].items()}
            base_values = {PER_SAMPLE[n][1]: [baseline_scores[n][j] for _, j in pairs] for n in per_group_scores[key]}
        comparison = compare_to_baseline(
            values, base_values, prompts=[prompts[k] for k, _ in pairs],
            responses=[rows[idx[k]][columns.response] for k, _ in pairs], baseline_responses=answers,
            judge=judge, confidence=confidence, seed=seed,
        )
        if not baseline.column:
            out["vs_baseline"] = {"baseline": baseline.label, "prompts": len(pairs), **comparison.differences}
        if not pairs:
            logger.warning("Group %r: no row has a baseline answer for its prompt; no comparison.", group["label"])
            continue
        if comparison.win_tie is not None:
            w = comparison.win_tie
            judgements = w.pop("judgements")
            w["failed_indices"] = [idx[pairs[j][0]] for j in w["failed_indices"]]  # rows of the input
            out["win_tie"] = w
            for (k, _), j in zip(pairs, judgements):
                samples[idx[k]]["judgement"] = j


def evaluate_groups(rows: List[dict], groups, scorer: Scorer, baseline: Optional[Baseline] = None, judge=None,
                    judge_label: Optional[str] = None, columns: Columns = Columns(),
                    confidence: float = DEFAULT_CONFIDENCE, seed: int = 0):
    """Score ``groups`` (:func:`group_rows`) and compare them with ``baseline``; returns ``(report_groups,
    per_sample_rows, baseline_info)``. A baseline read from a file is scored first, with the same ``scorer``."""
    samples = [{k: v for k, v in row.items() if k != "_file"} for row in rows]
    info: Dict[str, Any] = baseline.info() if baseline is not None else {}
    baseline_scores: Dict[str, List[float]] = {}
    if baseline is not None and baseline.key is None and baseline.rows is not None:
        b_prompts = [r[columns.prompt] for r in baseline.rows]
        info["metrics"], baseline_scores = scorer.score(b_prompts, [r[columns.response] for r in baseline.rows])
    if judge is not None:
        info["judge"] = judge_label
    results, per_group_scores = score_method_groups(rows, groups, scorer, samples, columns)
    if baseline is not None and baseline.key is not None:
        baseline_scores = per_group_scores[baseline.key]
        info["metrics"] = {k: v for k, v in results[groups[baseline.key]["label"]].items() if k not in ("settings", "files")}
    if baseline is not None:
        compare_groups(rows, groups, results, per_group_scores, samples, baseline, baseline_scores, judge, columns,
                       confidence, seed)
    return results, samples, info


# ----------------------------------------------------------------------------------------------- report


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _ci(mean, low, high) -> str:
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def format_report(results: Dict[str, Dict[str, Any]], info: Dict[str, Any]) -> str:
    """A plain-text table: each group's metrics with their 95% CIs, and its difference to the baseline."""
    lines = []
    if info:
        lines.append(f"baseline: {info['label']} ({', '.join(info['files'])})")
        if "judge" in info:
            lines.append(f"judge:    {info['judge']}")
    for label, out in results.items():
        lines.append(f"{label}: {out['count']} rows from {', '.join(out['files'])}")
        for metric in ("average_reward", "diversity", "coherence"):
            if metric in out:
                line = f"  {metric:<15}{_ci(out[metric], out.get(metric + '_ci_low'), out.get(metric + '_ci_high'))}"
                diff = out.get("vs_baseline", {}).get(metric)
                if diff:
                    line += f"   vs baseline {_ci(diff['mean'], diff['ci_low'], diff['ci_high'])} (paired, n={diff['n']})"
                lines.append(line)
        if "win_tie" in out:
            w = out["win_tie"]
            lines.append(
                f"  {'win_tie':<15}{_ci(w['win_tie'], w.get('win_tie_ci_low'), w.get('win_tie_ci_high'))}   "
                f"({w['wins']} wins, {w['ties']} ties, {w['losses']} losses of {w['total']})"
            )
    return "\n".join(lines)
