"""The package's layers and its freedom from import circles, as `lint-imports` (import-linter) checks them.

The contracts live in pyproject.toml ([tool.importlinter]); CI runs `lint-imports` on the tree. These tests
show that the check passes on the package as it is and fails, naming the import, when a layer imports upward
or two sibling modules import each other.
"""

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package and its import-linter configuration, to break on purpose."""
    shutil.copytree(ROOT / "hf_stackshape", tmp_path / "hf_stackshape", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n\n" + line + "\n")


def test_every_child_of_the_package_is_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    assert layers["exhaustive"] is True
    named = {name.strip() for line in layers["layers"] for name in line.replace("|", ":").split(":")}
    children = {
        p.stem if p.suffix == ".py" else p.name
        for p in (ROOT / "hf_stackshape").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()
    }
    assert children == named, f"in the package but not in a layer: {children - named}; listed but gone: {named - children}"


def test_the_package_keeps_its_layers_and_has_no_import_circles():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(package_copy):
    # utils (layer 0) importing the pipeline (a higher layer), even inside a function, is caught.
    _append(package_copy / "hf_stackshape" / "utils" / "io.py",
            "def _upward():\n    from ..pipeline import generation\n\n    return generation")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "hf_stackshape.utils is not allowed to import hf_stackshape.pipeline" in result.stdout
    assert "hf_stackshape.utils.io -> hf_stackshape.pipeline.generation" in result.stdout


def test_an_import_circle_between_siblings_is_caught(package_copy):
    # Two utils modules that import each other.
    _append(package_copy / "hf_stackshape" / "utils" / "io.py", "from . import memory  # noqa: E402")
    _append(package_copy / "hf_stackshape" / "utils" / "memory.py", "from . import io  # noqa: E402")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "no import circles" in result.stdout and "BROKEN" in result.stdout
    assert "hf_stackshape.utils" in result.stdout
    assert ".memory -> .io" in result.stdout or ".io -> .memory" in result.stdout


def test_an_independent_layer_may_not_import_its_sibling(package_copy):
    # calibration | qhead are independent: neither may import the other.
    _append(package_copy / "hf_stackshape" / "calibration" / "store.py", "from ..qhead import checkpoints  # noqa: E402")
    result = _lint(package_copy)
    assert result.returncode != 0
    assert "hf_stackshape.calibration is not allowed to import hf_stackshape.qhead" in result.stdout


def test_the_copy_is_clean_before_it_is_broken(package_copy):
    # The failures above come from the deliberate edits, not from copying.
    assert _lint(package_copy).returncode == 0


def test_the_readme_module_table_shows_every_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## The pipeline, module by module", 1)[1].split("\n## ", 1)[0]
    missing = []
    for line in layers:
        for name in (n.strip() for n in line.replace("|", ":").split(":")):
            if name.startswith("_"):  # private plumbing (the old-path aliases)
                continue
            if f"`hf_stackshape/{name}/" not in table and f"`hf_stackshape/{name}.py`" not in table:
                missing.append(name)
    assert not missing, f"the README's module table does not show {missing}"
