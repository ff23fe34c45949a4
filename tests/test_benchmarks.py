"""Every ``stackshape bench`` runs end to end on tiny settings and its correctness checks hold: the fast paths
produce what the reference does (same samples, same tokens, same rewards). Timings are printed by the
benchmarks, never asserted here (see the README's Benchmarks section for measured ratios)."""

import json

import pytest

from hf_stackshape import cli


def _bench(capsys, *argv):
    assert cli.main(["bench", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    return json.loads(out)


def test_every_benchmark_is_smoke_tested():
    from hf_stackshape.commands.bench import BENCHMARKS

    assert set(BENCHMARKS) == {"threshold", "calibrate", "args", "cd", "bon", "device"}, "add the new benchmark here"


@pytest.mark.slow
def test_bench_calibrate_and_bon_sample_what_generate_samples(capsys):
    small = ("--prompts", "2", "--samples", "2", "--max_new_tokens", "3")
    calibrate = _bench(capsys, "calibrate", *small)
    assert calibrate["same_samples_as_generate"] and calibrate["max_reward_diff"] < 1e-4
    bon = _bench(capsys, "bon", *small)
    assert bon["same_samples_as_generate"] and 1.0 <= bon["mean_effective_sample_size"] <= 2.0
    assert {"overhead_vs_sampling", "overhead_vs_sampling_and_reward"} <= set(bon["targets"])


@pytest.mark.slow
def test_bench_args_and_cd_match_their_references(capsys):
    args = _bench(capsys, "args", "--max_new_tokens", "3", "--naive_new_tokens", "3", "--batch_size", "2",
                  "--repeats", "1")
    assert args["naive_same_tokens"] and args["repeats"] == 1 and args["time_args_b2_s"] > 0
    # The RM cache holds head + the 2 tokens fed back per row: bytes per row = columns x bytes per column.
    assert args["rm_cache_bytes_per_row"] == args["rm_cache_columns"] * args["rm_cache_bytes_per_token"] > 0
    assert args["rm_cache_peak_bytes_b2"] > 2 * args["rm_cache_bytes_per_row"]
    assert args["run_peak_memory_mib"] > 100 and "RSS" in args["run_peak_memory_source"]
    cd = _bench(capsys, "cd", "--max_new_tokens", "3", "--repeats", "1")
    assert cd["q_head_shares_base_states"] and cd["ratio_value_k10"] > 0


def test_bench_args_rejects_bad_repeats(capsys):
    assert cli.main(["bench", "args", "--repeats", "0"]) == 2
    assert "repeats" in capsys.readouterr().err


def test_every_bench_reports_its_peak_memory(capsys):
    out = _bench(capsys, "threshold", "--prompts", "50", "--repeats", "1")
    assert out["run_peak_memory_mib"] > 10 and "RSS" in out["run_peak_memory_source"]


@pytest.mark.slow
def test_bench_device_tiny_on_cpu(capsys, tmp_path):
    """The device check's CI run: every method at both batch sizes, memory beside time, the float32 fast-vs-naive
    ARGS verdict (with rewards large enough to change greedy's choice), and the JSON file it writes."""
    from hf_stackshape.benchmarks.device import METHODS

    path = tmp_path / "device.json"
    out = _bench(capsys, "device", "--device", "cpu", "--tiny", "--output", str(path))
    assert json.loads(path.read_text()) == {k: v for k, v in out.items() if not k.startswith(("benchmark", "run_peak"))}
    assert out["device"] == "cpu" and out["dtype"] == "bfloat16" and out["new_tokens"] == 4 and out["complete"]
    runs = out["runs"]
    assert [(r["method"], r["batch"]) for r in runs] == [(m, b) for b in (1, 2) for m in METHODS]
    for r in runs:
        assert r["ms_per_token"] > 0 and r["peak_memory_mib"] > 0 and r["ratio_to_greedy"] > 0
        assert (r.get("rm_cache_bytes_per_row", 0) > 0) == (r["method"] in ("args", "srs_args"))
    assert out["args_fast_equals_naive"] is True and out["args_steps_differing_from_greedy"] > 0
    assert out["args_equality_dtype"] == "float32"


def test_bench_device_rejects_what_cannot_work(capsys):
    assert cli.main(["bench", "device", "--device", "cpu", "--tiny", "--attn_implementation", "flash_attention_2"]) == 2
    assert "4D candidate mask" in capsys.readouterr().err
    assert cli.main(["bench", "device", "--device", "cpu", "--methods", "greedy,beam"]) == 2
    assert "methods" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_device_runs_without_datasets_evaluate_trl(tmp_path):
    """The device machine has torch, transformers, accelerate and peft only: the check must not import the rest,
    and must need no network (the tokenizer is built in memory when no folder is given)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('datasets', 'evaluate', 'trl'): sys.modules[name] = None\n"
        "from hf_stackshape.benchmarks.device import main\n"
        "raise SystemExit(main(['--device', 'cpu', '--tiny', '--methods', 'greedy,args,cd_q,srs_bon', "
        "'--batch_sizes', '1', '--json']))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_STACKSHAPE_CACHE": str(tmp_path / "no-cache")}
    env.pop("TOKENIZER_DIR", None)
    env.pop("STACKSHAPE_TEST_TOKENIZER", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tokenizer"].startswith("byte-level") and out["args_fast_equals_naive"] is True
    assert [r["method"] for r in out["runs"]] == ["greedy", "args", "cd_q", "srs_bon"]
