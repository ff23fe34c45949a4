"""Run manifests: one mechanism so that a resumed run never mixes settings.

Every long stage of the pipeline (``calibrate``, ``generate``, ``sweep``, ``train-qhead``, the demo) writes its
results bit by bit and resumes after a crash. Resuming is only right if the rerun has the settings of the
first run, so each stage opens its output through :func:`open_run`:

* an **advisory lock** (``fcntl.flock`` on a hidden sibling ``.<name>.lock``) is taken first: a second
  concurrent run on the same output stops at once with :class:`RunLockedError`, naming the holder's pid,
  instead of deleting the first run's in-flight temporary files;
* a **manifest** (``<dir>/run.json``, or ``<file>.run.json`` for a single-file output) holds the run's
  *fingerprint*: everything that changes the outputs (model and reward identities, tokenizer,
  ``generation_config``, the method and its parameters, seeds, prompts, ...) and the package version. It is
  written before any result. A rerun whose fingerprint differs stops with :class:`RunMismatchError`, which
  lists every differing key (old -> new) and the two ways out: ``--overwrite`` (``overwrite=True``) or
  another output;
* ``overwrite=True`` removes only what the old run's manifest says the run wrote (its ``written`` list: the
  whole folder, or the file and its manifest) and nothing else: a folder or file without a readable manifest
  is refused, naming what is there, and a sibling ``<file>.*`` (``mytest.txt`` next to ``--output_file
  mytest``) is never touched. The old run is renamed aside atomically, then deleted, so no half of it survives;
* the lock and the run's identity key on the **resolved** path: a symlink to a run folder and the folder
  itself share one lock;
* temporary files left by a killed atomic write (``.<name>.<random>.tmp``, see :mod:`hf_stackshape.utils.io`) are
  cleaned while the lock is held;
* a fresh run that fails before writing any result removes its manifest again, so the corrected command is
  not refused as "made with other settings"; settings compare with ``nan == nan`` (:func:`same_setting`);
* input folders a run reads enter its fingerprint as :func:`content_digest` values, so an input changed between
  two parts of a run is refused by name.

Under ``torch.distributed`` (``torchrun``, ``accelerate launch``) rank 0 takes the lock and prepares the
output; its outcome, success or the very error, is broadcast, so the other ranks raise the same error at once
instead of waiting for a collective timeout. A call under ``torchrun`` (``WORLD_SIZE > 1``) without an
initialised process group is refused: every rank would otherwise compute everything into one output.

The ``*_fingerprint`` helpers build the identity of the usual ingredients; they return plain JSON data.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from transformers.utils import logging

from .distributed import DistributedSetupError, Processes
from .io import atomic_write_json, read_json, remove_temp_files

logger = logging.get_logger(__name__)

__all__ = [
    "Run",
    "open_run",
    "RunMismatchError",
    "RunLockedError",
    "DistributedSetupError",
    "model_fingerprint",
    "tokenizer_fingerprint",
    "reward_fingerprint",
    "prompts_fingerprint",
    "fingerprint_digest",
    "content_digest",
    "same_setting",
    "manifest_differences",
    "path_setting",
    "register_legacy_fingerprint",
    "canonical_fingerprint",
]

PathLike = Union[str, os.PathLike]

#: Bump when the manifest layout changes.
MANIFEST_FORMAT = 1
#: The manifest's name inside a run folder; a single-file run uses ``<file>.run.json``.
MANIFEST_NAME = "run.json"


class RunMismatchError(ValueError):
    """The output holds a run made with other settings (the message lists each differing key)."""


class RunLockedError(RuntimeError):
    """Another process holds the output's lock (the message names its pid)."""


# ----------------------------------------------------------------------------------------------- fingerprints


def _jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data (tuples become lists, unknown objects their ``str``), so that a fingerprint
    read back from a manifest compares equal to a freshly built one."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def fingerprint_digest(fingerprint: Dict[str, Any], length: int = 24) -> str:
    """A short SHA-256 of a fingerprint (key order does not matter)."""
    data = json.dumps(_jsonable(fingerprint), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:length]


#: Weights digests by module, with the (storage, in-place version) key of every tensor they were computed
#: from: a model fingerprinted again, unchanged, costs no second pass over its weights.
_DIGESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_INT_VIEWS = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _weights_digest(module) -> str:
    """A digest of a module's weights: names, shapes, dtypes and, per tensor, the integer sum of its bits.

    Summing the raw bits as integers is exact, so the digest is the same on any device and thread count, and
    a change of any single value moves it; one pass over the weights (about 2 s for 135M parameters on one CPU
    thread, milliseconds on a GPU), cached until a tensor is modified in place. Tensors on the ``meta``
    device (offloaded) contribute their name and shape only.
    """
    import torch

    state = module.state_dict(keep_vars=True)
    key = tuple((name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)) for name, t in state.items())
    cached = _DIGESTS.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256(type(module).__name__.encode())
    with torch.no_grad():
        for name, tensor in state.items():
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            view = _INT_VIEWS.get(tensor.element_size())
            if tensor.device.type == "meta" or tensor.numel() == 0 or view is None:
                continue
            bits = tensor.detach().contiguous().reshape(-1).view(getattr(torch, view))
            h.update(str(int(bits.sum(dtype=torch.int64))).encode())
    digest = h.hexdigest()[:24]
    try:
        _DIGESTS[module] = (key, digest)
    except TypeError:  # not weak-referenceable
        pass
    return digest


def _generation_config_diff(model) -> Dict[str, Any]:
    config = getattr(model, "generation_config", None)
    if config is None:
        return {}
    diff = config.to_diff_dict()
    return {k: v for k, v in diff.items() if not k.startswith("_") and k != "transformers_version"}


def _portable_name(name: Any) -> Optional[str]:
    """A Hub id as is; a local folder is left out (``None``): where a model sits (and the path spelling of a
    rerun) does not change its outputs, and its weights digest identifies it."""
    name = str(name or "")
    return None if not name or os.path.isdir(name) else name


def path_setting(value: Any) -> Any:
    """How a run records a setting that may name a local path (``--model``, ``--qhead``, ``--reward_model``):
    an existing local file or folder by its resolved real path, so ``runs/q``, ``./runs/q``, its absolute
    spelling and a symlink to it are one setting; anything else (a Hub id, ``demo``, ``None``) as given.

    Examples:

    ```python
    >>> import os, tempfile
    >>> from hf_stackshape.utils.runs import path_setting
    >>> folder = tempfile.mkdtemp()
    >>> path_setting(folder) == path_setting(os.path.join(folder, ".")) == os.path.realpath(folder)
    True
    >>> path_setting("HuggingFaceTB/SmolLM2-135M-Instruct-not-a-local-folder")
    'HuggingFaceTB/SmolLM2-135M-Instruct-not-a-local-folder'

    ```
    """
    if value is None:
        return None
    text = str(value)
    expanded = os.path.expanduser(text)
    if text and os.path.exists(expanded):
        return os.path.realpath(expanded)
    return text


def model_fingerprint(model, weights: Optional[bool] = None) -> Dict[str, Any]:
    """The identity of a model: what changes its outputs.

    Args:
        model (`PreTrainedModel` or `torch.nn.Module`): the model.
        weights (`bool`, *optional*):
            Whether to digest the weights. Default: only when the model's Hub commit hash is unknown (a local
            folder, a model built or changed in memory); a Hub checkpoint is identified by id + commit.

    Returns:
        `dict` with ``name_or_path`` (a Hub id; ``None`` for a local folder), ``revision`` (the Hub commit hash or ``None``), ``class``, ``dtype``,
        ``generation_config`` (the model's non-default generation settings: repetition penalty, EOS list,
        top-k, ...) and, when digested, ``weights``.
    """
    config = getattr(model, "config", None)
    revision = getattr(config, "_commit_hash", None)
    out: Dict[str, Any] = {
        "name_or_path": _portable_name(getattr(config, "_name_or_path", "")),
        "revision": revision,
        "class": type(model).__name__,
        "dtype": str(getattr(model, "dtype", "")),
        "generation_config": _generation_config_diff(model),
    }
    if weights or (weights is None and not revision):
        out["weights"] = _weights_digest(model)
    return _jsonable(out)


def tokenizer_fingerprint(tokenizer) -> Dict[str, Any]:
    """The identity of a tokenizer: class, vocabulary digest, special tokens and chat template digest."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    vocab_digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode("utf-8"))
    template = getattr(tokenizer, "chat_template", None) or ""
    if not isinstance(template, str):
        template = json.dumps(template, sort_keys=True, default=str)
    return _jsonable(
        {
            "name_or_path": _portable_name(getattr(tokenizer, "name_or_path", "")),
            "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "vocab": vocab_digest.hexdigest()[:24],
            "bos_token_id": getattr(tokenizer, "bos_token_id", None),
            "eos_token_id": getattr(tokenizer, "eos_token_id", None),
            "pad_token_id": getattr(tokenizer, "pad_token_id", None),
            "chat_template": hashlib.sha256(template.encode("utf-8")).hexdigest()[:24] if template else None,
        }
    )


def reward_fingerprint(reward) -> Dict[str, Any]:
    """The identity of a reward: ``reward.fingerprint()`` of a :class:`~hf_stackshape.rewards.RewardFunction`
    (an HF reward model's id + revision or weights digest; a Python callable's module, qualified name and
    source digest, or its explicit ``version``). A plain callable or a ``(model, tokenizer)`` pair needs
    :func:`hf_stackshape.rewards.reward_fingerprint`, which wraps it first (this layer knows no reward classes)."""
    if not callable(getattr(reward, "fingerprint", None)):
        raise TypeError(
            f"{type(reward).__name__} has no fingerprint(); use hf_stackshape.rewards.reward_fingerprint, which "
            "wraps callables and (model, tokenizer) pairs with as_reward_function first."
        )
    return _jsonable(reward.fingerprint())


def prompts_fingerprint(prompts: Sequence[str]) -> Dict[str, Any]:
    """The identity of a prompt list: its length and the SHA-256 of its JSON encoding (order matters)."""
    data = json.dumps(list(prompts), ensure_ascii=False).encode("utf-8")
    return {"count": len(prompts), "sha256": hashlib.sha256(data).hexdigest()}


#: What :func:`content_digest` leaves out of a folder by default: the run's own bookkeeping (its manifest, lock,
#: temporary and hidden files), Trainer checkpoints and the model card, none of which a reader of the folder
#: loads as data.
CONTENT_DIGEST_IGNORE = (MANIFEST_NAME, ".*", "checkpoint-*", "README.md")


def content_digest(path: PathLike, ignore: Sequence[str] = CONTENT_DIGEST_IGNORE) -> str:
    """A SHA-256 (24 hex digits) of what a file or a folder holds, to pin an input folder in a run's manifest.

    A file: its name and bytes. A folder: every file under it, in sorted order of relative path, each as its
    relative path and bytes; an entry whose name (at any depth) matches one of the ``ignore`` patterns
    (``fnmatch``) is skipped with everything under it. The digest does not depend on where the folder sits, on
    file times or on the order the filesystem lists entries, and changes with any byte or file name.

    Commands record it for every input folder they read (``--thresholds_from``, ``--calibration_dir``,
    ``--qhead``) and compare it again when they resume, so an input changed in between is refused by name.

    Raises:
        FileNotFoundError: ``path`` does not exist.

    Examples:

    ```python
    >>> import os, tempfile
    >>> from hf_stackshape.utils.runs import content_digest
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.txt"), "w") as fh:
    ...     _ = fh.write("one")
    >>> before = content_digest(folder)
    >>> with open(os.path.join(folder, "a.txt"), "w") as fh:
    ...     _ = fh.write("two")
    >>> content_digest(folder) == before
    False

    ```
    """
    import fnmatch

    root = os.path.expanduser(os.fspath(path))
    if not os.path.exists(root):
        raise FileNotFoundError(f"Cannot digest {root!r}: no such file or folder.")
    skipped = lambda name: any(fnmatch.fnmatch(name, pattern) for pattern in ignore)  # noqa: E731
    h = hashlib.sha256()
    if os.path.isfile(root):
        base, files = os.path.dirname(root), [root]
    else:
        base, files = root, []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not skipped(d)]
            files.extend(os.path.join(folder, n) for n in names if not skipped(n))
        files.sort(key=lambda f: os.path.relpath(f, base))
    for name in files:
        h.update(os.path.relpath(name, base).encode())
        with open(name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------------------------- the run


def _flatten(obj: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: Dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: obj}


_MISSING = "<missing>"


#: Identities that earlier versions recorded, each with the identity that replaced it (same outputs, a new
#: spelling: a reward whose identity was pinned with ``version=`` after its code moved, say).
_LEGACY_FINGERPRINTS: List[tuple] = []


def register_legacy_fingerprint(old: Dict[str, Any], current: Dict[str, Any]) -> None:
    """Declare that ``old``, an identity earlier versions wrote into run manifests (a reward's
    ``fingerprint()``, say), means the same outputs as ``current``: a manifest holding ``old`` where a rerun
    has ``current`` resumes (see :func:`canonical_fingerprint`), instead of being refused as other settings.

    The module that owns an identity registers its own legacy spellings when it is imported (the built-in
    rewards do, :mod:`hf_stackshape.rewards.builtins`), so a changed identity never needs a change here.
    """
    if not isinstance(old, dict) or not isinstance(current, dict):
        raise ValueError("A legacy fingerprint and its current form must both be dicts.")
    old, current = _jsonable(old), _jsonable(current)
    if same_setting(old, current):
        raise ValueError(f"The legacy fingerprint {old!r} is the current one; nothing to register.")
    if not any(same_setting(old, o) and same_setting(current, c) for o, c in _LEGACY_FINGERPRINTS):
        _LEGACY_FINGERPRINTS.append((old, current))


def canonical_fingerprint(fingerprint: Any) -> Any:
    """``fingerprint`` (JSON data) with every part that is a registered legacy identity
    (:func:`register_legacy_fingerprint`) replaced by its current form, at any depth; what resuming compares."""
    for old, current in _LEGACY_FINGERPRINTS:
        if same_setting(fingerprint, old):
            return current
    if isinstance(fingerprint, dict):
        return {k: canonical_fingerprint(v) for k, v in fingerprint.items()}
    if isinstance(fingerprint, list):
        return [canonical_fingerprint(v) for v in fingerprint]
    return fingerprint


def manifest_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """``key: old -> new`` for every differing (dotted) key of two manifests' fingerprints, run kind and version
    (registered legacy identities compare as their current form, :func:`canonical_fingerprint`)."""
    a, b = ({"run kind": m.get("kind"), "package version": m.get("package_version"),
             **_flatten(canonical_fingerprint(m.get("fingerprint") or {}))} for m in (old, new))
    return [
        f"{key}: {a.get(key, _MISSING)!r} -> {b.get(key, _MISSING)!r}"
        for key in sorted(set(a) | set(b))
        if not same_setting(a.get(key, _MISSING), b.get(key, _MISSING))
    ]


_differences = manifest_differences  # the old private name, kept


def same_setting(a: Any, b: Any) -> bool:
    """Whether two recorded settings are the same value; unlike ``==``, ``nan`` equals ``nan`` (a setting
    recorded as NaN is the same setting when a rerun passes NaN again). Containers compare element-wise."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_setting(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_setting(x, y) for x, y in zip(a, b))
    return a == b


def _package_version() -> str:
    from ._version import __version__

    return __version__


class Run:
    """An open run (see :func:`open_run`): where its output is and whether it resumes an earlier one.

    Attributes:
        output (`Path`): the run's folder, or its file for a single-file run.
        manifest_path (`Path`): ``<dir>/run.json`` or ``<file>.run.json``.
        kind (`str`): what wrote it (``"calibrate"``, ``"generate"``, ...).
        fingerprint (`dict`): the settings this run was opened with (plain JSON data).
        digest (`str`): a short hash of ``fingerprint`` (e.g. to stamp the run's shards); a resumed run keeps
            the digest its manifest records, which differs only where the manifest holds a legacy identity.
        resumed (`bool`): a matching run existed, so its results may be reused.
        rank, world_size (`int`): this process and the number of processes sharing the run.
    """

    def __init__(
        self, output: Path, kind: str, fingerprint: Dict[str, Any], single_file: bool, procs: Processes
    ):
        self.output = output
        self.single_file = single_file
        manifest_path = output.parent / f"{output.name}.run.json" if single_file else output / MANIFEST_NAME
        self.manifest_path = manifest_path
        self.kind = kind
        self.fingerprint = fingerprint
        self.digest = fingerprint_digest(fingerprint)
        self.resumed = False
        self._procs = procs
        self._lock_fd: Optional[int] = None

    @property
    def rank(self) -> int:
        return self._procs.rank

    @property
    def world_size(self) -> int:
        return self._procs.world

    @property
    def is_main(self) -> bool:
        return self._procs.is_main

    def barrier(self) -> None:
        """Wait for every process of the run (no-op in a single process)."""
        self._procs.barrier()

    def __repr__(self) -> str:
        return f"Run({self.kind!r}, {str(self.output)!r}, resumed={self.resumed}, rank={self.rank}/{self.world_size})"

    # ------------------------------------------------------------------------------------------ lock

    def _lock_path(self) -> Path:
        return _lock_path_of(self.output)

    def _acquire(self) -> None:
        path = self._lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise RunLockedError(
                    f"{self.output} is in use by {who} (lock {path}); wait for it to finish or write to "
                    "another output."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            try:
                os.ftruncate(self._lock_fd, 0)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    # ------------------------------------------------------------------------------------------ prepare

    def _old_entries(self) -> List[Path]:
        """Everything that belongs to the old run (the folder, or the file and its sidecars)."""
        if not self.single_file:
            return [self.output] if self.output.exists() or self.output.is_symlink() else []
        parent, name = self.output.parent, self.output.name
        if not parent.is_dir():
            return []
        return sorted(p for p in parent.iterdir() if p.name == name or p.name.startswith(name + "."))

    # ------------------------------------------------------------------------------------------ ownership

    def _written_names(self) -> List[str]:
        """What this run writes, as the manifest records it: ``["."]`` (the run's folder, whole) or, for a
        single-file run, the file and its manifest (names in the same folder)."""
        if not self.single_file:
            return ["."]
        return [self.output.name, self.manifest_path.name]

    def _refuse_unowned(self, found: Sequence[Path], why: str) -> None:
        shown = ", ".join(str(p) for p in list(found)[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise RunMismatchError(
            f"Refusing to overwrite {self.output}: {why}, so nothing shows this tool wrote what is there ({shown}). "
            "--overwrite removes only what a run manifest says its run wrote; move or delete those files yourself, "
            "or write to another output."
        )

    def _owned_entries(self) -> List[Path]:
        """What ``overwrite=True`` may remove: the entries the run manifest lists as written by the run
        (``written``; a manifest without that key: the folder, or the file and its manifest). Raises
        :class:`RunMismatchError` naming what is there when the output holds files and no readable manifest
        (a user's folder or file, a sibling ``FILE.*`` is never touched)."""
        present = self._old_entries() if not self.single_file else [
            p for p in (self.output, self.manifest_path) if p.exists() or p.is_symlink()
        ]
        if not present:
            return []
        manifest = None
        if self.manifest_path.is_file():
            try:
                manifest = read_json(self.manifest_path)
            except (OSError, ValueError):
                manifest = None
        if not isinstance(manifest, dict) or "fingerprint" not in manifest:
            if not self.single_file and self.output.is_dir() and not self.output.is_symlink():
                inside = sorted(self.output.iterdir())
                if not inside:
                    return []  # an empty folder: nothing to remove, a fresh run goes there
                present = inside
            state = "its run manifest is unreadable" if self.manifest_path.is_file() else "it has no run manifest"
            self._refuse_unowned(present, f"{state} ({self.manifest_path.name})")
        written = manifest.get("written")
        if not isinstance(written, list) or not all(isinstance(n, str) for n in written):
            written = self._written_names()
        if not self.single_file:
            return [self.output] if "." in written else []
        names = {n for n in written if n and "/" not in n and "\\" not in n and n not in (".", "..")}
        names.add(self.manifest_path.name)
        return [p for p in present if p.name in names] + [
            self.output.parent / n for n in sorted(names)
            if n not in {p.name for p in present} and (self.output.parent / n).exists()
        ]

    def _trash_prefix(self) -> str:
        return f".{self.output.name}.old-"

    def _remove_old(self) -> None:
        """Move the old run aside (one rename per entry, into one hidden folder), then delete it: only what its
        manifest says the run wrote (see :meth:`_owned_entries`); anything else there is refused, never deleted."""
        if not self._old_entries():
            return
        guarded = {Path.cwd().resolve(), Path.home().resolve()}
        target = self.output.resolve()
        if any(target == g or target in g.parents for g in guarded):
            # A slip like `--output_dir . --overwrite` must not delete the working or home directory.
            raise RunMismatchError(
                f"Refusing to overwrite {self.output}: it is (or contains) the current or home directory. "
                "Pick a dedicated output folder."
            )
        entries = self._owned_entries()
        if not entries:
            return
        logger.warning("overwrite=True: removing the old run at %s (%s).", self.output, ", ".join(e.name for e in entries))
        trash = self.output.parent / f"{self._trash_prefix()}{uuid.uuid4().hex[:8]}"
        trash.mkdir()
        for entry in entries:
            os.replace(entry, trash / entry.name)
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_leftovers(self) -> None:
        parent = self.output.parent
        if parent.is_dir():
            # A killed overwrite's trash folder.
            for stale in parent.glob(self._trash_prefix() + "*"):
                shutil.rmtree(stale, ignore_errors=True)
        if self.single_file:
            for entry in self._old_entries() + [self.output]:
                remove_temp_files(parent, entry.name)
        elif self.output.is_dir():
            remove_temp_files(self.output, recursive=True)

    def _has_results(self) -> bool:
        if self.single_file:
            return self.output.exists() or self.output.is_symlink()  # a sibling FILE.* is not this run's
        if not self.output.is_dir():
            return self.output.exists()
        return any(self.output.iterdir())

    def _prepare(self, overwrite: bool) -> Dict[str, Any]:
        """Rank 0: check the manifest against the fingerprint, then start fresh, resume or refuse."""
        self._clean_leftovers()
        if overwrite:
            self._remove_old()
        manifest = self._manifest_dict()
        if self.manifest_path.is_file():
            try:
                old = read_json(self.manifest_path)
            except (OSError, ValueError):
                old = None
            if not isinstance(old, dict) or "fingerprint" not in old:
                raise RunMismatchError(
                    f"{self.output}: the run manifest {self.manifest_path} is unreadable; start over with "
                    "--overwrite (overwrite=True) or write to another output."
                )
            changes = manifest_differences(old, manifest)
            if changes:
                raise RunMismatchError(
                    f"{self.output} holds a {old.get('kind')} run made with other settings ("
                    + "; ".join(changes)
                    + "). Start over with --overwrite (overwrite=True in Python), or write to another output."
                )
            self.resumed = True
            # The digest the run stamped its results with: a manifest that matches through a legacy identity
            # (:func:`register_legacy_fingerprint`) has another digest than the rerun's fingerprint.
            recorded = old.get("digest")
            return {"resumed": True, "digest": recorded if isinstance(recorded, str) and recorded else None}
        if self._has_results():
            raise RunMismatchError(
                f"{self.output} already holds files but no run manifest ({self.manifest_path.name}), so its "
                "settings are unknown (made by an older version or by hand). Start over with --overwrite "
                "(overwrite=True in Python), or write to another output."
            )
        if not self.single_file:
            self.output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)
        return {"resumed": False}

    def _manifest_dict(self) -> Dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "kind": self.kind,
            "package_version": _package_version(),
            "fingerprint": self.fingerprint,
            "digest": self.digest,
            "written": self._written_names(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _lock_path_of(output: Path) -> Path:
    """The lock file of an output, keyed on its resolved real path: ``calib`` and a symlink to it (or a path
    through a symlinked folder) share one lock, so two runs cannot write the same folder by two names."""
    real = Path(os.path.realpath(output))
    return real.parent / f".{real.name}.lock"


def _portable_error(err: BaseException) -> BaseException:
    """``err`` if it survives pickling (to reach the other ranks), else a RuntimeError carrying its message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any unpicklable error is replaced, never lost
        return RuntimeError(f"{type(err).__name__}: {err}")


class open_run:  # noqa: N801 - used as a function: ``with open_run(...) as run``
    """Open (create, resume or overwrite) the output of a resumable run; a context manager.

    Args:
        output (`str` or `os.PathLike`): the run's folder, or with ``single_file=True`` its one output file.
        fingerprint (`dict`): JSON-able settings that change the outputs (see the ``*_fingerprint`` helpers).
            Nested dicts are compared key by key, and the error names the dotted key (``model.weights``).
        kind (`str`, *optional*, defaults to `"generate"`): what writes the run; a run of another kind in the
            same place is refused like a changed setting.
        overwrite (`bool`, *optional*, defaults to `False`): remove the old run (what its manifest lists as
            written; moved aside, then deleted) and start fresh instead of refusing a mismatch. An output with
            files but no readable manifest is refused, naming them.
        single_file (`bool`, *optional*, defaults to `False`): the output is one file; the manifest is
            ``<file>.run.json`` and overwriting removes the file and its manifest (no other ``<file>.*``).
        state (`accelerate.PartialState`, *optional*): the process layout; default ``torch.distributed`` when
            initialised, else one process.

    Raises:
        RunLockedError: another process holds the output.
        RunMismatchError: the output holds a run with other settings (or files with no manifest).
        DistributedSetupError: ``WORLD_SIZE > 1`` without an initialised process group.

    Examples:

    ```python
    >>> import tempfile, os
    >>> from hf_stackshape.utils.runs import open_run, RunMismatchError
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> with open_run(out, {"weight": 0.5}, kind="demo") as run:
    ...     run.resumed
    False
    >>> with open_run(out, {"weight": 0.5}, kind="demo") as run:
    ...     run.resumed
    True
    >>> try:
    ...     open_run(out, {"weight": 2.0}, kind="demo").__enter__()
    ... except RunMismatchError as err:
    ...     print(str(err).split("(")[1].split(")")[0])
    weight: 0.5 -> 2.0

    ```
    """

    def __init__(
        self,
        output: PathLike,
        fingerprint: Dict[str, Any],
        kind: str = "generate",
        overwrite: bool = False,
        single_file: bool = False,
        state=None,
    ):
        if not isinstance(fingerprint, dict):
            raise ValueError(f"`fingerprint` must be a dict of settings, got {type(fingerprint).__name__}.")
        if output is None or str(output) == "":
            raise ValueError("A run needs an output path (a folder, or a file with single_file=True).")
        path = Path(output).expanduser().absolute()
        if single_file and path.is_dir():
            raise ValueError(f"{path} is a folder; a single-file run needs a file path.")
        if not single_file and path.is_file():
            raise ValueError(f"{path} is a file; this run writes a folder there. Pick a folder path.")
        self._args = (path, str(kind), _jsonable(fingerprint), bool(overwrite), bool(single_file), state)
        self.run: Optional[Run] = None

    def __enter__(self) -> Run:
        path, kind, fingerprint, overwrite, single_file, state = self._args
        self._existed = path.exists()
        procs = Processes(state)
        run = Run(path, kind, fingerprint, single_file, procs)
        outcome: Dict[str, Any]
        if procs.is_main:
            try:
                run._acquire()
                outcome = run._prepare(overwrite)
            except BaseException as err:  # broadcast the very error so no rank waits for a timeout
                run._release()
                procs.broadcast({"error": _portable_error(err)})
                raise
            procs.broadcast(outcome)
        else:
            outcome = procs.broadcast(None)
            if "error" in outcome:
                raise outcome["error"]
            run.resumed = bool(outcome["resumed"])
        digests = procs.gather(run.digest)
        if len(set(digests)) > 1:
            run._release()
            ranks = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RunMismatchError(
                f"Ranks {ranks} opened {path} with other settings than rank 0; every rank must load the same "
                "model, reward and settings (check the launch command)."
            )
        if outcome.get("digest"):
            run.digest = outcome["digest"]  # resumed: keep the results stamped with the manifest's digest
        if run.resumed and procs.is_main:
            logger.info("Resuming the %s run in %s (same settings).", kind, path)
        self.run = run
        return run

    def __exit__(self, exc_type, exc, tb) -> None:
        run = self.run
        if run is None:
            return
        try:
            if exc_type is None:
                run.barrier()  # nobody releases the lock while another rank still writes
            else:
                _discard_unused_manifest(run, created=not self._existed)
        finally:
            run._release()


def _discard_unused_manifest(run: Run, created: bool) -> None:
    """After a failure: remove the manifest of a run that was opened fresh and wrote nothing else, so that a
    corrected rerun (another setting after a validation error, say) is not refused as "made with other
    settings". A resumed run, or one that wrote any result, keeps its manifest. Called on rank 0 only, under
    the lock; never raises (the original error matters more)."""
    if run.resumed or not run.is_main:
        return
    try:
        if not run.manifest_path.is_file():
            return
        if run.single_file:
            others = [run.output] if run.output.exists() or run.output.is_symlink() else []
        else:
            others = [p for p in run.output.iterdir() if p != run.manifest_path] if run.output.is_dir() else []
        if others:
            return
        run.manifest_path.unlink()
        if created and not run.single_file:
            run.output.rmdir()
    except OSError as err:  # pragma: no cover - best effort
        logger.warning("Could not remove the unused run manifest %s: %s", run.manifest_path, err)
