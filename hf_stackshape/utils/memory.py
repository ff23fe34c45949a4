"""Memory on the books: peak memory of a block of work, and batches that are retried smaller when they do not fit.

Reward-guided decoding (ARGS, Khanov et al. 2024; CD, Mudgal et al. 2023; SRS, Wang et al. 2026) runs a policy
and a reward model of the same size side by side -- in the paper's setting two 8B models in bf16 on one GPU --
so memory, not time, is often what limits a batch. Two tools, used by the reward scoring and the benchmarks:

* :class:`PeakMemory`: ``with PeakMemory() as peak: ...`` then ``peak.bytes``: the CUDA peak
  (``torch.cuda.max_memory_allocated``, reset on entry) on a GPU, the process's peak resident set (RSS: Linux
  ``VmHWM``, reset on entry through ``/proc/self/clear_refs``) on a CPU;
* :func:`map_batches`: run ``fn`` over ``items`` in batches; a batch that raises an out-of-memory error
  (``torch.OutOfMemoryError``, CUDA or MPS) is retried with half the batch size, down to one item, and the
  smaller size is kept for the rest. When one item does not fit either, :class:`BatchMemoryError` says how much
  memory the failed allocation asked for and how much the device had.
"""

from __future__ import annotations

import gc
import re
import resource
import sys
from typing import Callable, List, Optional, Sequence, TypeVar, Union

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["BatchMemoryError", "PeakMemory", "is_out_of_memory", "map_batches", "rss_bytes"]

T = TypeVar("T")
R = TypeVar("R")

_GIB = 1024**3
_OOM_TEXT = ("out of memory", "outofmemoryerror", "cublas_status_alloc_failed")


class BatchMemoryError(RuntimeError):
    """A batch of one item did not fit in the device's memory (the message says how much it asked for)."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error from an accelerator (``torch.OutOfMemoryError`` or a CUDA /
    MPS ``RuntimeError`` saying so)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err).lower() for text in _OOM_TEXT)


def _free_cached_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _memory_report(err: BaseException, device: Optional[torch.device]) -> str:
    """What the failed allocation asked for and what the device had, from the error and ``torch.cuda``."""
    parts = []
    asked = re.search(r"[Tt]ried to allocate ([0-9.]+ ?[KMGT]i?B)", str(err))
    if asked:
        parts.append(f"the failed allocation asked for {asked.group(1)}")
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        try:
            free, total = torch.cuda.mem_get_info(device)
            peak = torch.cuda.max_memory_allocated(device)
            parts.append(
                f"{device} had {free / _GIB:.2f} GiB free of {total / _GIB:.2f} GiB "
                f"(peak allocated by torch so far {peak / _GIB:.2f} GiB)"
            )
        except Exception:  # a broken context after the OOM: report what the error said
            pass
    return "; ".join(parts) if parts else f"the error was: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


def map_batches(
    fn: Callable[[List[T]], R],
    items: Sequence[T],
    batch_size: int,
    *,
    what: str = "item",
    device: Optional[Union[str, torch.device]] = None,
) -> List[R]:
    """``[fn(batch) for batch in batches of items]``, where a batch that runs out of memory is retried smaller.

    Batches are consecutive slices of ``items`` (order kept). When ``fn`` raises an out-of-memory error
    (:func:`is_out_of_memory`) the cached allocator blocks are freed and the same items are run again in batches
    of half the size; the smaller size is kept for the rest of ``items`` (one warning per halving). ``fn`` must
    therefore be safe to call again on the same items (a pure function of its batch).

    Args:
        fn (`Callable[[list], R]`): runs one batch; its outputs are returned one per batch actually run.
        items (`Sequence`): what to split.
        batch_size (`int`): the first batch size (>= 1).
        what (`str`, *optional*): what one item is, for the messages (``"pair"``, ``"prompt"``...).
        device (`str` or `torch.device`, *optional*): the device ``fn`` runs on, to report its free memory.

    Returns:
        `list`: ``fn``'s outputs, in order; concatenated they cover ``items`` exactly once.

    Raises:
        BatchMemoryError: one item alone does not fit; says how much memory the failed allocation needed.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    device = torch.device(device) if device is not None else None
    outputs: List[R] = []
    start, size = 0, batch_size
    while start < len(items):
        batch = list(items[start : start + size])
        try:
            out = fn(batch)
        except Exception as err:  # noqa: BLE001 - only out-of-memory errors are handled, the rest re-raised
            if not is_out_of_memory(err):
                raise
            report = _memory_report(err, device)
            del err  # the traceback holds the failed batch's tensors
            _free_cached_memory()
            if len(batch) == 1:
                raise BatchMemoryError(
                    f"One {what} alone does not fit in memory ({report}). Free memory (a smaller model, a lower "
                    f"precision such as dtype=torch.bfloat16, device_map='auto' over more devices) or shorten the "
                    f"inputs (max_length)."
                ) from None
            size = max(1, len(batch) // 2)
            logger.warning(
                f"Out of memory on a batch of {len(batch)} {what}s ({report}); retrying with batches of {size}."
            )
            continue
        outputs.append(out)
        start += len(batch)
    return outputs


# ---------------------------------------------------------------------------------------------- peak memory


def _read_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """The process's current resident set size in bytes (``VmRSS``; the lifetime peak where it is unknown)."""
    kib = _read_status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    return _max_rss_bytes()


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) of this process; ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _read_status_kib("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak memory of the block it wraps: the CUDA peak on a GPU, the peak RSS on a CPU.

    Args:
        device (`str` or `torch.device`, *optional*): the device the work runs on. ``None`` (default): the
            current CUDA device when CUDA is available, else the CPU.

    After the block: ``bytes`` (the peak), ``source`` (how it was measured), ``device``. On CUDA the peak is
    ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` on entry (tensors torch allocated,
    the figure that decides an out-of-memory error; the caching allocator reserves a little more). On the CPU it
    is the process's peak resident set during the block (Linux ``VmHWM`` reset on entry), else the process's
    lifetime peak RSS (``ru_maxrss``; ``source`` says so), which can only overstate the block's peak.

    Examples:

    ```python
    >>> with PeakMemory() as peak:
    ...     x = torch.ones(1024, 1024)
    >>> peak.bytes > 0
    True
    ```
    """

    def __init__(self, device: Optional[Union[str, torch.device]] = None):
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.bytes: Optional[int] = None
        self.source: Optional[str] = None

    @property
    def mib(self) -> Optional[float]:
        return None if self.bytes is None else self.bytes / 1024**2

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.source = f"torch.cuda.max_memory_allocated({self.device})"
        elif _reset_rss_peak():
            self.source = "peak RSS of the process during the run (VmHWM)"
        else:
            self.source = "peak RSS of the process over its lifetime (ru_maxrss)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        elif "VmHWM" in self.source:
            self.bytes = int(_read_status_kib("VmHWM") or 0) * 1024
        else:
            self.bytes = _max_rss_bytes()

    def as_dict(self, prefix: str = "peak_memory") -> dict:
        """``{prefix + '_mib': ..., prefix + '_source': ...}`` for a benchmark's result."""
        return {f"{prefix}_mib": self.mib, f"{prefix}_source": self.source}
