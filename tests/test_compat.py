"""Old import paths keep working after the package was laid out in layers (hf_stackshape/_compat.py)."""

import importlib
import subprocess
import sys
import warnings

import pytest

from hf_stackshape._compat import MOVED_MODULES


@pytest.mark.parametrize("old, new", sorted(MOVED_MODULES.items()))
def test_an_old_path_is_the_moved_module_itself(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)  # the same object: monkeypatching either path patches both
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(old in m and new in m for m in messages), messages


def test_old_from_imports_and_attributes_work_in_a_fresh_process():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import hf_stackshape.utils.runs as new\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from hf_stackshape.runs import open_run, model_fingerprint\n"
        "from hf_stackshape.generation import generate_responses, parse_method\n"
        "from hf_stackshape.shaping import solve_threshold\n"
        "from hf_stackshape.defaults import smollm2_path\n"
        "import hf_stackshape.sweep, hf_stackshape.qhead.trainer\n"
        "assert open_run is new.open_run\n"
        "assert parse_method('srs-args').decoder == 'args'\n"
        "import hf_stackshape\n"
        "assert hf_stackshape.runs is new\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_new_paths_do_not_warn():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import hf_stackshape\n"
        "from hf_stackshape.utils.runs import open_run\n"
        "from hf_stackshape.pipeline.generation import generate_responses\n"
        "from hf_stackshape.core.shaping import solve_threshold\n"
        "from hf_stackshape import ThresholdCalibrator, ARGSLogitsProcessor, run_sweep\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_unknown_names_are_still_errors():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hf_stackshape.no_such_module")
