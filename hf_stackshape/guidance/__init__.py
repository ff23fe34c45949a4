"""Guided decoding for ``model.generate``: ARGS / SRS-ARGS, CD / SRS-CD, the one-call ``guided_generate`` (and
the shared prefix-cache helper)."""

from ..utils.kv_cache import CandidateStates, PrefixKVCache, prefix_cache_support
from ._base import GuidanceProcessor
from .args import ARGSLogitsProcessor
from .cd import CDLogitsProcessor
from .guided import guided_generate

__all__ = [
    "ARGSLogitsProcessor",
    "CDLogitsProcessor",
    "CandidateStates",
    "GuidanceProcessor",
    "PrefixKVCache",
    "guided_generate",
    "prefix_cache_support",
]
