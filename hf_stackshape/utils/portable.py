"""Code that runs without hf_stackshape: ``custom_generate`` folders and self-contained Q-head modeling code.

transformers 5 loads a decoding method from a repository's ``custom_generate/generate.py`` (``model.generate(
custom_generate="org/repo", trust_remote_code=True, ...)``; a local folder works too) and a model class from the
``configuration_*.py`` / ``modeling_*.py`` files its ``config.json`` names in ``auto_map`` (``AutoModel.
from_pretrained(repo, trust_remote_code=True)``). Both loaders accept only *flat* sibling modules (``from .x
import y``; ``from ..x`` fails) and refuse a file that imports a package the environment lacks -- anywhere in
the file, even inside a function that never runs (their import scanner skips only ``try`` blocks).

This module writes such folders from the library's own source, so there is one source of truth: each library
module of a bundle becomes one flat file, its relative imports are rewritten to the flat names, and an import
that is not part of the bundle (inside a function only) becomes an ``ImportError`` that says what to install:

* a relative import of a library module left out of the bundle -> ``pip install hf_stackshape``;
* an optional package (``peft``, ``vaderSentiment``...) -> kept inside ``try``, re-raised with its ``pip install``.

A module-level import of anything else than the standard library, torch, transformers and the packages
transformers itself installs (:data:`ALLOWED_PACKAGES`) is refused at export time. The exports implement
SRS-ARGS, SRS-CD and SRS-BoN (Wang et al., 2026, arXiv 2602.02572) on top of ARGS (Khanov et al., 2024) and CD
(Mudgal et al., 2023).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

from .io import atomic_write_text

__all__ = [
    "ALLOWED_PACKAGES",
    "GENERATE_METHODS",
    "bundle_sources",
    "export_generate",
    "head_code_files",
    "write_head_code",
]

#: Packages an export may import at module level: torch, transformers and what transformers itself installs.
ALLOWED_PACKAGES = frozenset({"torch", "transformers", "tqdm", "huggingface_hub", "safetensors", "numpy"})

_LIB = "hf_stackshape"

# Library module -> flat file stem in the export. Flat names carry a prefix so they never shadow a package.
_CORE = {
    "hf_stackshape.core.shaping": "srs_shaping",
    "hf_stackshape.core.presets": "srs_presets",
    "hf_stackshape.utils.deprecation": "srs_deprecation",
    "hf_stackshape.utils.io": "srs_io",
    "hf_stackshape.utils._version": "srs_version",
    "hf_stackshape.utils.distributed": "srs_distributed",
    "hf_stackshape.utils.runs": "srs_runs",
    "hf_stackshape.utils.memory": "srs_memory",
    "hf_stackshape.rewards.adapters": "srs_rewards",
    "hf_stackshape.rewards.table": "srs_reward_table",
    "hf_stackshape.utils.kv_cache": "srs_prefix_cache",
    "hf_stackshape.utils.modeling": "srs_modeling",
    "hf_stackshape.utils.prompts": "srs_prompts",
    "hf_stackshape.utils.dialogue": "srs_dialogue",
}
_GUIDANCE = {
    "hf_stackshape.guidance._base": "srs_guidance_base",
    "hf_stackshape.utils.checks": "srs_guidance_checks",
}
_HEAD = {
    "hf_stackshape.qhead.configuration_qhead": "configuration_qhead",
    "hf_stackshape.qhead.modeling_qhead": "modeling_qhead",
    "hf_stackshape.utils.io": "srs_io",
    "hf_stackshape.utils.modeling": "srs_modeling",
    "hf_stackshape.core.presets": "srs_presets",
    # Not a library module: written from the card template (package data the flat copy cannot read).
    "hf_stackshape.qhead.qhead_card": "qhead_card",
}
#: Flat modules made from package data rather than copied: module -> function returning the source.
_GENERATED = {
    "hf_stackshape.qhead.qhead_card": lambda: (
        '"""The Q-head model card template (hf_stackshape/model_cards/qhead.md)."""\n\nTEMPLATE = '
        + repr(resources.files(_LIB).joinpath("model_cards/qhead.md").read_text(encoding="utf-8"))
        + "\n"
    ),
}

#: ``stackshape export-generate --method`` -> (template folder, library modules bundled with it).
GENERATE_METHODS: Dict[str, tuple] = {
    "srs-args": ("srs_args", {**_CORE, **_GUIDANCE, "hf_stackshape.guidance.args": "srs_args"}),
    "srs-cd": ("srs_cd", {**_CORE, **_GUIDANCE, **_HEAD, "hf_stackshape.guidance.cd": "srs_cd"}),
    "srs-bon": ("srs_bon", {
        **_CORE,
        "hf_stackshape.utils.sampling": "srs_sampling",
        "hf_stackshape.core.methods": "srs_methods",
        "hf_stackshape.core.follower": "srs_follower",
        "hf_stackshape.bon": "srs_bon",
    }),
}


_MISSING_LIBRARY = (
    "{target} is part of the hf_stackshape library, not of this self-contained export; "
    "install it with `pip install hf_stackshape` for this feature."
)


def _stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name == "__future__"


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"Cannot find the source of {module!r}.")
    return Path(spec.origin).read_text(encoding="utf-8")


def _package_of(module: str) -> str:
    spec = importlib.util.find_spec(module)
    is_package = spec is not None and spec.submodule_search_locations is not None
    return module if is_package else module.rpartition(".")[0]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _rewrite(module: str, source: str, flat: Dict[str, str]) -> str:
    """``source`` of library ``module`` with its imports rewritten for the flat bundle ``flat``."""
    tree = ast.parse(source)
    top_level = set()
    for node in tree.body:
        top_level.add(id(node))
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            top_level.update(id(child) for child in node.body + node.orelse)
    edits = []  # (first line, last line, replacement lines)
    lines = source.splitlines()
    package = _package_of(module)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        at_top = id(node) in top_level
        pad = _indent(lines[node.lineno - 1])
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        if isinstance(node, ast.ImportFrom) and node.level:
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if node.module is None:  # `from . import x`: x may be a submodule
                subs = [f"{target}.{a.name}" for a in node.names]
                if all(s in flat for s in subs):
                    new = [f"{pad}from . import " + ", ".join(
                        flat[s] + f" as {a.asname or a.name}" for s, a in zip(subs, node.names)
                    )]
                    edits.append((node.lineno, node.end_lineno, new))
                    continue
            if target in flat:
                edits.append((node.lineno, node.end_lineno, [f"{pad}from .{flat[target]} import {names}"]))
                continue
            if at_top:
                raise ValueError(f"{module} imports {target} at module level: add it to the bundle.")
            message = _MISSING_LIBRARY.format(target=target)
            edits.append((node.lineno, node.end_lineno, [f"{pad}raise ImportError({message!r})"]))
            continue
        tops = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else {node.module.split(".")[0]}
        optional = sorted(t for t in tops if not (_stdlib(t) or t in ALLOWED_PACKAGES))
        if not optional:
            continue
        if at_top:
            raise ValueError(f"{module} imports {optional} at module level; a portable export cannot require it.")
        install = " ".join(optional)
        message = f"This feature needs {install}: pip install {install}"
        edits.append(
            (
                node.lineno,
                node.end_lineno,
                [
                    f"{pad}try:",
                    f"{pad}    {ast.unparse(node)}",
                    f"{pad}except ImportError as _missing:",
                    f"{pad}    raise ImportError({message!r}) from _missing",
                ],
            )
        )
    for first, last, new in sorted(edits, reverse=True):
        lines[first - 1 : last] = new
    return "\n".join(lines) + "\n"


def _header(module: str) -> str:
    from ._version import __version__

    path = module.replace(".", "/") + ".py"
    return (
        f"# Generated by hf_stackshape {__version__} (hf_stackshape.utils.portable) from {path}; imports rewritten for a\n"
        "# flat, self-contained folder. Edit the library, not this file. Wang et al., 2026, arXiv 2602.02572.\n"
    )


def bundle_sources(modules: Dict[str, str]) -> Dict[str, str]:
    """Flat file name -> source for the library ``modules`` (library module -> flat stem)."""
    return {
        f"{stem}.py": _header(module)
        + (_GENERATED[module]() if module in _GENERATED else _rewrite(module, _source(module), modules))
        for module, stem in modules.items()
    }


def _write_files(folder: Path, files: Dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(str(folder / name), text)


# ------------------------------------------------------------------------------------------------ Q-heads


def head_code_files() -> Dict[str, str]:
    """The self-contained ``configuration_qhead.py``, ``modeling_qhead.py`` and their flat helpers."""
    return bundle_sources(_HEAD)


def write_head_code(folder: Union[str, os.PathLike]) -> None:
    """Write the head's modeling code next to a saved head (its config names it in ``auto_map``)."""
    _write_files(Path(folder), head_code_files())


# ------------------------------------------------------------------------------------------ custom_generate


def _template(name: str, file: str) -> str:
    return resources.files(_LIB).joinpath("custom_generate", name, file).read_text(encoding="utf-8")


def export_generate(
    method: str,
    output_dir: Union[str, os.PathLike],
    qhead: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Write a ``custom_generate`` folder for ``method`` (``"srs-args"``, ``"srs-cd"`` or ``"srs-bon"``).

    The folder ``output_dir`` gets ``README.md`` (the Hub's ``custom_generate`` card, every argument documented),
    and ``custom_generate/`` with ``generate.py``, ``requirements.txt`` and the library modules it needs as flat
    files. Load it with ``model.generate(custom_generate=str(output_dir), trust_remote_code=True, ...)``, or push
    the folder to a Hub repository and pass its id.

    Args:
        method (`str`): ``"srs-args"``, ``"srs-cd"`` or ``"srs-bon"``.
        output_dir (`str` or `os.PathLike`): the folder to write (created; must be empty unless ``overwrite``).
        qhead (`str`, *optional*): for ``srs-cd``, the Q-head repository id or folder recorded as the default
            ``qhead`` argument (callers can still pass another).
        overwrite (`bool`, *optional*, defaults to `False`): replace the files of an existing export.

    Returns:
        `Path`: ``output_dir``.
    """
    if method not in GENERATE_METHODS:
        raise ValueError(f"Unknown method {method!r}; export-generate supports {sorted(GENERATE_METHODS)}.")
    if qhead is not None and method != "srs-cd":
        raise ValueError(f"`qhead` is an srs-cd argument; {method} does not use a Q-head.")
    out = Path(output_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose a new --output_dir or pass --overwrite.")
    name, modules = GENERATE_METHODS[method]
    files = bundle_sources(modules)
    generate = _template(name, "generate.py")
    if method == "srs-cd":
        generate = generate.replace("DEFAULT_QHEAD = None", f"DEFAULT_QHEAD = {qhead!r}", 1)
    files["generate.py"] = generate
    files["requirements.txt"] = _template(name, "requirements.txt")
    _write_files(out / "custom_generate", files)
    readme = _template(name, "README.md").replace("{{QHEAD}}", repr(qhead))
    atomic_write_text(str(out / "README.md"), readme)
    return out


def imports_of(folder: Union[str, os.PathLike]) -> Dict[str, Iterable[str]]:
    """Top-level packages each ``.py`` file of ``folder`` imports, found by transformers' own import scanner."""
    from transformers.dynamic_module_utils import get_imports

    return {p.name: get_imports(str(p)) for p in sorted(Path(folder).glob("*.py"))}
