"""The four evaluation metrics of Wang et al. (2026), section 5, as plain functions on lists of strings.

Each returns a dict with the aggregate, its seeded 95% bootstrap confidence interval over prompts
(``<metric>_ci_low`` / ``<metric>_ci_high``, see :func:`hf_stackshape.evaluation.stats.bootstrap_ci`) and
the per-sample values. The packaged ``evaluate`` modules (``hf_stackshape/evaluation/metrics/<name>/<name>.py``)
and ``stackshape evaluate`` both call these, and these call the pure math of
:mod:`hf_stackshape.evaluation.text_stats`: one implementation of each metric.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ..rewards.registry import load_reward
from . import text_stats
from .embeddings import SentenceEmbedder
from .judges import Judge, load_judge
from .stats import DEFAULT_CONFIDENCE

__all__ = ["reward_scores", "diversity_scores", "coherence_scores", "win_tie_scores"]


def _pair_up(prompts: Sequence[str], responses: Sequence[str], what: str = "responses"):
    if isinstance(prompts, str) or isinstance(responses, str):
        raise ValueError(f"Pass lists of prompts and {what}, not single strings.")
    if len(prompts) != len(responses):
        raise ValueError(f"Got {len(prompts)} prompts but {len(responses)} {what}; they must pair up.")
    return list(prompts), list(responses)


def _summary(name: str, values: List[float], confidence: float, seed: int) -> Dict[str, float]:
    """``{name, name_std, name_ci_low, name_ci_high}`` of per-prompt ``values``."""
    stats = text_stats.summarize(values, confidence=confidence, seed=seed)
    return {
        name: stats["mean"],
        f"{name}_std": stats["std"],
        f"{name}_ci_low": stats["ci_low"],
        f"{name}_ci_high": stats["ci_high"],
    }


def reward_scores(
    prompts: Sequence[str],
    responses: Sequence[str],
    reward,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, object]:
    """Average reward: the reward of each ``prompt + response`` and their mean.

    Args:
        reward: a :class:`~hf_stackshape.rewards.RewardFunction`, a callable, or a name accepted by
            :func:`~hf_stackshape.rewards.load_reward` (``"vader"``, a reward model id or folder).
        confidence (`float`, *optional*, defaults to 0.95), seed (`int`, *optional*, defaults to 0): the
            bootstrap interval over prompts (same seed, same interval).

    Returns:
        ``{"average_reward", "reward_std", "average_reward_ci_low", "average_reward_ci_high", "rewards": [...]}``.
    """
    prompts, responses = _pair_up(prompts, responses)
    rewards = load_reward(reward).score(prompts, responses).tolist() if prompts else []
    out = _summary("average_reward", rewards, confidence, seed)
    out["reward_std"] = out.pop("average_reward_std")
    out["rewards"] = rewards
    return out


def diversity_scores(
    responses: Sequence[str],
    definition: str = "paper",
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, object]:
    """Diversity ``prod_{n=2..4} (1 - rep_n)`` per response and its mean (Wang et al. 2026, section 5).

    Args:
        responses (`list[str]`): the responses, without their prompts.
        definition (`str`, *optional*, defaults to `"paper"`): ``"paper"`` reproduces the authors' metrics
            script (NLTK words, cut at ``"\n\nHuman:"``, ``rep_n = 1 - unique / (total + 1)``); ``"ours"`` is
            the whitespace variant. See :func:`~hf_stackshape.evaluation.text_stats.diversity`.
        confidence (`float`, *optional*, defaults to 0.95), seed (`int`, *optional*, defaults to 0): the
            bootstrap interval over responses.

    Returns:
        ``{"diversity", "diversity_std", "diversity_ci_low", "diversity_ci_high", "diversities": [...],
        "rep_2", "rep_3", "rep_4", "diversity_definition"}`` (the ``rep_n`` are fractions averaged over
        responses; the authors' script prints them in percent).
    """
    if isinstance(responses, str):
        raise ValueError("Pass a list of responses, not a single string.")
    text_stats.check_diversity_definition(definition)
    reps = [text_stats.repetitions(r, text_stats.DIVERSITY_ORDERS, definition) for r in responses]
    values = [text_stats.diversity(r, text_stats.DIVERSITY_ORDERS, definition) for r in responses]
    out: Dict[str, object] = _summary("diversity", values, confidence, seed)
    out["diversities"] = values
    for n in text_stats.DIVERSITY_ORDERS:
        out[f"rep_{n}"] = text_stats.summarize([r[n] for r in reps])["mean"]
    out["diversity_definition"] = definition
    return out


def coherence_scores(
    prompts: Sequence[str],
    responses: Sequence[str],
    embedder: Optional[SentenceEmbedder] = None,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, object]:
    """Coherence: cosine similarity of the sentence embeddings of each prompt and its response.

    Args:
        embedder (`SentenceEmbedder`, *optional*): default the bundled all-MiniLM-L6-v2 (offline).
        confidence (`float`, *optional*, defaults to 0.95), seed (`int`, *optional*, defaults to 0): the
            bootstrap interval over prompts.

    Returns:
        ``{"coherence", "coherence_std", "coherence_ci_low", "coherence_ci_high", "coherences": [...]}``.
    """
    prompts, responses = _pair_up(prompts, responses)
    if embedder is None:
        embedder = SentenceEmbedder()
    values = embedder.similarity(prompts, responses).tolist()
    out: Dict[str, object] = _summary("coherence", values, confidence, seed)
    out["coherences"] = values
    return out


def win_tie_scores(
    prompts: Sequence[str],
    candidates: Sequence[str],
    baselines: Sequence[str],
    judge,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Dict[str, object]:
    """Win-tie rate of ``candidates`` (side a) against ``baselines`` (side b) through ``judge``.

    Args:
        judge: a :class:`~hf_stackshape.evaluation.judges.Judge`, ``"llm"`` (an :class:`LLMJudge` from the
            environment), or a reward for a :class:`RewardModelJudge`.
        confidence (`float`, *optional*, defaults to 0.95), seed (`int`, *optional*, defaults to 0): the
            bootstrap interval of the win-tie rate over comparisons.

    Returns:
        :func:`~hf_stackshape.evaluation.text_stats.win_tie_summary` (``win_tie`` with ``win_tie_ci_low`` /
        ``win_tie_ci_high``) plus ``"parse_failures"`` (replies counted as ties because they did not parse)
        and ``"judgements"`` (one dict per comparison).
    """
    prompts, candidates = _pair_up(prompts, candidates, "candidate answers")
    _, baselines = _pair_up(prompts, baselines, "baseline answers")
    judge = judge if isinstance(judge, Judge) else load_judge(judge)
    judgements = judge.compare(prompts, candidates, baselines)
    out = text_stats.win_tie_summary(judgements.winners, confidence=confidence, seed=seed)
    out["parse_failures"] = sum(1 for j in judgements if j.ok and not j.parsed)
    # Comparisons the judge could not answer: ties under the paper's tally, or dropped (judge's api_error).
    out["api_errors"] = len(judgements.failures) if hasattr(judgements, "failures") else 0
    out["judgements"] = [j.to_dict() for j in judgements]
    return out
