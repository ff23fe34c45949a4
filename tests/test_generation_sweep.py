"""Method parsing, batched guided generation, sweeps with plots, and the generate/sweep CLI on tiny models."""

import json
import subprocess
import sys

import pytest
import torch

from hf_stackshape.pipeline.generation import format_prompts, generate_responses, parse_method
from hf_stackshape.rewards import CallableReward, HFRewardModel
from hf_stackshape.pipeline.sweep import SweepConfig, format_table, plot_sweep, run_sweep

PROMPTS = ["Say something nice.", "What is the capital of France? Answer briefly please.", "Hi"]


def test_parse_method_names():
    assert parse_method("srs-args").decoder == "args" and parse_method("srs-args").transform == "srs"
    assert parse_method("args").transform == "raw" and parse_method("vanilla-cd").transform == "raw"
    assert parse_method("base").decoder is None
    assert parse_method("soft-cd").transform == "srs"
    assert parse_method("minmax-args").label == "minmax-args"
    for bad in ("srs", "foo-args", "srs-ppo", ""):
        with pytest.raises(ValueError, match="Unknown method"):
            parse_method(bad)


def test_generate_responses_matches_manual_generate(tiny_lm, tokenizer, tiny_rm_model):
    """The batched helper gives, row by row, what a plain single-prompt generate with the processor gives."""
    from transformers import LogitsProcessorList

    from hf_stackshape import ARGSLogitsProcessor

    rm = HFRewardModel(tiny_rm_model, tokenizer)
    got = generate_responses(tiny_lm, tokenizer, PROMPTS, method="srs-args", reward=rm, weight=2.0, k=4,
                             max_new_tokens=5, batch_size=2, show_progress=False)
    texts = format_prompts(tokenizer, PROMPTS)
    for prompt, text, response in zip(PROMPTS, texts, got):
        enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=4, weight=2.0, transform="srs")
        proc.set_prompt(enc, prompts=[prompt])
        out = tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([proc]), max_new_tokens=5,
                               do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        assert response == expected


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", ["base", "srs-args", "srs-bon"])
def test_resumed_sampling_draws_what_an_uninterrupted_run_draws(tiny_lm, tokenizer, tiny_rm_model, method):
    """A resumed run (prompts[done:], first_index=done) answers the remaining prompts exactly as the whole run."""
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    options = dict(method=method, reward=rm, weight=2.0, k=4, num_samples=3, max_new_tokens=6, batch_size=2,
                   do_sample=True, seed=5, show_progress=False)
    whole = generate_responses(tiny_lm, tokenizer, PROMPTS, **options)
    resumed = generate_responses(tiny_lm, tokenizer, PROMPTS[2:], first_index=2, **options)
    assert resumed == whole[2:]
    # Without first_index the remaining prompts would be answered with the first batch's random numbers.
    shifted = generate_responses(tiny_lm, tokenizer, PROMPTS[2:], **options)
    assert shifted != whole[2:]


def test_generate_responses_errors(tiny_lm, tokenizer):
    with pytest.raises(ValueError, match="needs a reward model"):
        generate_responses(tiny_lm, tokenizer, PROMPTS, method="args", show_progress=False)
    with pytest.raises(ValueError, match="Q-head"):
        generate_responses(tiny_lm, tokenizer, PROMPTS, method="srs-cd", show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        generate_responses(tiny_lm, tokenizer, PROMPTS, batch_size=0, show_progress=False)


def _length_reward(response):
    return float(len(response.split()))


@pytest.mark.usefixtures("one_thread")
def test_sweep_table_cis_plot_and_resume(tiny_lm, tokenizer, tmp_path, monkeypatch):
    from hf_stackshape.evaluation.stats import bootstrap_ci, paired_bootstrap_ci
    from hf_stackshape.utils.runs import RunMismatchError

    reward = CallableReward(_length_reward, name="length")
    gold = CallableReward(lambda r: float(r.count("e")), name="e-count")
    config = SweepConfig(methods=["args", "srs-args"], weights=[0.5, 2.0], k=3, max_new_tokens=4, batch_size=3)
    table = run_sweep(tiny_lm, tokenizer, PROMPTS, reward, config, tmp_path, gold_reward=gold, show_progress=False)
    # base + 2 methods x 2 weights
    assert [r["method"] for r in table] == ["base", "vanilla-args", "vanilla-args", "srs-args", "srs-args"]
    for row in table:
        assert 0.0 <= row["diversity"] <= 1.0 and -1.0 <= row["coherence"] <= 1.0
        for metric in ("diversity", "coherence", "reward", "gold_reward"):
            assert row[f"{metric}_ci_low"] <= row[metric] + 1e-9 and row[metric] <= row[f"{metric}_ci_high"] + 1e-9
        if row["method"] != "base":
            assert 0.0 <= row["win_tie_vs_base_ci_low"] <= row["win_tie_vs_base"] <= row["win_tie_vs_base_ci_high"] <= 1.0
    assert "win_tie_vs_vanilla" in table[3] and "reward_vs_vanilla_ci_low" in table[3]
    # reward column recomputed from the stored generations, whose rows record their settings
    stored = [json.loads(l) for l in (tmp_path / "generations" / "srs-args_w2.jsonl").read_text().splitlines()]
    assert all(r["weight"] == 2.0 and r["k"] == 3 and r["method"] == "srs-args" for r in stored)
    lengths = [_length_reward(r["response"]) for r in stored]
    expected = bootstrap_ci(lengths, seed=0)
    assert (table[4]["reward"], table[4]["reward_ci_low"], table[4]["reward_ci_high"]) == pytest.approx(
        (expected["mean"], expected["ci_low"], expected["ci_high"]))
    vanilla = [json.loads(l) for l in (tmp_path / "generations" / "vanilla-args_w2.jsonl").read_text().splitlines()]
    diff = paired_bootstrap_ci(lengths, [_length_reward(r["response"]) for r in vanilla], seed=0)
    assert (table[4]["reward_vs_vanilla"], table[4]["reward_vs_vanilla_ci_low"]) == pytest.approx(
        (diff["mean"], diff["ci_low"]))
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header.startswith("method,decoder,weight,diversity,diversity_ci_low,diversity_ci_high,coherence")
    assert "reward_vs_vanilla_ci_high" in header
    png = plot_sweep(table, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = format_table(table)
    assert "srs-args" in text and f"[{table[4]['reward_ci_low']:.2f}," in text

    # A rerun reuses every finished cell: generation must not be called again.
    import hf_stackshape.pipeline.sweep as sweep_module

    real = sweep_module.generate_responses
    calls = []

    def counting(*args, **kwargs):
        calls.append((kwargs["method"].label, kwargs["settings"].weight))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "generate_responses", counting)
    again = run_sweep(tiny_lm, tokenizer, PROMPTS, reward, config, tmp_path, gold_reward=gold, show_progress=False)
    assert calls == [] and [r["reward"] for r in again] == [r["reward"] for r in table]
    # A changed cell setting (k) regenerates the guided cells, not the base one; a new weight adds its cells only.
    config_k = SweepConfig(methods=["args", "srs-args"], weights=[0.5, 2.0], k=2, max_new_tokens=4, batch_size=3)
    run_sweep(tiny_lm, tokenizer, PROMPTS, reward, config_k, tmp_path, gold_reward=gold, show_progress=False)
    assert sorted(calls) == sorted([("vanilla-args", 0.5), ("vanilla-args", 2.0), ("srs-args", 0.5), ("srs-args", 2.0)])
    calls.clear()
    config_w = SweepConfig(methods=["args", "srs-args"], weights=[0.5, 2.0, 1.0], k=2, max_new_tokens=4, batch_size=3)
    run_sweep(tiny_lm, tokenizer, PROMPTS, reward, config_w, tmp_path, gold_reward=gold, show_progress=False)
    assert sorted(calls) == [("srs-args", 1.0), ("vanilla-args", 1.0)]
    # Calibrated thresholds instead of per-step ones: the SRS cells only.
    calls.clear()
    thresholds = torch.tensor([0.0, 1.0, 2.0])
    run_sweep(tiny_lm, tokenizer, PROMPTS, reward, config_w, tmp_path, gold_reward=gold, thresholds=thresholds,
              show_progress=False)
    assert sorted(calls) == [("srs-args", 0.5), ("srs-args", 1.0), ("srs-args", 2.0)]
    assert _rows(tmp_path / "generations" / "srs-args_w1.jsonl")[0]["threshold_source"].startswith("calibrated:")
    # Another guiding reward is refused for the whole sweep (named), unless overwrite=True.
    other = CallableReward(lambda r: 1.0, name="const")
    with pytest.raises(RunMismatchError, match="reward"):
        run_sweep(tiny_lm, tokenizer, PROMPTS, other, config_w, tmp_path, show_progress=False)


def test_sweep_config_validation():
    with pytest.raises(ValueError, match="Unknown method"):
        SweepConfig(methods=["nope"])
    with pytest.raises(ValueError, match="weight"):
        SweepConfig(weights=[-1.0])


@pytest.fixture
def saved_tiny_models(tiny_lm, tiny_rm_model, tokenizer, tmp_path):
    lm_dir, rm_dir = tmp_path / "lm", tmp_path / "rm"
    tiny_lm.save_pretrained(lm_dir)
    tokenizer.save_pretrained(lm_dir)
    tiny_rm_model.save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return lm_dir, rm_dir, prompts


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hf_stackshape.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _main(*args):
    from hf_stackshape.cli import main

    return main([str(a) for a in args])


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _generate_argv(saved, out, *extra):
    lm_dir, rm_dir, prompts = saved
    return ["generate", "--model", lm_dir, "--reward_model", rm_dir, "--prompts", prompts, "--method", "srs-args",
            "--k", "3", "--max_new_tokens", "4", "--batch_size", "2", "--output_file", out, *extra]


@pytest.mark.usefixtures("one_thread")
def test_cli_generate_rows_record_settings_and_resume_keeps_finished_rows(saved_tiny_models, tmp_path, capsys):
    lm_dir, rm_dir, _ = saved_tiny_models
    out = tmp_path / "gen.jsonl"
    argv = _generate_argv(saved_tiny_models, out)
    # An interrupted run: only the first prompt answered...
    assert _main(*argv, "--limit", "1") == 0
    rows = _rows(out)
    assert len(rows) == 1
    row = rows[0]
    # ...and its row records what made it, with the defaults resolved (never a null weight).
    assert (row["method"], row["weight"], row["k"], row["bound"], row["alpha"], row["beta"]) == ("srs-args", 0.5, 3, 12.0, 1.5, 2.0)
    assert (row["threshold_source"], row["model"], row["reward"], row["seed"]) == ("per-step", str(lm_dir), str(rm_dir), 0)
    assert (row["max_new_tokens"], row["do_sample"], row["temperature"]) == (4, False, None)
    # Mark the finished row, and leave a torn line as a kill would.
    row["response"] = "MARKED BY THE TEST"
    out.write_text(json.dumps(row) + "\n" + '{"id": 1, "prom')
    assert _main(*argv) == 0
    rows = _rows(out)
    assert [r["prompt"] for r in rows] == PROMPTS and [r["id"] for r in rows] == [0, 1, 2]
    assert rows[0]["response"] == "MARKED BY THE TEST"  # resumed, not regenerated
    assert all(r["weight"] == 0.5 for r in rows)
    capsys.readouterr()
    assert _main(*argv) == 0
    assert "already answered" in capsys.readouterr().out and _rows(out) == rows


@pytest.mark.usefixtures("one_thread")
def test_cli_generate_refuses_changed_settings_and_says_which(saved_tiny_models, tmp_path, capsys):
    lm_dir, _, _ = saved_tiny_models
    out = tmp_path / "gen.jsonl"
    argv = _generate_argv(saved_tiny_models, out, "--limit", "1")
    assert _main(*argv) == 0
    before = out.read_text()
    capsys.readouterr()
    for change, key in ((["--weight", "2"], "settings.weight"), (["--method", "minmax-args"], "settings.method")):
        assert _main(*argv, *change) == 2
        err = capsys.readouterr().err
        assert key in err and "--overwrite" in err, err
    # A changed generation_config of the model (same weights) is refused too.
    config_file = lm_dir / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["repetition_penalty"] = 1.3
    config_file.write_text(json.dumps(config))
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    assert "generation_config.repetition_penalty" in err, err
    assert out.read_text() == before  # nothing was written
    # --overwrite starts over: the old row is gone, the new one records the new weight.
    assert _main(*argv, "--weight", "2", "--overwrite") == 0
    assert [r["weight"] for r in _rows(out)] == [2.0]


@pytest.mark.usefixtures("one_thread")
def test_cli_generate_bad_lines_and_typos(saved_tiny_models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "gen.jsonl"
    argv = _generate_argv(saved_tiny_models, out, "--limit", "1")
    assert _main(*argv) == 0
    with open(out, "a") as handle:
        handle.write("[1, 2]\n")
    assert _main(*argv, "--limit", "2") == 2
    err = capsys.readouterr().err
    assert f"{out}: line 2 is a JSON list" in err
    lm_dir = saved_tiny_models[0]
    assert _main("generate", "--model", lm_dir, "--prompts", saved_tiny_models[2], "--method", "srs-cd",
                 "--qhead", tmp_path / "qhead-nope", "--output_file", tmp_path / "cd.jsonl") == 2
    err = capsys.readouterr().err
    assert f"No Q-head '{tmp_path / 'qhead-nope'}': no local file or folder" in err
    assert _main(*_generate_argv(saved_tiny_models, tmp_path / "o.jsonl", "--reward_model", "vadr")) == 2
    err = capsys.readouterr().err
    assert "No reward model 'vadr'" in err and "'vader'" in err


@pytest.mark.usefixtures("one_thread")
def test_cli_generate_preset_and_calibrated_thresholds_are_recorded(saved_tiny_models, tmp_path):
    from datasets import Dataset

    out = tmp_path / "paper.jsonl"
    assert _main(*_generate_argv(saved_tiny_models, out, "--preset", "paper", "--limit", "2")) == 0
    row = _rows(out)[0]
    # The paper's ARGS settings (weight 0.5 resolved for ARGS, raw RM input), flags still win (k 3, 4 tokens).
    assert (row["preset"], row["weight"], row["bound"], row["alpha"], row["rm_input"]) == ("paper", 0.5, 12.0, 1.5, "raw")
    assert (row["k"], row["max_new_tokens"]) == (3, 4)
    calib = tmp_path / "calib"
    Dataset.from_dict({"prompt": PROMPTS, "threshold": [0.1, 0.2, 0.3]}).save_to_disk(str(calib / "dataset"))
    out = tmp_path / "calibrated.jsonl"
    assert _main(*_generate_argv(saved_tiny_models, out, "--thresholds_from", calib, "--limit", "2")) == 0
    assert {r["threshold_source"] for r in _rows(out)} == {f"calibration:{calib}"}
    assert _main(*_generate_argv(saved_tiny_models, out, "--method", "args", "--thresholds_from", calib)) == 2


def test_generate_truncates_long_prompts_from_the_left(tiny_lm, tokenizer, caplog):
    from hf_stackshape.pipeline.generation import prompt_budget

    long_prompt = "word " * 60 + "Final question?"
    with caplog.at_level("WARNING", logger="hf_stackshape.pipeline.generation"):
        out = generate_responses(tiny_lm, tokenizer, [long_prompt, "Hi"], max_new_tokens=3, max_prompt_length=40,
                                 show_progress=False)
    assert len(out) == 2
    assert any("left truncation" in r.message and "Prompt 0" in r.message for r in caplog.records)
    assert not any("Prompt 1" in r.message for r in caplog.records)
    # Unasked, the budget is the model's context minus the new tokens; no room at all is an error.
    assert prompt_budget(tiny_lm, 12) == tiny_lm.config.max_position_embeddings - 12
    with pytest.raises(ValueError, match="no room for the prompt"):
        prompt_budget(tiny_lm, tiny_lm.config.max_position_embeddings)


@pytest.mark.usefixtures("one_thread")
def test_cli_bad_inputs(saved_tiny_models, tmp_path, capsys):
    lm_dir, rm_dir, prompts = saved_tiny_models
    cases = [
        (["generate", "--prompts", tmp_path / "missing.jsonl"], "not found"),
        (["generate", "--prompts", prompts, "--column", "question"], "question"),
        (["generate", "--prompts", prompts, "--method", "magic-args"], "Unknown method"),
        (["sweep", "--prompts", prompts, "--methods", "srs-cd"], "Q-head"),
        (["frobnicate"], "unknown command"),
    ]
    for argv, needle in cases:
        assert _main(*argv) == 2, argv
        err = capsys.readouterr().err
        assert needle.lower() in err.lower() and "Traceback" not in err, (argv, err)


@pytest.mark.usefixtures("one_thread")
def test_cli_sweep_end_to_end(saved_tiny_models, tmp_path, capsys):
    lm_dir, rm_dir, prompts = saved_tiny_models
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", lm_dir, "--reward_model", rm_dir, "--gold_reward", "length", "--prompts", prompts,
            "--methods", "args", "srs-args", "--weights", "0.5", "2", "--k", "3", "--max_new_tokens", "3",
            "--output_dir", out]
    assert _main(*argv) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["method"], r["weight"]) for r in rows} == {
        ("base", None), ("vanilla-args", 0.5), ("vanilla-args", 2.0), ("srs-args", 0.5), ("srs-args", 2.0)}
    assert all("gold_reward_ci_low" in r and "reward_ci_high" in r for r in rows)
    assert all("gold_reward_vs_vanilla_ci_low" in r for r in rows if r["method"] == "srs-args")
    assert (out / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "win-tie/vanilla" in printed and "95% bootstrap CIs" in printed
    # Another guiding reward into the same folder: refused, naming it; --overwrite starts over.
    assert _main(*argv[:4], "vader", *argv[5:]) == 2
    err = capsys.readouterr().err
    assert "reward" in err and "--overwrite" in err


@pytest.mark.slow
def test_demo_command_small(tmp_path):
    """`stackshape demo` on the real SmolLM2 + bundled demo RM, shrunk: table printed, real plot written."""
    out = tmp_path / "demo"
    result = _cli("demo", "--output_dir", out, "--num_prompts", "2", "--num_train_prompts", "2", "--num_samples", "2",
                  "--calibration_max_new_tokens", "4", "--max_new_tokens", "4", "--weights", "1.0", "--k", "3",
                  "--qhead_epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    for method in ("base", "vanilla-args", "srs-args", "vanilla-cd", "srs-cd"):
        assert method in result.stdout
    assert "gold" in result.stdout and "win-tie/base" in result.stdout
    png = out / "figure2.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    rows = json.loads((out / "sweep" / "results.json").read_text())
    assert {"base", "vanilla-args", "srs-args", "vanilla-cd", "srs-cd"} <= {r["method"] for r in rows}
    assert all(0.0 <= r["diversity"] <= 1.0 for r in rows)
    assert all("gold_reward_ci_low" in r for r in rows)
    assert (out / "head-srs" / "head" / "config.json").is_file() and (out / "head-raw" / "head" / "config.json").is_file()
