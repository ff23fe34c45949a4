"""What every judge returns: one :class:`Judgement` per comparison, in a :class:`JudgementList`.

A comparison pits answer ``a`` (the candidate, e.g. SRS) against answer ``b`` (the baseline, e.g. vanilla
ARGS) on one prompt; the win-tie rate of Wang et al. (2026), section 5, is ``(wins + ties) / total`` over
the winners (:func:`hf_stackshape.evaluation.text_stats.win_tie_summary`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["Judgement", "JudgementList", "Judge", "JudgeError", "WINNERS"]

WINNERS = ("a", "b", "tie")


@dataclass
class Judgement:
    """The verdict on one comparison of answer ``a`` (candidate) with answer ``b`` (baseline).

    Attributes:
        winner: ``"a"``, ``"b"`` or ``"tie"``; for a comparison the judge could not answer (``error`` set),
            ``"tie"`` under the paper's tally (``api_error="tie"``) or ``None`` when errors are dropped; ``None``
            without an error when the reply parsed but decided nothing (NaN scores under the authors' parser),
            which the tally leaves out as theirs does.
        score_a, score_b: the scores given to ``a`` and ``b`` (rewards for a reward-model judge, 1-10 for
            an LLM judge); ``None`` when the judge's reply did not parse or the call failed.
        raw: the judge's raw output (the reply text of an LLM judge).
        parsed: ``False`` when the reply did not hold two scores on its first line (then ``winner="tie"``).
        swapped: ``True`` when ``b`` was shown to the judge first.
        error: why the judge could not answer (``None`` when it did).
    """

    winner: Optional[str]
    score_a: Optional[float] = None
    score_b: Optional[float] = None
    raw: Optional[str] = None
    parsed: bool = True
    swapped: bool = False
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether the judge answered (a parse failure is an answer: a tie; so is a parsed reply that decides
        nothing, ``winner=None``, e.g. NaN scores under the authors' parser)."""
        return self.error is None and (self.winner in WINNERS or (self.winner is None and self.parsed and self.raw is not None))

    def to_dict(self) -> dict:
        return asdict(self)


class JudgementList(list):
    """A list of :class:`Judgement` (one per comparison, in input order) that also lists the failures."""

    @property
    def failures(self) -> List[Tuple[int, str]]:
        """``(index, error)`` of every comparison the judge could not answer (API errors)."""
        return [(i, j.error or "no verdict") for i, j in enumerate(self) if not j.ok]

    @property
    def winners(self) -> List[Optional[str]]:
        """One winner per comparison for the tally: an API error is ``"tie"`` or ``None`` as the judge's
        ``api_error`` policy decided."""
        return [j.winner if j.winner in WINNERS else None for j in self]

    @property
    def parse_failures(self) -> int:
        """Replies counted as ties because their first line did not hold two scores."""
        return sum(1 for j in self if j.ok and not j.parsed)


class JudgeError(RuntimeError):
    """Some comparisons failed; ``.judgements`` holds all of them, the finished ones included."""

    def __init__(self, message: str, judgements: JudgementList):
        super().__init__(message)
        self.judgements = judgements


def winner_of(score_a: float, score_b: float, tolerance: float = 0.0) -> str:
    """``"a"``, ``"b"``, or ``"tie"`` when the scores differ by at most ``tolerance``."""
    if abs(score_a - score_b) <= tolerance:
        return "tie"
    return "a" if score_a > score_b else "b"


class Judge:
    """Base class: ``compare(prompts, answers_a, answers_b) -> JudgementList``."""

    def compare(
        self, prompts: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str]
    ) -> JudgementList:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _check(prompts, answers_a, answers_b):
        for name, value in (("prompts", prompts), ("answers_a", answers_a), ("answers_b", answers_b)):
            if isinstance(value, str):
                raise ValueError(f"`{name}` must be a list of strings, got a single string.")
        if not (len(prompts) == len(answers_a) == len(answers_b)):
            raise ValueError(
                f"Got {len(prompts)} prompts, {len(answers_a)} answers_a and {len(answers_b)} answers_b; "
                "they must have the same length."
            )
        return list(prompts), list(answers_a), list(answers_b)
