"""Small file helpers shared by the pipeline stages: atomic writes, JSONL, and prompt loading.

* Every file is written to a temporary sibling and moved into place with :func:`os.replace`, so a
  crash (or ``SIGKILL``) never leaves a half-written file under the final name.
* Prompts come from a ``.jsonl`` / ``.json`` / ``.csv`` / ``.txt`` file, a folder written by
  ``Dataset.save_to_disk``, or a Hub dataset (name + split + column), always as a list of strings.

Policy for unreadable prompt files: a line that is not valid UTF-8 (or not valid JSON in a ``.jsonl``
file) is an error naming the file and the line number; nothing is skipped silently.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Union

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_jsonl",
    "read_json",
    "read_jsonl",
    "sha256_bytes",
    "prompts_from_dataset",
    "load_prompts",
]

PathLike = Union[str, os.PathLike]


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (used as the checksum of cached shards)."""
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, :func:`os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def read_jsonl(path: PathLike) -> List[Any]:
    """Read a JSON Lines file (blank lines skipped); errors name the line number."""
    with open(path, "rb") as handle:
        text = _decode(handle.read(), path)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}).") from None
    return rows


def _check_prompts(values: Sequence[Any], where: str) -> List[str]:
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, str):
            kind = type(value).__name__
            raise ValueError(f"{where}: row {i} is a {kind}, not a string prompt: {value!r:.80}.")
        out.append(value)
    return out


def prompts_from_dataset(dataset, column: str = "prompt") -> List[str]:
    """The string column ``column`` of a ``datasets.Dataset`` as a list (clear error if it is missing)."""
    names = list(getattr(dataset, "column_names", None) or [])
    if column not in names:
        raise ValueError(f"The dataset has no column {column!r}; its columns are {names}. Pick one of them.")
    return _check_prompts(dataset[column], f"column {column!r}")


def _rows_to_prompts(rows: List[Any], column: str, path: PathLike) -> List[str]:
    prompts = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, str):
            prompts.append(row)
        elif isinstance(row, dict) and column in row and isinstance(row[column], str):
            prompts.append(row[column])
        elif isinstance(row, dict):
            raise ValueError(
                f"{path}: record {number} has no string field {column!r} (fields: {sorted(row)}); "
                f"pass --column <field>."
            )
        else:
            raise ValueError(f"{path}: record {number} is a {type(row).__name__}, not an object or a string.")
    return prompts


def _load_file(path: Path, column: str) -> List[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _rows_to_prompts(read_jsonl(path), column, path)
    if suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get(column), list):
            data = data[column]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of prompts (or of objects with {column!r}).")
        return _rows_to_prompts(data, column, path)
    with open(path, "rb") as handle:
        text = _decode(handle.read(), path)
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if column not in (reader.fieldnames or []):
            header = reader.fieldnames
            raise ValueError(f"{path}: no column {column!r}; the header has {header}. Pass --column.")
        return [row[column] for row in reader]
    if suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
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
            A ``.jsonl`` file (objects with a ``column`` field, or JSON strings, one per line), a ``.json``
            list, a ``.csv`` file with a header holding ``column``, or a ``.txt`` file (one prompt per
            non-empty line).
        dataset (`str`, *optional*):
            A Hub dataset id, a local dataset folder readable by ``datasets.load_dataset``, or a folder
            written by ``Dataset.save_to_disk``.
        split (`str`, *optional*, defaults to `"train"`): the split of ``dataset``.
        column (`str`, *optional*, defaults to `"prompt"`): the field / column holding the prompt text.
        limit (`int`, *optional*): keep only the first ``limit`` prompts.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: wrong column, unreadable line (the message names the line), or both/neither source.
    """
    if (path is None) == (dataset is None):
        raise ValueError("Pass exactly one prompt source: a file (--prompts) or a dataset (--dataset).")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"`limit` must be >= 0, got {limit!r}.")
    if path is not None:
        path = Path(path)
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
