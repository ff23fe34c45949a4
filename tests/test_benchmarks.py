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

    assert set(BENCHMARKS) == {"threshold", "calibrate", "args", "cd", "bon", "scaling"}, "add the new benchmark here"


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
    cd = _bench(capsys, "cd", "--max_new_tokens", "3", "--repeats", "1")
    assert cd["q_head_shares_base_states"] and cd["ratio_value_k10"] > 0


def test_bench_args_rejects_bad_repeats(capsys):
    assert cli.main(["bench", "args", "--repeats", "0"]) == 2
    assert "repeats" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.distributed
def test_bench_scaling_runs_both_sweeps_and_finds_identical_outputs(capsys, tmp_path, tiny_lm, tiny_rm_model, tokenizer):
    for model, name in ((tiny_lm, "lm"), (tiny_rm_model, "rm")):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    result = _bench(capsys, "scaling", "--model", str(tmp_path / "lm"), "--reward_model", str(tmp_path / "rm"),
                    "--prompts", "4", "--max_new_tokens", "2", "--k", "3", "--batch_size", "1",
                    "--output_dir", str(tmp_path / "out"))
    assert result["identical_outputs"] is True
    assert result["sweep_1_rank_s"] > 0 and result["sweep_2_ranks_s"] > 0 and result["speedup"] > 0
    assert sorted(p.name for p in (tmp_path / "out" / "ranks-2" / "generations").iterdir()) == [
        "base.jsonl", "srs-args_w1.jsonl", "vanilla-args_w1.jsonl"]


def test_bench_scaling_rejects_one_rank(capsys):
    assert cli.main(["bench", "scaling", "--ranks", "1"]) == 2
    assert "ranks" in capsys.readouterr().err
