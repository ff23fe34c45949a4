"""The demo under torchrun (issue 17): 2 gloo ranks print the table and diagnostics one process prints and write
the same results and CD heads; a run started on 2 ranks resumes on 1, the reused heads' validation metrics
included (they are saved with each head).

The demo's tiny settings (tests/test_demo.py), one intra-op thread and MKL_CBWR=AUTO,STRICT in every process
(floating point sums are then bitwise the same in any process, see conftest)."""

import json
import os
import subprocess
import sys

import pytest

from test_demo import _TINY

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

#: Fields of the heads' evaluation that measure time, not the head.
TIMING = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               MKL_CBWR="AUTO,STRICT")
    env.pop("STACKSHAPE_DEBUG", None)
    return env


def _demo(output_dir, nproc=None):
    launch = [] if nproc is None else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [sys.executable, *launch, "-m", "hf_stackshape.cli", "demo", "--output_dir", str(output_dir), *_TINY]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    printed = done.stdout
    assert printed.count("Stackelberg reward shaping demo") == 1, printed[-3000:]  # printed once (rank 0)
    return printed[printed.index("Stackelberg reward shaping demo") : printed.index("\ntable:")], done.stderr


def _diagnostics(folder):
    diagnostics = json.loads((folder / "diagnostics.json").read_text())
    for values in diagnostics.values():
        for name in TIMING:
            values.pop(name, None)
    return diagnostics


def test_demo_on_two_ranks_is_one_process_and_resumes_on_one(tmp_path):
    ref, dp = tmp_path / "one", tmp_path / "two"
    printed, _ = _demo(ref)
    dp_printed, log = _demo(dp, nproc=2)
    assert "one per rank" in log  # the heads really were trained by the ranks' single-process children
    assert dp_printed == printed
    assert "CD head (srs): validation mse" in printed and "vanilla-cd" in printed
    for name in ("results.json", "results.csv"):
        assert (dp / "sweep" / name).read_bytes() == (ref / "sweep" / name).read_bytes(), name
    for transform in ("raw", "srs"):
        head = f"head-{transform}/head/model.safetensors"
        assert (dp / head).read_bytes() == (ref / head).read_bytes(), head
    assert _diagnostics(dp) == _diagnostics(ref)
    assert (dp / "figure2.png").is_file()

    # Interrupted after the heads (the diagnostics, the tables and a CD cell are not written yet), resumed by one
    # process: the heads are reused, with their validation metrics, and the rest is the same.
    heads = {t: (dp / f"head-{t}/head/model.safetensors").stat().st_mtime_ns for t in ("raw", "srs")}
    for name in ("diagnostics.json", "sweep/results.json", "sweep/results.csv", "figure2.png"):
        (dp / name).unlink()
    cells = sorted((dp / "sweep" / "generations").glob("srs-cd*.jsonl"))
    assert cells
    cells[0].unlink()
    resumed, _ = _demo(dp)
    assert resumed == printed
    assert heads == {t: (dp / f"head-{t}/head/model.safetensors").stat().st_mtime_ns for t in ("raw", "srs")}
    assert (dp / "sweep" / "results.json").read_bytes() == (ref / "sweep" / "results.json").read_bytes()
    assert _diagnostics(dp) == _diagnostics(ref)
