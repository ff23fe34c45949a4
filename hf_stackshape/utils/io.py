"""Small file helpers shared by the pipeline stages: atomic writes, JSONL, and prompt loading.

* Every file is written to a temporary sibling (``.<name>.<random>.tmp``) and moved into place with
  :func:`os.replace`, so a crash (or ``SIGKILL``) never leaves a half-written file under the final name; the
  file gets the permissions of a plain ``open`` (``0o666`` minus the user's umask, or the mode of the file it
  replaces). :func:`remove_temp_files` cleans what a killed write left behind.
* JSON Lines written bit by bit go through :func:`append_jsonl` (one write per batch, flushed and fsynced).
  A line counts only once its newline is written: :func:`read_jsonl` ignores a torn last line and
  :func:`repair_jsonl` (called by :func:`append_jsonl`) cuts it off, so it is never merged with the next row.
* Prompts come from a ``.jsonl`` / ``.json`` / ``.csv`` / ``.txt`` file, a folder written by
  ``Dataset.save_to_disk``, or a Hub dataset (name + split + column), always as a list of strings.

Policy for prompt files, the same for every format: a line that is not valid UTF-8 (or not valid JSON in a
``.jsonl`` file) and an empty (or whitespace-only) prompt are errors naming the file and the line (or the
item of a ``.json`` list, the row of a dataset); nothing is skipped silently. Blank lines of ``.jsonl`` and
``.txt`` files separate records and are not prompts.
"""

from __future__ import annotations

import csv
import errno
import glob
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple, Union

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_jsonl",
    "append_jsonl",
    "repair_jsonl",
    "remove_temp_files",
    "read_json",
    "read_jsonl",
    "jsonl_lines",
    "sha256_bytes",
    "prompts_from_dataset",
    "load_prompts",
]

PathLike = Union[str, os.PathLike]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (used as the checksum of cached shards)."""
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the replaced file's, else ``0o666 & ~umask``."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _named_write_error(err: OSError, path: Path) -> OSError:
    """``err`` as an OSError that names the file being written (a bare ``[Errno 28]`` names nothing), with a
    hint when the disk or quota is full."""
    if err.errno in _DISK_FULL:
        hint = " Free some space (or raise the quota), or write to another disk; rerun to resume."
        return type(err)(err.errno, f"{os.strerror(err.errno)} while writing {path}.{hint}", str(path))
    if err.filename is None:
        return type(err)(err.errno, f"{err.strerror or err} (while writing {path})", str(path))
    return err


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, :func:`os.replace`).

    The file gets the mode of the file it replaces, or ``0o666`` minus the umask for a new one (not the
    ``0o600`` of a bare temporary file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _new_file_mode(path))
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _named_write_error(err, path) from err
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def atomic_write_jsonl(path: PathLike, rows: Iterable[dict]) -> str:
    """Write ``rows`` as JSON Lines to ``path`` atomically; returns the SHA-256 of the bytes written."""
    data = _jsonl_bytes(rows)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def remove_temp_files(folder: PathLike, name: Optional[str] = None, recursive: bool = False) -> List[Path]:
    """Delete what killed atomic writes left in ``folder``: ``.<name>.<random>.tmp`` (any name when ``name``
    is None), files or folders. Only call it while no other process writes there (hold the run's lock,
    :func:`hf_stackshape.utils.runs.open_run`). Returns the removed paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{glob.escape(name)}.*.tmp" if name is not None else ".*.tmp"
    found = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def _complete_length(handle) -> int:
    """Bytes of ``handle`` (opened ``rb``/``r+b``) up to and including its last newline."""
    size = handle.seek(0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - 65536)
        handle.seek(start)
        block = handle.read(end - start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def repair_jsonl(path: PathLike) -> int:
    """Cut a torn last line (no newline: a write killed half-way) off a JSON Lines file.

    Returns the number of bytes removed (0 when the file is whole or missing).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        keep = _complete_length(handle)
        if keep == size:
            return 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    logger.warning("%s: dropped a torn last line (%d bytes, no newline: an interrupted write).", path, size - keep)
    return size - keep


def append_jsonl(path: PathLike, rows: Iterable[dict]) -> None:
    """Append ``rows`` to a JSON Lines file in one write, flushed and fsynced.

    A torn last line left by an earlier, interrupted write is cut off first (:func:`repair_jsonl`), so a new
    row never continues it.
    """
    data = _jsonl_bytes(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(path)
    try:
        with open(path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise _named_write_error(err, path) from err


def _decode(data: bytes, path: PathLike) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line} is not valid UTF-8 (byte {data[err.start]:#04x}); save the file as UTF-8."
        ) from None


def read_json(path: PathLike) -> Any:
    """Read a JSON file."""
    with open(path, "rb") as handle:
        text = _decode(handle.read(), path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}.") from None


def jsonl_lines(path: PathLike, complete_lines_only: bool) -> List[Tuple[int, Any]]:
    """``(line number, row)`` for each row of a JSONL file; ``complete_lines_only`` ignores a torn last line (a
    write cut short) with a log line."""
    with open(path, "rb") as handle:
        data = handle.read()
    if complete_lines_only and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        logger.info("%s: ignoring a torn last line (%d bytes without a newline).", path, len(data) - cut)
        data = data[:cut]
    text = _decode(data, path)
    rows = []
    # Split on "\n" only: JSON escapes other line breaks, and str.splitlines would also cut at U+2028.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}).") from None
    return rows


_jsonl_lines = jsonl_lines  # the old private name, kept for code that imported it


def read_jsonl(path: PathLike, complete_lines_only: bool = True) -> List[Any]:
    """Read a JSON Lines file (blank lines skipped); errors name the line number.

    Args:
        path (`str` or `os.PathLike`): the file.
        complete_lines_only (`bool`, *optional*, defaults to `True`):
            Count only newline-terminated lines: a last line without its newline is a write cut short (our
            writers end every row with one) and is ignored. Pass `False` for hand-written files, whose last
            line often lacks it.
    """
    return [row for _, row in jsonl_lines(path, complete_lines_only)]


def _prompt(value: Any, where: str) -> str:
    """``value`` if it is a non-empty string prompt; else an error naming ``where`` (file and line, or row)."""
    if not isinstance(value, str):
        raise ValueError(f"{where} is a {type(value).__name__}, not a string prompt: {value!r:.80}.")
    if not value.strip():
        raise ValueError(f"{where} is an empty prompt ({value!r}); remove it or write the prompt.")
    return value


def prompts_from_dataset(dataset, column: str = "prompt") -> List[str]:
    """The string column ``column`` of a ``datasets.Dataset`` as a list (clear error if it is missing, or if a
    row is not a string or is empty)."""
    names = list(getattr(dataset, "column_names", None) or [])
    if column not in names:
        raise ValueError(f"The dataset has no column {column!r}; its columns are {names}. Pick one of them.")
    return [_prompt(value, f"column {column!r}: row {i}") for i, value in enumerate(dataset[column])]


def _record_prompt(row: Any, column: str, where: str) -> str:
    if isinstance(row, dict):
        if column not in row:
            raise ValueError(f"{where} has no string field {column!r} (fields: {sorted(row)}); pass --column <field>.")
        return _prompt(row[column], f"{where}, field {column!r},")
    if not isinstance(row, str):
        raise ValueError(f"{where} is a {type(row).__name__}, not an object or a string.")
    return _prompt(row, where)


def _load_file(path: Path, column: str) -> List[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        # Hand-written files often lack the final newline: their last line counts.
        rows = jsonl_lines(path, complete_lines_only=False)
        return [_record_prompt(row, column, f"{path}: line {number}") for number, row in rows]
    if suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get(column), list):
            data = data[column]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of prompts (or of objects with {column!r}).")
        return [_record_prompt(row, column, f"{path}: item {i}") for i, row in enumerate(data, start=1)]
    with open(path, "rb") as handle:
        text = _decode(handle.read(), path)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if column not in (reader.fieldnames or []):
            header = reader.fieldnames
            raise ValueError(f"{path}: no column {column!r}; the header has {header}. Pass --column.")
        prompts = []
        for row in reader:
            # line_num is the record's last physical line; a quoted cell may span several.
            prompts.append(_prompt(row[column] or "", f"{path}: line {reader.line_num}, column {column!r},"))
        return prompts
    if suffix == ".txt":
        if column != "prompt":
            raise ValueError(
                f"{path}: --column {column!r} does not apply to a .txt file (one prompt per line, no columns); drop "
                "--column, or use a .jsonl / .csv file with that column."
            )
        # Split on "\n" only (a "\r\n" ending loses its "\r"): str.splitlines would also cut a prompt at a
        # form feed, U+2028 or U+0085 inside it, making two prompts of one line.
        return [line[:-1] if line.endswith("\r") else line for line in text.split("\n") if line.strip()]
    raise ValueError(f"{path}: unsupported prompt file type {suffix!r}; use .jsonl, .json, .csv or .txt.")


def load_prompts(
    path: Optional[PathLike] = None,
    dataset: Optional[str] = None,
    split: str = "train",
    column: str = "prompt",
    limit: Optional[int] = None,
) -> List[str]:
    """Load prompts as a list of strings from exactly one source.

    Args:
        path (`str`, *optional*):
            A ``.jsonl`` file (objects with a ``column`` field, or JSON strings, one per line; the last line
            counts without its newline), a ``.json`` list, a ``.csv`` file with a header holding ``column``,
            or a ``.txt`` file (one prompt per non-blank line; lines end at ``"\n"`` only, so a form feed or
            U+2028 inside a prompt stays in it; ``column`` does not apply and any other value is an error).
        dataset (`str`, *optional*):
            A Hub dataset id, a local dataset folder readable by ``datasets.load_dataset``, or a folder
            written by ``Dataset.save_to_disk``.
        split (`str`, *optional*, defaults to `"train"`): the split of ``dataset``.
        column (`str`, *optional*, defaults to `"prompt"`): the field / column holding the prompt text.
        limit (`int`, *optional*): keep only the first ``limit`` prompts.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: wrong column, unreadable line, a non-string or empty prompt (the message names the file
            and line), or both/neither source.
    """
    if (path is None) == (dataset is None):
        raise ValueError("Pass exactly one prompt source: a file (--prompts) or a dataset (--dataset).")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"`limit` must be >= 0, got {limit!r}.")
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(
                f"--prompts {path} is a folder, not a prompt file; pass a .jsonl/.json/.csv/.txt file, or the folder "
                "as --dataset (a dataset saved with save_to_disk or loadable by datasets.load_dataset)."
            )
        if not path.is_file():
            raise FileNotFoundError(f"Prompt file not found: {path}")
        prompts = _load_file(path, column)
    else:
        import datasets

        local = Path(dataset)
        if (local / "dataset_info.json").is_file() and (local / "state.json").is_file():
            ds = datasets.load_from_disk(str(local))
        elif (local / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(local))[split]
        else:
            ds = datasets.load_dataset(dataset, split=split)
        if limit is not None:
            ds = ds.select(range(min(int(limit), len(ds))))
        prompts = prompts_from_dataset(ds, column)
    return prompts[: int(limit)] if limit is not None else prompts
