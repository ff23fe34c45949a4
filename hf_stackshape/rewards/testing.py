"""A reward contract to run on any reward, ours or yours: :func:`check_reward`.

Everything that consumes a reward in this package relies on a few properties beyond "returns numbers": ARGS
(Khanov et al., 2024) scores candidates in batches whose make-up changes every step, best-of-N and the
threshold calibration of Stackelberg reward shaping (Wang et al., 2026) score ``N`` responses per prompt through
``score_grouped`` when a reward has it (:func:`~hf_stackshape.rewards.score_groups`), and resumable runs key
their cached results on the reward's ``fingerprint()`` (:mod:`hf_stackshape.utils.runs`). :func:`check_reward`
checks each of them and names the one that fails:

* ``output``: ``score(prompts, responses)`` returns a float32 ``torch.Tensor`` of shape ``(n,)`` on the CPU,
  every value finite;
* ``fingerprint``: ``fingerprint()`` is a dict of plain JSON data (what a run manifest stores) and the same on
  two calls (else every rerun would be refused as "other settings");
* ``batch consistency``: scoring the batch again, each pair alone, and the pairs in reverse order gives the
  same reward per pair (a reward that normalises by its batch, or reads padding, fails);
* ``score_grouped``: when the reward has it, ``score_grouped(prompts, groups)`` equals ``score`` on the
  flattened pairs, with shape ``(len(prompts), N)``.

"The same" allows float rounding: ``|a - b| <= atol + rtol * |b|`` with ``rtol = atol = 1e-4`` by default. A
neural reward model pads a batch to its longest pair, so a pair scored alone or next to other pairs runs
through matrix products of other shapes, whose float32 sums are added in another order: relative differences
of about ``1e-6`` per layer, which stay well under ``1e-4`` for float32 models of any usual depth (the tiny and
SmolLM2 reward models of our tests differ by under ``1e-5``). For a bfloat16 or float16 reward model (about 3
significant digits) pass ``rtol=atol=1e-2``. A reward that depends on its batch changes by far more.

Use it in a test of your own reward:

```python
>>> from hf_stackshape.rewards import CallableReward
>>> from hf_stackshape.rewards.testing import check_reward
>>> report = check_reward(CallableReward(lambda response: len(response.split())))
>>> sorted(report)
['batch consistency', 'fingerprint', 'output', 'score_grouped']

```
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

import torch

from .adapters import as_reward_function, score_groups

__all__ = ["RewardContractError", "check_reward", "DEFAULT_PROMPTS", "DEFAULT_RESPONSES"]

#: Pairs of varied lengths (an empty response, a long one, repeated prompts, non-ASCII text).
DEFAULT_PROMPTS = [
    "How do I bake bread at home?",
    "How do I bake bread at home?",
    "Tell me a joke about a cat.",
    "Hi",
    "Hi",
    "Can you explain photosynthesis in simple words?",
]
DEFAULT_RESPONSES = [
    "Mix flour, water, yeast and salt; knead, let it rise, shape it and bake at 230 C for 30 minutes.",
    "",
    "Why did the cat sit on the computer? To keep an eye on the mouse!",
    "Hello! I am happy to help, what would you like to talk about today? " * 3,
    "No.",
    "Plants use sunlight to turn water and carbon dioxide into sugar and oxygen. Très simple.",
]


class RewardContractError(AssertionError):
    """A reward broke the contract of :func:`check_reward`; the message names each failed property."""


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() and a.shape == b.shape else 0.0


def _checked_output(values, n: int, what: str) -> torch.Tensor:
    """``values`` if it is a finite float32 CPU tensor of shape ``(n,)``, else a :class:`RewardContractError`."""
    if not isinstance(values, torch.Tensor):
        raise RewardContractError(f"output: {what} returned {type(values).__name__}, not a torch.Tensor.")
    problems = []
    if values.dtype != torch.float32:
        problems.append(f"dtype {values.dtype} (must be torch.float32)")
    if tuple(values.shape) != (n,):
        problems.append(f"shape {tuple(values.shape)} (must be ({n},), one reward per pair)")
    if values.device.type != "cpu":
        problems.append(f"device {values.device} (must be the CPU)")
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        problems.append(f"non-finite values {values[~torch.isfinite(values)].tolist()[:3]}")
    if problems:
        raise RewardContractError(f"output: {what} returned a tensor with " + "; ".join(problems) + ".")
    return values


def _call(what: str, prop: str, fn, *args):
    try:
        return fn(*args)
    except RewardContractError:
        raise
    except Exception as err:  # noqa: BLE001 - reported with the property it broke
        raise RewardContractError(f"{prop}: {what} raised {type(err).__name__}: {err}") from err


def check_reward(
    reward,
    prompts: Optional[Sequence[str]] = None,
    responses: Optional[Sequence[str]] = None,
    rtol: float = 1e-4,
    atol: float = 1e-4,
) -> Dict[str, object]:
    """Check that ``reward`` keeps the contract every consumer of a reward relies on (see the module docstring).

    Args:
        reward: a :class:`~hf_stackshape.rewards.RewardFunction` (anything
            :func:`~hf_stackshape.rewards.as_reward_function` takes is wrapped first).
        prompts, responses (`list[str]`, *optional*): the pairs to score, at least two (default:
            :data:`DEFAULT_PROMPTS`, :data:`DEFAULT_RESPONSES`). The ``score_grouped`` check pairs each of the
            first two prompts with the first three responses.
        rtol, atol (`float`, *optional*, default to `1e-4`): how close two scores of one pair must be
            (``|a - b| <= atol + rtol * |b|``); ``1e-2`` suits bfloat16 / float16 reward models.

    Returns:
        `dict`: per property checked, what was measured (the largest difference between two scorings of one
        pair; the fingerprint; ``None`` when the reward has no ``score_grouped``).

    Raises:
        RewardContractError: (an ``AssertionError``) naming every property that failed and how.
        ValueError: bad arguments (unpaired or too few pairs).
    """
    if (prompts is None) != (responses is None):
        raise ValueError("Pass both `prompts` and `responses`, or neither (then the default pairs are used).")
    prompts = list(DEFAULT_PROMPTS if prompts is None else prompts)
    responses = list(DEFAULT_RESPONSES if responses is None else responses)
    if len(prompts) != len(responses) or len(prompts) < 2:
        raise ValueError(f"Need at least two (prompt, response) pairs, got {len(prompts)} prompts and "
                         f"{len(responses)} responses.")
    if rtol < 0 or atol < 0:
        raise ValueError(f"`rtol` and `atol` must be >= 0, got {rtol!r} and {atol!r}.")
    reward = as_reward_function(reward)
    n = len(prompts)
    report: Dict[str, object] = {}
    failures: List[str] = []

    # output: the shape, type and finiteness everything else builds on (stop here when it fails).
    scores = _checked_output(_call("score(prompts, responses)", "output", reward.score, prompts, responses), n,
                             "score(prompts, responses)")
    report["output"] = {"pairs": n, "min": float(scores.min()), "max": float(scores.max())}

    # fingerprint: plain JSON, stable.
    try:
        first, second = reward.fingerprint(), reward.fingerprint()
        if not isinstance(first, dict):
            raise RewardContractError(f"fingerprint: fingerprint() returned {type(first).__name__}, not a dict.")
        try:
            encoded = json.dumps(first, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise RewardContractError(
                f"fingerprint: fingerprint() is not plain JSON data ({err}); run manifests store it as JSON."
            ) from None
        if json.dumps(second, sort_keys=True, default=str) != encoded:
            raise RewardContractError(f"fingerprint: two calls of fingerprint() differ ({first!r} vs {second!r}); "
                                      "a resumed run would be refused as made with other settings.")
        report["fingerprint"] = first
    except RewardContractError as err:
        failures.append(str(err))
    except Exception as err:  # noqa: BLE001
        failures.append(f"fingerprint: fingerprint() raised {type(err).__name__}: {err}")

    # batch consistency: again, one by one, reversed.
    try:
        again = _checked_output(_call("score (a second time)", "batch consistency", reward.score, prompts, responses),
                                n, "score (a second time)")
        alone = torch.cat([
            _checked_output(_call("score of one pair", "batch consistency", reward.score, [p], [r]), 1,
                            "score of one pair")
            for p, r in zip(prompts, responses)
        ])
        order = list(range(n))[::-1]
        flipped = _checked_output(
            _call("score in reverse order", "batch consistency", reward.score, [prompts[i] for i in order],
                  [responses[i] for i in order]), n, "score in reverse order")
        unflipped = torch.empty_like(flipped)
        unflipped[order] = flipped
        worst = 0.0
        for name, other in (("scored again", again), ("scored one pair at a time", alone),
                            ("scored in reverse order", unflipped)):
            worst = max(worst, _max_diff(other, scores))
            if not _close(other, scores, rtol, atol):
                i = int((other.double() - scores.double()).abs().argmax())
                failures.append(
                    f"batch consistency: the pairs {name} get other rewards than in one batch (pair {i}: "
                    f"{float(other[i])!r} vs {float(scores[i])!r}; rtol={rtol}, atol={atol}); a reward must not "
                    "depend on which other pairs share its batch."
                )
        report["batch consistency"] = {"max_abs_diff": worst}
    except RewardContractError as err:
        failures.append(str(err))

    # score_grouped == score on the flattened pairs.
    grouped = getattr(reward, "score_grouped", None)
    if callable(grouped):
        group_prompts, group = prompts[:2], responses[:3]
        groups = [list(group) for _ in group_prompts]
        try:
            values = _call("score_grouped(prompts, groups)", "score_grouped", grouped, group_prompts, groups)
            if not isinstance(values, torch.Tensor) or tuple(values.shape) != (len(group_prompts), len(group)):
                shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise RewardContractError(f"score_grouped: returned {shape}, must be a tensor of shape "
                                          f"({len(group_prompts)}, {len(group)}) (prompts x responses each).")
            flat = _checked_output(
                _call("score (flattened groups)", "score_grouped", reward.score,
                      [p for p in group_prompts for _ in group], [r for _ in group_prompts for r in group]),
                len(group_prompts) * len(group), "score (flattened groups)")
            _checked_output(values.reshape(-1), flat.numel(), "score_grouped")
            if not _close(values.reshape(-1), flat, rtol, atol):
                failures.append(
                    f"score_grouped: score_grouped differs from score on the same pairs (largest difference "
                    f"{_max_diff(values.reshape(-1), flat):.3g}; rtol={rtol}, atol={atol})."
                )
            if not _close(score_groups(reward, group_prompts, groups).reshape(-1), flat, rtol, atol):
                failures.append("score_grouped: score_groups(reward, ...) differs from score on the same pairs.")
            report["score_grouped"] = {"max_abs_diff": _max_diff(values.reshape(-1), flat)}
        except RewardContractError as err:
            failures.append(str(err))
    else:
        report["score_grouped"] = None
    if failures:
        name = getattr(reward, "name_or_path", type(reward).__name__)
        raise RewardContractError(f"The reward {name!r} breaks the reward contract:\n- " + "\n- ".join(failures))
    return report
