"""Pairwise judges for the win-tie rate of Wang et al. (2026), section 5 (the protocol of ARGS, Khanov et al.
2024, itself after the Vicuna / MT-Bench pairwise GPT-4 evaluation).

One interface, ``judge.compare(prompts, answers_a, answers_b) -> JudgementList``:

* :class:`RewardModelJudge` - a gold reward decides (cheap, offline, deterministic); tie within a tolerance.
* :class:`LLMJudge` - any OpenAI-compatible chat endpoint through huggingface_hub's ``InferenceClient``,
  under the paper's protocol, with seeded order swaps, retries, a concurrency limit and a resumable cache.

The modules, one idea each: :mod:`.base` (judgements), :mod:`.protocol` (the prompt and the reply parser),
:mod:`.client` (the endpoint and its key rules), :mod:`.cache` (finished judgements on disk),
:mod:`.llm_judge` and :mod:`.reward_judge` (the two judges).
"""

from __future__ import annotations

from typing import Union

from ...rewards.adapters import RewardFunction
from .base import Judge, JudgeError, Judgement, JudgementList
from .llm_judge import LLMJudge
from .protocol import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_TEMPLATE,
    PROTOCOLS,
    JudgeProtocol,
    paper_verdict,
    parse_scores,
    parse_scores_paper,
)
from .reward_judge import RewardModelJudge

__all__ = [
    "Judgement",
    "JudgementList",
    "Judge",
    "JudgeError",
    "RewardModelJudge",
    "LLMJudge",
    "JudgeProtocol",
    "PROTOCOLS",
    "parse_scores",
    "parse_scores_paper",
    "paper_verdict",
    "load_judge",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_TEMPLATE",
]


def load_judge(spec: Union[str, Judge, RewardFunction, None] = None, **kwargs) -> Judge:
    """A judge from a name: ``"llm"`` (or ``None``) -> :class:`LLMJudge` configured from the environment and
    ``kwargs``; a :class:`Judge` is returned as is; anything else is a reward for :class:`RewardModelJudge`
    (``"vader"``, a reward model id, a :class:`~hf_stackshape.rewards.RewardFunction`, a callable)."""
    if isinstance(spec, Judge):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "llm"):
        return LLMJudge(**kwargs)
    return RewardModelJudge(spec, **kwargs)
