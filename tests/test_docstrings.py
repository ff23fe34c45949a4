"""The ``>>>`` examples in the package's docstrings run and print what they show (``doctest``, one test per
module). Examples that load the bundled SmolLM2 models are marked slow; the few that need a network (the Hub,
a judge server) say why next to their ``# doctest: +SKIP``."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

import hf_stackshape

PACKAGE = Path(hf_stackshape.__file__).parent

# Modules whose examples load the bundled SmolLM2-135M (base model, demo reward model): seconds each.
SLOW = {
    "hf_stackshape.assets.demo",
    "hf_stackshape.bon",
    "hf_stackshape.calibration.calibrator",
    "hf_stackshape.guidance.args",
    "hf_stackshape.guidance.cd",
    "hf_stackshape.guidance.guided",
    "hf_stackshape.qhead.modeling_qhead",
    "hf_stackshape.utils.kv_cache",
}
# The `evaluate` metric scripts are not modules of the package: `load_metric` loads them by path.
METRICS_DIR = PACKAGE / "evaluation" / "metrics"


def _module_names():
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if "custom_generate" in rel.parts or METRICS_DIR in path.parents:
            continue
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


MODULES = _module_names()
METRICS = sorted(p.parent.name for p in METRICS_DIR.glob("*/*.py") if ">>>" in p.read_text(encoding="utf-8"))


class _FencedParser(doctest.DocTestParser):
    """Our docstrings wrap examples in Markdown fences (as transformers' do): a closing fence right after an
    expected output is not part of it."""

    _FENCE = re.compile(r"^[ \t]*```\w*[ \t]*$", re.MULTILINE)

    def parse(self, string, name="<string>"):
        return super().parse(self._FENCE.sub("", string), name)


def _run(tests, globs=None):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    report = []
    for test in tests:
        if globs:
            test.globs.update(globs)
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    return results


def _finder():
    return doctest.DocTestFinder(exclude_empty=True, parser=_FencedParser())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODULES]
)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    results = _run(_finder().find(module))
    assert results.attempted > 0, f"{name} has `>>>` lines but no example ran (all skipped?)"


@pytest.mark.parametrize("name", METRICS)
def test_metric_card_examples(name, tmp_path, monkeypatch):
    from hf_stackshape.evaluation import load_metric

    monkeypatch.chdir(tmp_path)
    metric_class = type(load_metric(name))
    results = _run(_finder().find(metric_class, name), globs={"load_metric": load_metric})
    assert results.attempted > 0


def test_every_module_with_examples_is_collected():
    assert len(MODULES) >= 25 and len(METRICS) == 5
    assert SLOW <= set(MODULES), sorted(SLOW - set(MODULES))


def test_skipped_examples_say_why():
    """An example that cannot run here says why on its line (before ``# doctest: +SKIP``)."""
    bare = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "doctest: +SKIP" in line and line.count("#") < 2:
                bare.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert bare == [], "\n".join(bare)
