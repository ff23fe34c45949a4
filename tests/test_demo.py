"""The demo: settings checks, its run manifest, its statistics and diagnostics, and reproducibility."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_stackshape.demo import DemoConfig, _RangeRecorder, candidate_reward_range, run_demo


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_prompts.*0"):
        DemoConfig(num_prompts=0)
    with pytest.raises(ValueError, match="head_type.*'mlp'"):
        DemoConfig(head_type="mlp")
    with pytest.raises(ValueError, match="methods"):
        DemoConfig(methods=[])


def test_fingerprint_tracks_settings_not_output():
    a = DemoConfig(output_dir="a").fingerprint()
    assert a == DemoConfig(output_dir="b", overwrite=True).fingerprint()
    assert a != DemoConfig(output_dir="a", seed=1).fingerprint()
    assert set(a["assets"]) >= {"prompts.jsonl", "adapter_model.safetensors", "smollm2"}


class _Stop(Exception):
    pass


def test_rerun_with_other_settings_is_refused(tmp_path, monkeypatch):
    """The demo folder is a run: a demo that wrote something keeps its manifest and another setting is refused
    by name; one that failed before writing anything leaves no manifest, so a corrected rerun is not refused."""
    import hf_stackshape.assets.defaults as defaults
    from hf_stackshape.utils.runs import RunMismatchError

    out = tmp_path / "demo"

    def stop(*args, **kwargs):
        raise _Stop()

    monkeypatch.setattr(defaults, "load_smollm2", stop)
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output_dir=str(out), num_prompts=2))
    assert not (out / "run.json").exists()  # failed before writing anything
    with pytest.raises(_Stop):  # so other settings are not refused
        run_demo(DemoConfig(output_dir=str(out), num_prompts=5))

    def write_then_stop(*args, **kwargs):  # interrupted after its first output (as a calibration would write)
        (out / "calibration").mkdir(exist_ok=True)
        (out / "calibration" / "part.jsonl").write_text("{}\n")
        raise _Stop()

    monkeypatch.setattr(defaults, "load_smollm2", write_then_stop)
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output_dir=str(out), num_prompts=2))
    assert (out / "run.json").is_file()
    with pytest.raises(_Stop):  # same settings: resumes (gets as far as loading the model)
        run_demo(DemoConfig(output_dir=str(out), num_prompts=2))
    with pytest.raises(RunMismatchError, match="num_prompts"):
        run_demo(DemoConfig(output_dir=str(out), num_prompts=3))
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output_dir=str(out), num_prompts=3, overwrite=True))


def test_range_recorder_measures_valid_candidates_and_passes_through():
    calls = []

    def inner(rewards, weights=None, mask=None, threshold=None):
        calls.append(rewards)
        return rewards * 2

    rec = _RangeRecorder(inner)
    rewards = torch.tensor([[0.0, 1.0, 5.0], [2.0, 2.5, -9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = rec(rewards, weights=None, mask=mask)
    assert torch.equal(out, rewards * 2) and len(calls) == 1
    assert rec.ranges == [5.0, 0.5]  # the masked -9 is not a candidate


def test_candidate_reward_range_implies_srs_push(tokenizer, tiny_lm):
    from hf_stackshape.rewards import CallableReward

    prompts = ["Tell me a story.", "Say hi."]

    def letters(prompt, response):
        return float(sum(ch in "aeiou" for ch in response)) - 0.1 * len(response)

    out = candidate_reward_range(tiny_lm, tokenizer, CallableReward(letters), prompts, k=4, max_new_tokens=3, batch_size=2)
    assert out["steps"] >= 2  # at least one step per row
    assert out["median_range"] > 0
    assert out["b_eff"] == pytest.approx(min(12.0, 1.01 * out["median_range"]))
    assert out["srs_slope_at_threshold"] == pytest.approx(1.5 * out["b_eff"] / 4)
    flat = candidate_reward_range(tiny_lm, tokenizer, CallableReward(lambda p, r: 1.0), prompts, k=4, max_new_tokens=2)
    assert flat["median_range"] == 0 and flat["srs_slope_at_threshold"] == 0


_TINY = [
    "--num_prompts", "2", "--num_train_prompts", "2", "--num_samples", "2", "--calibration_max_new_tokens", "4",
    "--max_new_tokens", "4", "--weights", "1", "--bon_samples", "2", "--qhead_epochs", "1", "--batch_size", "2",
]


def _demo_table(output_dir: Path, cache: Path = None) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if cache is not None:
        env["HF_STACKSHAPE_CACHE"] = str(cache)  # an empty model cache: SmolLM2 is dequantised afresh
    proc = subprocess.run(
        [sys.executable, "-m", "hf_stackshape.cli", "demo", "--output_dir", str(output_dir), *_TINY],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = proc.stdout
    return printed[printed.index("Stackelberg reward shaping demo") : printed.index("\ntable:")]


@pytest.mark.slow
def test_two_demo_runs_print_the_same_table(tmp_path):
    """Every random stage is seeded: a second run, from an empty model cache, prints the very same table
    (intervals and paired differences included) and diagnostics (the CD heads included)."""
    first = _demo_table(tmp_path / "one")
    second = _demo_table(tmp_path / "two", cache=tmp_path / "empty-cache")
    assert (tmp_path / "empty-cache").is_dir()  # the model really was rebuilt there
    assert "vanilla-cd" in first and "srs-bon" in first
    assert first == second
