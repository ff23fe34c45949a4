"""A judge decided by a gold reward: cheap, offline and deterministic (the demo's and the sweep's judge)."""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

from ...rewards.adapters import RewardFunction
from ...rewards.registry import load_reward
from .base import Judge, Judgement, JudgementList, winner_of

__all__ = ["RewardModelJudge"]


class RewardModelJudge(Judge):
    """Judge two answers by a gold reward: the higher reward wins, a tie within ``tolerance``.

    Args:
        reward (`RewardFunction`, `str` or callable):
            The gold reward: a :class:`~hf_stackshape.rewards.RewardFunction`, a name for
            :func:`~hf_stackshape.rewards.load_reward` (``"vader"``, a reward model id...), or a callable.
        tolerance (`float`, *optional*, defaults to 0.0): ``|r(a) - r(b)| <= tolerance`` is a tie.

    Examples:

    ```python
    >>> from hf_stackshape.evaluation import RewardModelJudge
    >>> judge = RewardModelJudge(lambda response: len(response), tolerance=1)
    >>> [j.winner for j in judge.compare(["q", "q"], ["long answer", "ab"], ["short", "abc"])]
    ['a', 'tie']
    ```
    """

    def __init__(self, reward, tolerance: float = 0.0):
        tolerance = float(tolerance)
        if not math.isfinite(tolerance) or tolerance < 0:
            raise ValueError(f"`tolerance` must be a finite number >= 0, got {tolerance!r}.")
        self.reward: RewardFunction = load_reward(reward)
        self.tolerance = tolerance
        # Sweeps compare the same answers many times (the base policy against every cell): score each
        # (prompt, answer) pair once.
        self._scores: Dict[Tuple[str, str], float] = {}

    def _rewards(self, prompts: List[str], answers: List[str]) -> List[float]:
        todo = list(dict.fromkeys(pair for pair in zip(prompts, answers) if pair not in self._scores))
        if todo:
            values = self.reward.score([p for p, _ in todo], [a for _, a in todo]).tolist()
            self._scores.update(zip(todo, values))
        return [self._scores[pair] for pair in zip(prompts, answers)]

    def compare(self, prompts, answers_a, answers_b) -> JudgementList:
        prompts, answers_a, answers_b = self._check(prompts, answers_a, answers_b)
        rewards_a = self._rewards(prompts, answers_a)
        rewards_b = self._rewards(prompts, answers_b)
        return JudgementList(
            Judgement(winner=winner_of(ra, rb, self.tolerance), score_a=ra, score_b=rb, raw=None)
            for ra, rb in zip(rewards_a, rewards_b)
        )
