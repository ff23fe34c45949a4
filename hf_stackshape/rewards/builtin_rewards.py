"""The callable built-in rewards: ``"vader"`` (VADER sentiment, the demo's gold judge) and ``"length"``.

Each has one implementation and a pinned identity (``CallableReward(..., version=...)``), so moving or
re-documenting the code never changes its fingerprint in run manifests (:mod:`hf_stackshape.utils.runs`).
The identities they had before they were pinned (a module, qualified name and source digest each) are
registered as legacy fingerprints of the pinned ones, so runs made by earlier versions still resume.
"""

from __future__ import annotations

from .adapters import CallableReward
from ..utils.runs import register_legacy_fingerprint

__all__ = ["VADER_VERSION", "LENGTH_VERSION", "vader_compound", "word_count", "vader_reward", "length_reward"]

#: The pinned identity of the VADER reward; bump it only if its scores change.
VADER_VERSION = "vader-compound/1"
#: The pinned identity of the word-count reward.
LENGTH_VERSION = "word-count/1"

_VADER = None


def _analyzer():
    global _VADER
    if _VADER is None:
        from ..utils._extras import needs

        _VADER = needs("vaderSentiment.vaderSentiment", "The 'vader' reward").SentimentIntensityAnalyzer()
    return _VADER


def vader_compound(response: str) -> float:
    """VADER sentiment of the response: the ``compound`` score in [-1, 1] (one analyzer, loaded on first use)."""
    return _analyzer().polarity_scores(response)["compound"]


def word_count(response: str) -> float:
    """Number of whitespace words of the response."""
    return float(len(response.split()))


def vader_reward() -> CallableReward:
    """VADER's compound sentiment of the response, in ``[-1, 1]``: ``load_reward("vader")``, and the demo's
    gold judge (:func:`hf_stackshape.assets.demo.vader_reward`). Raises at once when ``vaderSentiment`` is missing.

    Examples:

    ```python
    >>> from hf_stackshape.rewards.builtin_rewards import vader_reward
    >>> gold = vader_reward()
    >>> bool(gold(["Hi"], ["I love this, thank you!"])[0] > 0)
    True
    >>> gold.fingerprint()["fn"]
    {'version': 'vader-compound/1'}

    ```
    """
    _analyzer()
    return CallableReward(vader_compound, name="vader", version=VADER_VERSION)


def length_reward() -> CallableReward:
    """The number of whitespace words of the response: ``load_reward("length")``."""
    return CallableReward(word_count, name="length", version=LENGTH_VERSION)


def _callable_fingerprint(name: str, module: str, qualname: str, source_sha256: str) -> dict:
    """A :meth:`CallableReward.fingerprint` as an unpinned function of the given identity wrote it."""
    return {"type": "CallableReward", "name": name, "batched": False,
            "fn": {"module": module, "qualname": qualname, "source_sha256": source_sha256}}


# What run manifests hold for these rewards from before their identities were pinned, computed by the code of
# the commits named: `CallableReward(fn, name=...).fingerprint()`.
_VADER_NOW = CallableReward(vader_compound, name="vader", version=VADER_VERSION).fingerprint()
_LENGTH_NOW = CallableReward(word_count, name="length", version=LENGTH_VERSION).fingerprint()
_LEGACY = [
    # 23c5d14 (flat modules): load_reward("vader"), demo_assets.vader_reward(), load_reward("length").
    (_callable_fingerprint("vader", "hf_stackshape.rewards", "_vader_compound", "34faed7ea5d53f41797082cc"), _VADER_NOW),
    (_callable_fingerprint("vader_compound", "hf_stackshape.demo_assets", "vader_reward.<locals>.vader_compound",
                           "5a524e0751c0fafcc780d221"), _VADER_NOW),
    (_callable_fingerprint("length", "hf_stackshape.rewards", "_word_count", "47f3e15d55a9522eecd63137"), _LENGTH_NOW),
    # f1ed294 (the layered package, before the pin): the same three from their new modules.
    (_callable_fingerprint("vader", "hf_stackshape.rewards.adapters", "_vader_compound", "58b9023cce03d29ca2ae204d"),
     _VADER_NOW),
    (_callable_fingerprint("vader_compound", "hf_stackshape.assets.demo", "vader_reward.<locals>.vader_compound",
                           "5a524e0751c0fafcc780d221"), _VADER_NOW),
    (_callable_fingerprint("length", "hf_stackshape.rewards.adapters", "_word_count", "47f3e15d55a9522eecd63137"),
     _LENGTH_NOW),
]
for _old, _new in _LEGACY:
    register_legacy_fingerprint(_old, _new)
