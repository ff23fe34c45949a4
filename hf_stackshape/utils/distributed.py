"""The process layout of a multi-process run (``torchrun``, ``accelerate launch``), in one place.

:class:`Processes` gives a stage its rank, world size, barrier, gather and broadcast, from an accelerate
``PartialState``, an initialised ``torch.distributed`` process group, or neither (one process); it refuses a
``WORLD_SIZE > 1`` launch with no process group, where every rank would compute everything into one output.

:func:`end_process_group` destroys the default process group at the end of a program. A process that exits
with a gloo group still alive can abort (SIGABRT, "terminate called without an active exception") while the
interpreter tears down: gloo's worker threads still hold tensors then. The ``stackshape`` command line calls
it after every command that started one (a group the caller had set up before is left alone); a script of
your own run under ``torchrun`` should end with it (or with ``trainer.accelerator.end_training()``, which does
the same).
"""

from __future__ import annotations

import os
import sys
from typing import Any, List

__all__ = [
    "DistributedSetupError",
    "Processes",
    "launch_state",
    "launch_device",
    "batch_grid",
    "end_process_group",
    "process_group_initialized",
]


class DistributedSetupError(RuntimeError):
    """A multi-process launch (``WORLD_SIZE > 1``) without the process group a shared run needs."""


class Processes:
    """Rank, world size, barrier and broadcast of this run (accelerate state, torch.distributed, or none)."""

    def __init__(self, state=None):
        import torch.distributed as dist

        self._dist = dist if dist.is_available() and dist.is_initialized() else None
        if state is not None:
            self.rank, self.world = int(state.process_index), int(state.num_processes)
        elif self._dist is not None:
            self.rank, self.world = self._dist.get_rank(), self._dist.get_world_size()
        else:
            world = os.environ.get("WORLD_SIZE", "1")
            if world.isdigit() and int(world) > 1:
                raise DistributedSetupError(
                    f"WORLD_SIZE={world} is set (a torchrun / accelerate launch?) but no torch.distributed process "
                    "group is initialised, so every rank would compute everything into one output. Call "
                    "torch.distributed.init_process_group() (or pass an accelerate PartialState) first, or run a "
                    "single process."
                )
            self.rank, self.world = 0, 1
        if self.world > 1 and self._dist is None:
            raise DistributedSetupError(
                f"A {self.world}-process run needs an initialised torch.distributed process group to share the "
                "output's preparation; initialise it (accelerate's PartialState does) before opening the run."
            )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self._dist.barrier()

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, on every rank."""
        if self.world == 1:
            return [obj]
        out: List[Any] = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def share(self, units: List[Any]) -> List[Any]:
        """This rank's units: ``units[rank::world]`` (round robin, so ranks get equal shares of equal units)."""
        return list(units)[self.rank :: self.world]

    def map(self, units: List[Any], fn) -> List[Any]:
        """``[fn(u) for u in units]`` with the units shared over the ranks; every rank gets the whole list, in order."""
        units = list(units)
        mine = {k: fn(units[k]) for k in range(self.rank, len(units), self.world)}
        merged: dict = {}
        for part in self.gather(mine):
            merged.update(part)
        return [merged[k] for k in range(len(units))]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]


def launch_state():
    """The process layout of a command: an accelerate ``PartialState`` under ``torchrun`` / ``accelerate launch``
    (``WORLD_SIZE > 1``; it initialises the process group: NCCL on GPUs, gloo on CPU), else ``None`` (one process).

    Every command that shares work over ranks (``calibrate``, ``generate``, ``sweep``, ``evaluate``, ``demo``) starts
    with it, so ``torchrun --nproc_per_node N -m hf_stackshape.cli COMMAND ...`` just works, on one node or many.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 and not process_group_initialized():
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def launch_device(state=None) -> str:
    """The device of this rank: the state's (one GPU per rank), else ``cuda`` when available, else ``cpu``."""
    if state is not None:
        return str(state.device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def batch_grid(indices, batch_size: int) -> List[List[int]]:
    """Group global prompt indices into the batches a single process makes: ``[0, B), [B, 2B), ...``, each
    holding those of ``indices`` that fall in it (empty batches dropped), in order.

    Sharing these batches (not single prompts) over ranks keeps every batch exactly as one process pads and
    computes it, so greedy outputs and rewards are bitwise the same whatever the world size.
    """
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
    grid: dict = {}
    for i in sorted(int(i) for i in indices):
        grid.setdefault(i // int(batch_size), []).append(i)
    return [grid[b] for b in sorted(grid)]


def process_group_initialized() -> bool:
    """Whether a default ``torch.distributed`` process group is up (``False``, without importing torch, if torch
    was never imported)."""
    dist = sys.modules.get("torch.distributed")
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


def end_process_group() -> bool:
    """Destroy the default ``torch.distributed`` process group if one is initialised; return whether it did.

    Call it once, at the very end of a multi-process program, after the last collective on every rank.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True
