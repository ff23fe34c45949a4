"""Evaluation of aligned generations, as in Wang et al. (2026), section 5 (after ARGS, Khanov et al. 2024).

* Metrics, shipped as `evaluate` modules inside the package and loadable offline with
  :func:`load_metric`: ``average_reward``, ``diversity``, ``coherence``, ``win_tie``. They follow the
  paper's definitions by default (diversity as in the authors' metrics script; ``definition="ours"`` for our
  variant), and every mean comes with its seeded 95% bootstrap interval (``<metric>_ci_low`` / ``_ci_high``).
* Judges for the win-tie rate: :class:`RewardModelJudge` (a gold reward) and :class:`LLMJudge` (any
  OpenAI-compatible endpoint, the paper's pairwise protocol).
* The same metrics as plain functions (:mod:`.scores`) over the pure math of :mod:`.text_stats`.
* One comparison of a method with its baseline on paired prompts (:func:`compare_to_baseline`: paired
  differences with their bootstrap intervals, win-tie rate), and the grouped report of ``stackshape evaluate``
  (:mod:`.report`).

Examples:

```python
>>> from hf_stackshape.evaluation import load_metric
>>> load_metric("diversity").compute(predictions=["a b c d", "a b a b a b"])["diversity"]  # doctest: +SKIP
```
"""

from __future__ import annotations

from pathlib import Path

from ..utils._lazy import lazy_getattr

#: The packaged `evaluate` modules (folders under ``hf_stackshape/evaluation/metrics/``).
METRICS = ("average_reward", "diversity", "coherence", "win_tie", "stackelberg_utility")

_LAZY = {
    "Judgement": "judges",
    "JudgementList": "judges",
    "Judge": "judges",
    "JudgeError": "judges",
    "RewardModelJudge": "judges",
    "LLMJudge": "judges",
    "parse_scores": "judges",
    "load_judge": "judges",
    "SentenceEmbedder": "embeddings",
    "reward_scores": "scores",
    "diversity_scores": "scores",
    "coherence_scores": "scores",
    "win_tie_scores": "scores",
    "Comparison": "compare",
    "compare_to_baseline": "compare",
}

__all__ = ["METRICS", "metric_path", "load_metric", *_LAZY]


def metric_path(name: str) -> Path:
    """The folder of a packaged metric (what ``evaluate.load`` takes), e.g. ``metric_path("diversity")``."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; the packaged metrics are {', '.join(METRICS)}.")
    folder = Path(__file__).resolve().parent / "metrics" / name
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(f"The metric script {folder / (name + '.py')} is missing; reinstall hf_stackshape.")
    return folder


def load_metric(name: str, **kwargs):
    """Load a packaged metric with ``evaluate.load`` from its local folder: no Hub access, works offline.

    Args:
        name (`str`): one of :data:`METRICS`.
        kwargs: forwarded to ``evaluate.load`` (``config_name="vader"`` picks the reward of
            ``average_reward`` or the judge of ``win_tie``; ``experiment_id``, ``keep_in_memory``...).
    """
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


__getattr__ = lazy_getattr(__name__, _LAZY)
