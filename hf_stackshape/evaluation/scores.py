"""The four evaluation metrics of Wang et al. (2026), section 5, as plain functions on lists of strings.

Each returns a dict with the aggregate and the per-sample values. The packaged ``evaluate`` modules
(``hf_stackshape/evaluation/metrics/<name>/<name>.py``) and ``stackshape evaluate`` both call these, and
these call the pure math of :mod:`hf_stackshape.evaluation.text_stats`: one implementation of each metric.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

from ..rewards import load_reward
from . import text_stats
from .embeddings import SentenceEmbedder
from .judges import Judge, load_judge

__all__ = ["reward_scores", "diversity_scores", "coherence_scores", "win_tie_scores"]


def _pair_up(prompts: Sequence[str], responses: Sequence[str], what: str = "responses"):
    if isinstance(prompts, str) or isinstance(responses, str):
        raise ValueError(f"Pass lists of prompts and {what}, not single strings.")
    if len(prompts) != len(responses):
        raise ValueError(f"Got {len(prompts)} prompts but {len(responses)} {what}; they must pair up.")
    return list(prompts), list(responses)


def reward_scores(prompts: Sequence[str], responses: Sequence[str], reward) -> Dict[str, object]:
    """Average reward: the reward of each ``prompt + response`` and their mean.

    Args:
        reward: a :class:`~hf_stackshape.rewards.RewardFunction`, a callable, or a name accepted by
            :func:`~hf_stackshape.rewards.load_reward` (``"vader"``, a reward model id or folder).

    Returns:
        ``{"average_reward", "reward_std", "rewards": [...]}``.
    """
    prompts, responses = _pair_up(prompts, responses)
    rewards = load_reward(reward).score(prompts, responses).tolist() if prompts else []
    stats = text_stats.summarize(rewards)
    return {"average_reward": stats["mean"], "reward_std": stats["std"], "rewards": rewards}


def diversity_scores(responses: Sequence[str]) -> Dict[str, object]:
    """Diversity ``prod_{n=2..4} (1 - rep_n)`` per response (whitespace words) and its mean.

    Returns:
        ``{"diversity", "diversity_std", "diversities": [...], "rep_2", "rep_3", "rep_4"}`` (the ``rep_n``
        are averaged over responses; see :func:`~hf_stackshape.evaluation.text_stats.diversity` for the
        convention on responses shorter than ``n`` words).
    """
    if isinstance(responses, str):
        raise ValueError("Pass a list of responses, not a single string.")
    values = text_stats.diversity_batch(responses)
    out: Dict[str, object] = {}
    stats = text_stats.summarize(values)
    out["diversity"], out["diversity_std"], out["diversities"] = stats["mean"], stats["std"], values
    for n in text_stats.DIVERSITY_ORDERS:
        reps = [text_stats.ngram_repetition(text_stats.whitespace_tokens(r), n) for r in responses]
        out[f"rep_{n}"] = text_stats.summarize(reps)["mean"]
    return out


def coherence_scores(
    prompts: Sequence[str], responses: Sequence[str], embedder: Optional[SentenceEmbedder] = None
) -> Dict[str, object]:
    """Coherence: cosine similarity of the sentence embeddings of each prompt and its response.

    Args:
        embedder (`SentenceEmbedder`, *optional*): default the bundled all-MiniLM-L6-v2 (offline).

    Returns:
        ``{"coherence", "coherence_std", "coherences": [...]}``.
    """
    prompts, responses = _pair_up(prompts, responses)
    if embedder is None:
        embedder = SentenceEmbedder()
    values = embedder.similarity(prompts, responses).tolist()
    stats = text_stats.summarize(values)
    return {"coherence": stats["mean"], "coherence_std": stats["std"], "coherences": values}


def win_tie_scores(
    prompts: Sequence[str], candidates: Sequence[str], baselines: Sequence[str], judge
) -> Dict[str, object]:
    """Win-tie rate of ``candidates`` (side a) against ``baselines`` (side b) through ``judge``.

    Args:
        judge: a :class:`~hf_stackshape.evaluation.judges.Judge`, ``"llm"`` (an :class:`LLMJudge` from the
            environment), or a reward for a :class:`RewardModelJudge`.

    Returns:
        :func:`~hf_stackshape.evaluation.text_stats.win_tie_summary` plus ``"parse_failures"`` (replies
        counted as ties because they did not parse) and ``"judgements"`` (one dict per comparison).
    """
    prompts, candidates = _pair_up(prompts, candidates, "candidate answers")
    _, baselines = _pair_up(prompts, baselines, "baseline answers")
    judge = judge if isinstance(judge, Judge) else load_judge(judge)
    judgements = judge.compare(prompts, candidates, baselines)
    out = text_stats.win_tie_summary(judgements.winners)
    out["parse_failures"] = sum(1 for j in judgements if j.ok and not j.parsed)
    out["judgements"] = [j.to_dict() for j in judgements]
    return out
