"""The judgement cache: one JSON line per finished judgement, appended (and fsynced) the moment it finishes,
so an interrupted judging run resumes where it stopped and pays for no comparison twice.

Each line is ``{"key": ..., "model": ..., "judgement": {...}}``; the key
(:meth:`~hf_stackshape.evaluation.judges.LLMJudge.cache_key`) covers the comparison and every setting that
changes a verdict, so one file can hold judgements of several judges without ever mixing them. Failed
comparisons (API errors) are never written: a rerun asks again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Dict, Union

from transformers.utils import logging

from ...utils.io import append_jsonl, read_jsonl
from .base import Judgement

logger = logging.get_logger(__name__)

__all__ = ["JudgementCache"]


class JudgementCache:
    """Finished judgements in a JSON Lines file (a torn last line from a crash is ignored, then cut off on
    the next append).

    Args:
        path (`str` or `os.PathLike`): the JSONL file (created on the first judgement).
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> Dict[str, Judgement]:
        """``{key: judgement}`` of every complete line."""
        if not self.path.is_file():
            return {}
        out: Dict[str, Judgement] = {}
        for number, record in enumerate(read_jsonl(self.path), start=1):
            try:
                judgement = Judgement(**record["judgement"])
                key = record["key"]
            except (KeyError, TypeError):
                raise ValueError(
                    f"{self.path}: record {number} is not a judgement ({str(record)[:120]}); this file is not a "
                    "judge cache: pass another cache_file, or delete it to judge again."
                ) from None
            if judgement.ok:
                out[key] = judgement
        return out

    def add(self, key: str, judgement: Judgement, model: str) -> None:
        """Append one finished judgement (thread-safe; flushed to disk before returning)."""
        if not judgement.ok:
            raise ValueError(f"Only finished judgements are cached; got one with error {judgement.error!r}.")
        with self._lock:
            append_jsonl(self.path, [{"key": key, "model": model, "judgement": judgement.to_dict()}])
