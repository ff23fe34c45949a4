"""Layer 2, rewards: adapters that score (prompt, response) pairs (:mod:`.adapters`) and the named-reward table
behind :func:`load_reward` (:mod:`.registry`)."""

from .adapters import *  # noqa: F401,F403
from .adapters import __all__ as _adapters_all

__all__ = list(_adapters_all)
