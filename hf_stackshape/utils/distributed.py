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

:func:`run_alone` runs a function as one process would, in a child process whose environment has the launch
variables removed (:func:`single_process_env`): a stage whose multi-process form computes something else
(``transformers.Trainer`` wraps the model in DDP under ``torchrun``, which changes the order of the sums) runs
there exactly as in one process. :meth:`Processes.map_alone` shares such jobs over the ranks.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

__all__ = [
    "DistributedSetupError",
    "Processes",
    "launch_state",
    "launch_device",
    "batch_grid",
    "end_process_group",
    "process_group_initialized",
    "LAUNCH_ENV_VARS",
    "single_process_env",
    "run_alone",
    "SingleProcessError",
]

#: What ``torchrun`` / ``torch.distributed.run``, ``accelerate launch`` and MPI launchers set to tell a process it
#: is one rank of many (torch.distributed, accelerate's ``PartialState`` and ``transformers.TrainingArguments`` read
#: them); removed by :func:`single_process_env`. Names ending in ``_`` are prefixes.
LAUNCH_ENV_VARS = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
    "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "TORCHELASTIC_", "ACCELERATE_",
    "OMPI_COMM_WORLD_", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
)

#: How long the other ranks wait for a job run alone (:meth:`Processes.map_alone`), in seconds: a day, not the
#: process group's default 30 minutes (gloo) or 10 (NCCL), which a head's training can exceed.
ALONE_TIMEOUT_S = 24 * 3600


class SingleProcessError(RuntimeError):
    """A function run in a single-process child (:func:`run_alone`) failed there."""


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

    def map_alone(self, fn: Callable, jobs: Sequence[tuple], device: Optional[str] = None,
                  timeout_s: float = ALONE_TIMEOUT_S) -> List[Any]:
        """``[fn(*job) for job in jobs]``, each job computed as one process computes it; every rank gets the list.

        One process (``world == 1``): called here, in order. Several: rank ``r`` runs ``jobs[r::world]``, each in a
        child process of its own with the launch variables removed (:func:`run_alone`, on this rank's ``device``),
        while the others wait, up to ``timeout_s`` (on a gloo group of its own: the process group's default
        timeout does not apply). ``fn`` must be importable (a module-level function) and the jobs and results
        picklable. A job that fails raises :class:`SingleProcessError` on every rank, naming the rank.
        """
        jobs = [tuple(job) for job in jobs]
        if self.world == 1:
            return [fn(*job) for job in jobs]
        import datetime

        # Made before the jobs run (making it is itself a collective under the default timeout).
        group = self._dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=float(timeout_s)))
        try:
            mine: Dict[int, Any] = {}
            error = None
            for k in range(self.rank, len(jobs), self.world):
                try:
                    mine[k] = run_alone(fn, *jobs[k], device=device)
                except Exception as err:  # reported to every rank below, so that none waits for the timeout
                    error = f"rank {self.rank}: {type(err).__name__}: {err}"
                    break
            parts: List[Any] = [None] * self.world
            self._dist.all_gather_object(parts, (mine, error), group=group)
        finally:
            self._dist.destroy_process_group(group)
        errors = [e for _, e in parts if e]
        if errors:
            raise SingleProcessError(f"{getattr(fn, '__qualname__', fn)} failed: " + "; ".join(errors))
        merged: Dict[int, Any] = {}
        for part, _ in parts:
            merged.update(part)
        return [merged[k] for k in range(len(jobs))]


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


def single_process_env(env: Optional[Mapping[str, str]] = None, device: Optional[str] = None) -> Dict[str, str]:
    """``env`` (default ``os.environ``) without the variables of a multi-process launch (:data:`LAUNCH_ENV_VARS`), so
    that a process started with it is a single process to torch, accelerate and transformers. With a CUDA
    ``device`` (``cuda:i``), ``CUDA_VISIBLE_DEVICES`` is narrowed to that GPU (``cuda:0`` in the child). The rest
    (``OMP_NUM_THREADS``, ``MKL_CBWR``, ``PYTHONPATH``, the caches, ...) is kept.

    ```python
    >>> from hf_stackshape.utils.distributed import single_process_env
    >>> env = {"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x", "OMP_NUM_THREADS": "1"}
    >>> single_process_env(env)
    {'OMP_NUM_THREADS': '1'}
    >>> single_process_env({"CUDA_VISIBLE_DEVICES": "4,5"}, device="cuda:1")
    {'CUDA_VISIBLE_DEVICES': '5'}

    ```
    """
    out = dict(os.environ if env is None else env)
    for name in list(out):
        if any(name.startswith(v) if v.endswith("_") else name == v for v in LAUNCH_ENV_VARS):
            del out[name]
    kind, _, index = str(device or "").partition(":")
    if kind == "cuda":
        index = int(index or 0)
        visible = [v.strip() for v in out.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        out["CUDA_VISIBLE_DEVICES"] = visible[index] if visible else str(index)
    return out


_CHILD = (
    "import sys; from hf_stackshape.utils.distributed import _alone_child; sys.exit(_alone_child(sys.argv[1]))"
)


def run_alone(fn: Callable, *args, device: Optional[str] = None, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` computed in a child Python process started with :func:`single_process_env` (launch
    variables removed; on a CUDA ``device``, only that GPU visible), so it runs exactly as in a single process
    even when called from one rank of a ``torchrun`` launch. ``fn`` must be importable by name (a module-level
    function); arguments and result travel pickled. The child's output goes to this process's stdout/stderr.

    Raises:
        SingleProcessError: the child failed (the message ends with its error; its traceback is on stderr).
    """
    folder = tempfile.mkdtemp(prefix="stackshape-alone-")
    try:
        with open(os.path.join(folder, "job.pkl"), "wb") as f:
            pickle.dump((fn, args, kwargs), f)
        sys.stdout.flush()
        sys.stderr.flush()
        code = subprocess.run([sys.executable, "-c", _CHILD, folder], env=single_process_env(device=device)).returncode
        result_path = os.path.join(folder, "result.pkl")
        if code == 0 and os.path.isfile(result_path):
            with open(result_path, "rb") as f:
                return pickle.load(f)
        error_path = os.path.join(folder, "error.txt")
        detail = open(error_path, encoding="utf-8").read().strip() if os.path.isfile(error_path) else ""
        raise SingleProcessError(
            f"{getattr(fn, '__qualname__', fn)} failed in its single-process child (exit code {code})"
            + (f": {detail}" if detail else "; see its output above.")
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alone_child(folder: str) -> int:
    """The child of :func:`run_alone`: run the pickled job, pickle its result (or write its error)."""
    import traceback

    with open(os.path.join(folder, "job.pkl"), "rb") as f:
        fn, args, kwargs = pickle.load(f)
    try:
        result = fn(*args, **kwargs)
    except BaseException as err:
        traceback.print_exc()
        with open(os.path.join(folder, "error.txt"), "w", encoding="utf-8") as f:
            f.write(f"{type(err).__name__}: {err}")
        return 1
    with open(os.path.join(folder, "result.partial"), "wb") as f:
        pickle.dump(result, f)
    os.replace(os.path.join(folder, "result.partial"), os.path.join(folder, "result.pkl"))
    return 0


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
