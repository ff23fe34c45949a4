"""A single JSON Lines output (one row per prompt, keyed by its global index ``id``) written by several ranks.

Each rank appends its finished batches to its own shard ``<OUT>.shard-<rank>.jsonl`` (one fsynced write per
batch, :func:`hf_stackshape.utils.io.append_jsonl`); when every rank is done, rank 0 merges ``OUT`` (rows an earlier
single-process run left there) and every shard into ``OUT``, atomically, in prompt order, and removes the
shards: exactly the file one process writes.

Rows are keyed by the global prompt index, never by rank, so a rerun resumes whatever the world size (a run
started on 2 ranks goes on on 4 or on 1): it reads every shard there is, counts a batch of the single-process
batch grid (:func:`hf_stackshape.utils.distributed.batch_grid`) as done only when all its rows are there, and shares
the other batches over the ranks it has. A killed rank's unfinished batches are redone, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence

from .distributed import Processes, batch_grid
from .io import append_jsonl, atomic_write_jsonl

__all__ = ["ShardedRows"]


class ShardedRows:
    """The rows of ``path`` and its shards, for a run over ``procs`` (see the module docstring).

    Args:
        path (`Path`): the merged output file.
        procs ([`Processes`]): the ranks sharing the run.
        read_rows (`Callable[[Path], list[dict]]`): reads a file's complete rows (each with an ``id``),
            raising a clear error on a bad line.
    """

    def __init__(self, path, procs: Processes, read_rows: Callable[[Path], List[dict]]):
        self.path = Path(path)
        self.procs = procs
        self.read_rows = read_rows

    def shard_path(self, rank: int) -> Path:
        return self.path.parent / f"{self.path.name}.shard-{int(rank):05d}.jsonl"

    def shard_paths(self) -> List[Path]:
        """Every shard on disk (of any world size), in rank order."""
        if not self.path.parent.is_dir():
            return []
        return sorted(self.path.parent.glob(f"{self.path.name}.shard-*.jsonl"))

    def rows(self, prompts: Sequence[str]) -> Dict[int, dict]:
        """Finished rows by global index: ``OUT``'s, then the shards' (a later shard wins a duplicate, which
        only a redone batch writes). A row answering another prompt than ``prompts[id]`` is an error."""
        found: Dict[int, dict] = {}
        sources = ([self.path] if self.path.is_file() else []) + self.shard_paths()
        for source in sources:
            for row in self.read_rows(source):
                index = row["id"]
                if not isinstance(index, int) or not 0 <= index < len(prompts) or row["prompt"] != prompts[index]:
                    raise ValueError(
                        f"{source}: row id {index!r} does not answer prompt {index!r} of this run; the file belongs to "
                        "another prompt list. Pass a new --output_file, or --overwrite to start over."
                    )
                found[index] = row
        return found

    def pending(self, prompts: Sequence[str], batch_size: int) -> List[List[int]]:
        """The batches of the single-process grid not wholly done (every rank computes the same list)."""
        done = self.rows(prompts)
        return [
            batch for batch in batch_grid(range(len(prompts)), batch_size) if not all(i in done for i in batch)
        ]

    def append(self, rows: List[dict]) -> None:
        """Append finished rows to this rank's shard (one fsynced write)."""
        append_jsonl(self.shard_path(self.procs.rank), rows)

    def merge(self, prompts: Sequence[str]) -> int:
        """After every rank finished (call on all ranks): rank 0 writes ``OUT`` with every row in prompt order
        and removes the shards. Returns the number of rows."""
        self.procs.barrier()
        if self.procs.is_main:
            rows = self.rows(prompts)
            missing = [i for i in range(len(prompts)) if i not in rows]
            if missing:
                raise RuntimeError(
                    f"{self.path}: prompts {missing[:10]} have no row after every rank finished; rerun the command to "
                    "redo them."
                )
            atomic_write_jsonl(self.path, [rows[i] for i in range(len(prompts))])
            for shard in self.shard_paths():
                shard.unlink()
        self.procs.barrier()
        return len(prompts)
