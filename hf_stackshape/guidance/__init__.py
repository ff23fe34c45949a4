"""Guided decoding for ``model.generate``: ARGS / SRS-ARGS, CD / SRS-CD (and the shared prefix-cache helper)."""

from ._prefix_cache import CandidateStates, PrefixKVCache, prefix_cache_support
from .args import ARGSLogitsProcessor
from .cd import CDLogitsProcessor

__all__ = ["ARGSLogitsProcessor", "CDLogitsProcessor", "CandidateStates", "PrefixKVCache", "prefix_cache_support"]
