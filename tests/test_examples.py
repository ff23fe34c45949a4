"""Every script in ``examples/`` runs, as a user would start it, on small settings (offline, the bundled SmolLM2),
and writes what its docstring says. A changed API that breaks an example breaks this test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _start(script, args, workdir, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _run(script, args, workdir):
    done = _start(script, args, workdir)
    assert done.returncode == 0, f"examples/{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_every_example_is_tested():
    tested = {"bon_utility.py", "srs_cd_pipeline.py", "train_demo_reward_model.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested, "add the new example to tests/test_examples.py"


@pytest.mark.slow
def test_bon_utility(tmp_path):
    out = tmp_path / "bon"
    printed = json.loads(_run("bon_utility.py", ["--output_dir", str(out), "--prompts", "3", "--samples", "3",
                                                 "--max_new_tokens", "6"], tmp_path))
    rows = json.loads((out / "bon_utility.json").read_text())
    assert (out / "bon_utility.png").stat().st_size > 10_000
    assert {row["transform"] for row in rows} >= {"raw", "srs", "hard"}
    best = printed["classic_best_of_n_guiding"]
    assert best["n"] == 3 and best["ci_low"] <= best["mean"] <= best["ci_high"]


@pytest.mark.slow
def test_srs_cd_pipeline(tmp_path):
    args = ["--num_prompts", "4", "--num_eval_prompts", "3", "--num_samples", "2", "--max_new_tokens", "5",
            "--epochs", "1", "--output_dir", str(tmp_path / "run")]
    printed = _run("srs_cd_pipeline.py", args, tmp_path)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["average_reward"]) == {"greedy", "cd-vanilla", "cd-srs"}
    for name in ("cd-vanilla", "cd-srs"):
        diff = results["average_reward"][name]["minus_greedy"]
        assert diff["n"] == 3 and diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
        assert f"{name}: average reward" in printed
    # The same command again reuses the calibration (its chunks are not rewritten) and, seeded, gives the same
    # results; other settings into the same folder are refused.
    chunks = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "calibration").glob("chunk-*")}
    assert chunks
    _run("srs_cd_pipeline.py", args, tmp_path)
    assert {p: p.stat().st_mtime_ns for p in chunks} == chunks
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results
    other = _start("srs_cd_pipeline.py", [*args, "--num_samples", "3"], tmp_path)
    assert other.returncode != 0 and "num_samples" in other.stderr and "--overwrite" in other.stderr


@pytest.mark.slow
def test_train_demo_reward_model(tmp_path):
    from hf_stackshape.assets.demo import load_demo_reward_model

    args = ["--samples_per_prompt", "2", "--max_prompts", "8", "--max_new_tokens", "8", "--steered_samples", "0",
            "--num_train_epochs", "1", "--min_margin", "0", "--eval_fraction", "0.25",
            "--samples_path", str(tmp_path / "samples.jsonl"), "--output_dir", str(tmp_path / "rm")]
    _run("train_demo_reward_model.py", args, tmp_path)
    info = json.loads((tmp_path / "rm" / "training_info.json").read_text())
    assert info["args"]["samples_per_prompt"] == 2
    assert (tmp_path / "rm" / "adapter_model.safetensors").stat().st_size < 5_000_000
    rm = load_demo_reward_model(tmp_path / "rm", batch_size=4)
    rewards = rm.score(["How are you?"], ["I am well, thank you."])
    assert rewards.shape == (1,) and bool(rewards.isfinite().all())
    # Rerun: the sampled answers are read back from the cache, not sampled again.
    cached = (tmp_path / "samples.jsonl").read_text()
    _run("train_demo_reward_model.py", args, tmp_path)
    assert (tmp_path / "samples.jsonl").read_text() == cached
