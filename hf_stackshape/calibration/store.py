"""The on-disk store of a calibration run: verified chunks of samples and the final outputs.

Inside a run folder opened with :func:`hf_stackshape.utils.runs.open_run` (which holds the lock, checks the
settings against ``run.json`` and cleans leftover temporary files), chunk ``k`` of the prompts is stored as

* ``chunk-0000k.jsonl``: one row per prompt (``prompt_index``, ``prompt``, ``responses``, ``rewards``), written
  atomically first;
* ``chunk-0000k.json``: its sidecar, written atomically second: the data's SHA-256, row count, the digest of its
  prompts and of the run's settings.

A chunk counts only once its sidecar matches its data, so a kill between the two writes (or inside one of
them) leaves a chunk that is simply recomputed; a truncated or edited data file fails the checksum and is
recomputed too, with a warning. The final outputs are ``dataset/`` (``save_to_disk``, swapped in by renames)
and ``calibration.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from transformers.utils import logging

from ..utils.io import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl, sha256_bytes

logger = logging.get_logger(__name__)

__all__ = ["ChunkStore", "chunk_seed"]


def chunk_seed(seed: int, chunk_index: int) -> int:
    """A seed that depends only on ``(seed, chunk_index)`` (SHA-256 mixed, so chunks are independent)."""
    digest = hashlib.sha256(f"stackshape-calibrate:{int(seed)}:{int(chunk_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _prompts_digest(prompts: Sequence[str]) -> str:
    return sha256_bytes(json.dumps(list(prompts), ensure_ascii=False).encode("utf-8"))


class ChunkStore:
    """Chunks of one calibration run in ``folder``, stamped with the run's settings ``digest``.

    Args:
        folder (`Path`): the run folder.
        digest (`str`): the run's fingerprint digest (:attr:`hf_stackshape.utils.runs.Run.digest`).
        num_samples (`int`): responses per prompt, checked on every row read back.
    """

    def __init__(self, folder: Path, digest: str, num_samples: int):
        self.folder = Path(folder)
        self.digest = digest
        self.num_samples = int(num_samples)

    def paths(self, k: int):
        """``(data, sidecar)`` paths of chunk ``k``."""
        return self.folder / f"chunk-{k:05d}.jsonl", self.folder / f"chunk-{k:05d}.json"

    def load(self, k: int, prompts: Sequence[str], first: int) -> Optional[List[Dict[str, Any]]]:
        """The verified rows of chunk ``k`` (prompts ``first, first + 1, ...``), or ``None`` when it must be
        (re)computed: missing, never finished (no sidecar), corrupted (logged) or holding other prompts."""
        data_path, meta_path = self.paths(k)
        if not meta_path.is_file():
            return None
        problem = None
        try:
            meta = read_json(meta_path)
            raw = data_path.read_bytes()
            if meta.get("fingerprint") != self.digest:
                problem = "written with other settings"
            elif sha256_bytes(raw) != meta.get("sha256"):
                problem = "checksum mismatch (truncated or edited)"
            elif meta.get("prompts_sha256") != _prompts_digest(prompts):
                # Not damage: the prompt list changed (e.g. a larger --limit). Only this chunk is redone.
                logger.info("Cached chunk %d in %s holds other prompts; recomputing it.", k, self.folder)
                problem = "stale"
            else:
                rows = read_jsonl(data_path)
                if len(rows) != len(prompts) or meta.get("rows") != len(prompts):
                    problem = f"{len(rows)} rows instead of {len(prompts)}"
                elif any(
                    r.get("prompt_index") != first + i
                    or r.get("prompt") != prompts[i]
                    or len(r.get("responses", ())) != self.num_samples
                    or len(r.get("rewards", ())) != self.num_samples
                    for i, r in enumerate(rows)
                ):
                    problem = "rows do not match the prompts and settings"
                else:
                    return rows
        except (OSError, ValueError, AttributeError, TypeError) as err:
            problem = f"unreadable ({err})"
        if problem != "stale":
            logger.warning("Cached chunk %d in %s is corrupted (%s); recomputing it.", k, self.folder, problem)
        for path in (meta_path, data_path):
            path.unlink(missing_ok=True)
        return None

    def save(self, k: int, rows: List[Dict[str, Any]], prompts: Sequence[str], **meta: Any) -> None:
        """Write chunk ``k``: the data first, then the sidecar that makes it count (both atomic)."""
        data_path, meta_path = self.paths(k)
        digest = atomic_write_jsonl(data_path, rows)
        record = {"chunk": k, "rows": len(rows), "sha256": digest, "fingerprint": self.digest,
                  "prompts_sha256": _prompts_digest(prompts), **meta}
        atomic_write_json(meta_path, record)

    def save_outputs(self, dataset, config: Dict[str, Any]) -> None:
        """``dataset/`` (built aside, swapped in by renames), ``calibration.jsonl`` and ``calibration_config.json``."""
        final = self.folder / "dataset"
        # Hidden ``.tmp`` names: a kill leaves nothing a reader would take for results, and the next
        # open_run removes them.
        tmp = self.folder / f".dataset.{uuid.uuid4().hex[:8]}.tmp"
        dataset.save_to_disk(str(tmp))
        old = None
        if final.exists():
            old = self.folder / f".dataset-old.{uuid.uuid4().hex[:8]}.tmp"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        atomic_write_jsonl(self.folder / "calibration.jsonl", dataset.to_list())
        atomic_write_json(self.folder / "calibration_config.json", config)
