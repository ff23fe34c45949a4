"""Guided decoding for ``model.generate``: ARGS / SRS-ARGS (and the shared prefix-cache helper)."""

from ._prefix_cache import CandidateStates, PrefixKVCache, prefix_cache_support
from .args import ARGSLogitsProcessor

__all__ = ["ARGSLogitsProcessor", "CandidateStates", "PrefixKVCache", "prefix_cache_support"]
