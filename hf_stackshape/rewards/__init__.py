"""Layer 2, rewards: adapters that score (prompt, response) pairs and the one grouped scorer (:mod:`.adapters`),
the named-reward table with lazy entries (:mod:`.table`) behind :func:`load_reward` (:mod:`.registry`), the
callable built-ins with pinned identities (:mod:`.builtin_rewards`, which registers their legacy fingerprints
with :mod:`hf_stackshape.utils.runs` on import) and a reward contract to test any reward with (:mod:`.testing`)."""

from .adapters import (
    CallableReward,
    HFRewardModel,
    RewardFunction,
    ShardedReward,
    as_reward_function,
    reward_fingerprint,
    score_groups,
)
from .builtin_rewards import length_reward, vader_reward
from .registry import REWARD_SPECS, load_reward, not_found_error

__all__ = [
    "RewardFunction",
    "HFRewardModel",
    "CallableReward",
    "ShardedReward",
    "as_reward_function",
    "reward_fingerprint",
    "score_groups",
    "load_reward",
    "REWARD_SPECS",
    "not_found_error",
    "vader_reward",
    "length_reward",
]
