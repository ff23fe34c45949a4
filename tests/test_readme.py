"""The README is tested: every ```bash block and ```python snippet in README.md runs here, verbatim.

How blocks are classified (an HTML comment on the line before a fence, invisible on GitHub):

* no comment: the block runs as written. Bash blocks run in order, each with ``bash -e``, in one temporary
  folder (the quick tour's files are made by the README itself); Python snippets run in order in one
  interpreter, building on each other, in another temporary folder; both offline (``HF_HUB_OFFLINE=1``) on the
  embedded defaults.
* ``<!-- readme-test: setup -->``: a set-up command (``pip install ... && cmd``). Installing is exempt; the rest
  is checked cheaply: every ``stackshape`` command in it must exist and parse its options (``--help``), and a
  ``pytest`` command's options must be accepted (collecting this file only).
* ``<!-- readme-test: gpu -->``: needs a GPU or the Hub. It must compile, its imports must resolve, and the next
  block of the same language is its offline twin (run like any other block), which must use every
  ``hf_stackshape`` name the GPU block imports.

A README edit that breaks a block breaks a test here; :func:`test_runner_catches_a_broken_block` shows that the
runner does fail on a broken block.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
#: Fence languages that are text, not code (tables of output, citations).
TEXT = {"", "text", "console-output", "bibtex", "yaml", "json"}
MARKERS = {"setup", "gpu"}
_MARKER = re.compile(r"<!--\s*readme-test:\s*([\w-]+)\s*-->")
_FENCE = re.compile(r"^```([\w-]*)[^\n]*$")


@dataclass
class Block:
    lang: str  # "bash" or "python" (normalised), or the raw fence language of a text block
    code: str
    line: int  # line of the opening fence in README.md (1-based)
    marker: Optional[str] = None

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def parse_blocks(text: str) -> List[Block]:
    """Every fenced block of a markdown text, with the ``readme-test`` marker on the line before it."""
    lines = text.splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"README.md:{start + 1}: a fence is never closed.")
        marker = None
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0:
            found = _MARKER.search(lines[j])
            if found:
                marker = found.group(1)
        raw = match.group(1).lower()
        blocks.append(Block(RUNNABLE.get(raw, raw), "\n".join(body) + "\n", start + 1, marker))
        i += 1
    return blocks


def readme_blocks() -> List[Block]:
    return parse_blocks(README.read_text(encoding="utf-8"))


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]),
    )
    # `stackshape` and `python` resolve to this interpreter's environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(command: List[str], workdir: Path, timeout: float, what: str) -> str:
    proc = subprocess.run(command, cwd=workdir, env=_env(workdir), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{what} exited {proc.returncode}\n--- stdout (tail) ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr (tail) ---\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def run_bash_blocks(blocks: List[Block], workdir: Path, timeout: float = 900) -> None:
    """Run bash blocks in order in ``workdir``; raise AssertionError naming the failing block's README line."""
    for block in blocks:
        _run(["bash", "-e", "-o", "pipefail", "-c", block.code], workdir, timeout, f"The bash block at {block.where}:\n{block.code}")


_PY_RUNNER = textwrap.dedent(
    """
    import json, sys
    namespace = {"__name__": "__main__"}
    for where, code in json.load(open(sys.argv[1])):
        print(f"### running {where}", flush=True)
        exec(compile(code, where, "exec"), namespace)
    """
)


def run_python_blocks(blocks: List[Block], workdir: Path, timeout: float = 900) -> str:
    """Run Python snippets in order in one interpreter (they build on each other); tracebacks name README lines."""
    import json

    script = workdir / "_readme_blocks.json"
    script.write_text(json.dumps([[b.where, b.code] for b in blocks]))
    return _run([sys.executable, "-c", _PY_RUNNER, str(script)], workdir, timeout, "A README Python snippet")


def _runnable(blocks: List[Block], lang: str) -> List[Block]:
    return [b for b in blocks if b.lang == lang and b.marker is None]


# ------------------------------------------------------------------------------------------ structure


def test_every_block_is_classified():
    blocks = readme_blocks()
    assert blocks, "README.md has no fenced blocks"
    for i, block in enumerate(blocks):
        assert block.lang in ("bash", "python") or block.lang in TEXT, (
            f"{block.where}: fence language {block.lang!r} is neither run (bash/python) nor known text {sorted(TEXT)}"
        )
        if block.marker is not None:
            assert block.marker in MARKERS, f"{block.where}: unknown readme-test marker {block.marker!r}"
            assert block.lang in ("bash", "python"), f"{block.where}: marker on a {block.lang!r} block"
        if block.marker == "gpu":
            twin = next((b for b in blocks[i + 1 :] if b.lang == block.lang), None)
            assert twin is not None and twin.marker is None, (
                f"{block.where}: a GPU/Hub block needs an offline twin: the next {block.lang} block, unmarked"
            )
    assert _runnable(blocks, "bash"), "no runnable bash block (the quick tour)"
    assert _runnable(blocks, "python"), "no runnable Python snippet"


def test_parser_reads_markers_and_languages():
    text = "x\n<!-- readme-test: gpu -->\n```python\nimport os\n```\n\n```python title\nprint(1)\n```\n```bibtex\n@a{}\n```\n"
    blocks = parse_blocks(text)
    assert [(b.lang, b.marker, b.line) for b in blocks] == [("python", "gpu", 3), ("python", None, 7), ("bibtex", None, 10)]
    assert blocks[0].code == "import os\n"
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```bash\necho hi\n")


def test_runner_catches_a_broken_block(tmp_path):
    good = Block("bash", "echo made > made.txt\n", 1)
    broken = Block("bash", "test -f made.txt\nstackshape no-such-command\n", 7)
    run_bash_blocks([good], tmp_path)
    with pytest.raises(AssertionError, match=r"README.md:7"):
        run_bash_blocks([good, broken], tmp_path)
    with pytest.raises(AssertionError, match=r"README.md:3"):
        run_python_blocks([Block("python", "x = 1\n", 1), Block("python", "assert x == 2, 'x'\n", 3)], tmp_path)


def test_paper_vs_defaults_table_matches_presets():
    """The README's "paper vs our defaults" table is the one kept next to the preset, verbatim."""
    from hf_stackshape.core.presets import paper_vs_defaults_markdown

    table = paper_vs_defaults_markdown()
    assert table in README.read_text(encoding="utf-8"), (
        "README.md's paper-vs-defaults table differs from hf_stackshape.core.presets.PAPER_VS_DEFAULTS; paste the output of\n"
        "python -c 'from hf_stackshape.core.presets import paper_vs_defaults_markdown as t; print(t(), end=\"\")'\n"
        f"in its place:\n{table}"
    )



def test_module_table_names_real_modules_and_names():
    """Every path in "The pipeline, module by module" exists, and every public name in a row is defined in it."""
    import importlib

    text = README.read_text(encoding="utf-8")
    section = text.split("## The pipeline, module by module", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) >= 8
    for row in rows:
        _, module_cell, names_cell = [cell.strip() for cell in row.strip("|").split("|")]
        paths = re.findall(r"`([^`]+)`", module_cell)
        modules = []
        for path in paths:
            full = ROOT / path if "/" in path else ROOT / "hf_stackshape" / path  # a bare name: in the package
            assert full.exists(), f"README module table: {path} does not exist"
            dotted = str(full.relative_to(ROOT)).removesuffix(".py").strip("/").replace("/", ".")
            modules.append(importlib.import_module(dotted))
        for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", names_cell):
            assert any(hasattr(m, name) for m in modules), f"README module table: {name} is not in {paths}"


# ------------------------------------------------------------------------------------------ checks


def _imported_names(tree: ast.AST, package: str) -> List[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package:
            names += [a.name for a in node.names]
    return names


def test_gpu_blocks_compile_and_have_twins():
    blocks = readme_blocks()
    checked = 0
    for i, block in enumerate(blocks):
        if block.marker != "gpu":
            continue
        twin = next(b for b in blocks[i + 1 :] if b.lang == block.lang)
        if block.lang == "python":
            tree = ast.parse(block.code, block.where)
            # The imports resolve (cheap: no model is loaded).
            imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(body=imports, type_ignores=[]), block.where, "exec"), {})
            used = set(re.findall(r"\w+", twin.code))
            missing = [n for n in _imported_names(tree, "hf_stackshape") if n not in used]
            assert not missing, f"{block.where}: its offline twin ({twin.where}) never uses {missing}"
        else:
            proc = subprocess.run(["bash", "-n", "-c", block.code], capture_output=True, text=True)
            assert proc.returncode == 0, f"{block.where}: bash syntax error: {proc.stderr}"
            commands = set(re.findall(r"hf_stackshape\.cli (\S+)", block.code))
            assert commands <= set(re.findall(r"hf_stackshape\.cli (\S+)", twin.code)), (
                f"{block.where}: its twin ({twin.where}) does not run the same commands {sorted(commands)}"
            )
        checked += 1
    assert checked, "no GPU/Hub block found: drop this test or mark the GPU blocks"


def _setup_commands(block: Block) -> List[List[str]]:
    """The non-install parts of a set-up line: ``pip install A && pip install B && CMD`` -> [CMD]."""
    out = []
    for part in block.code.replace("\\\n", " ").split("&&"):
        words = shlex.split(part)
        while words and re.match(r"^[A-Z_]+=", words[0]):  # environment assignments
            words = words[1:]
        if not words or words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
            continue
        out.append(words)
    return out


def test_setup_commands_parse(tmp_path):
    blocks = [b for b in readme_blocks() if b.marker == "setup"]
    assert len(blocks) == 2, "the README has the two set-up commands (demo and tests)"
    seen = []
    for block in blocks:
        commands = _setup_commands(block)
        assert commands, f"{block.where}: a set-up block that only installs"
        for words in commands:
            if words[0] == "stackshape":
                check = words + ["--help"]
            elif words[:3] == ["python", "-m", "pytest"]:
                # The options are accepted; collect this file only.
                check = [sys.executable, "-m", "pytest", *words[3:], "--collect-only", "-p", "no:cacheprovider",
                         str(Path(__file__))]
            elif words == ["lint-imports"]:
                check = words  # cheap: it checks the layers contract (pyproject.toml) and returns
            else:
                raise AssertionError(f"{block.where}: no cheap check for {' '.join(words)!r}; add one here")
            if check[0] == "stackshape":
                check = [sys.executable, "-m", "hf_stackshape.cli", *check[1:]]
            proc = subprocess.run(check, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"{block.where}: {' '.join(words)} fails its check:\n{proc.stdout}\n{proc.stderr}"
            seen.append(words[0])
    assert "stackshape" in seen and "python" in seen


# ------------------------------------------------------------------------------------------ running


def test_readme_bash_blocks_run(tmp_path):
    """The quick tour (and every other unmarked bash block) runs in order, offline, in one empty folder."""
    blocks = _runnable(readme_blocks(), "bash")
    run_bash_blocks(blocks, tmp_path)
    # The tour ends with a win-tie rate and a figure.
    assert list(tmp_path.rglob("*.png")), "the quick tour made no figure"
    assert any("win_tie" in p.read_text() for p in tmp_path.rglob("*.json")), "the quick tour computed no win-tie rate"


def test_readme_python_snippets_run(tmp_path):
    """Every unmarked Python snippet runs, in order, in one interpreter (they build on each other)."""
    blocks = _runnable(readme_blocks(), "python")
    out = run_python_blocks(blocks, tmp_path)
    assert out.count("### running") == len(blocks)
