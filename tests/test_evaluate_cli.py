"""`stackshape evaluate` over several generation files and a baseline file: groups by full settings, 95%
bootstrap CIs on every number, paired CIs of the differences, and no silent win-tie without a judge."""

import json

import pytest

from hf_stackshape.cli import main
from hf_stackshape.evaluation.stats import bootstrap_ci, paired_bootstrap_ci

PROMPTS = ["p0", "p1", "p2", "p3", "p4"]


def _row(i, response, method, weight, **extra):
    return {"id": i, "prompt": PROMPTS[i], "response": response, "method": method, "weight": weight, "k": 10,
            "model": "smollm2", "reward": "demo", "seed": 0, **extra}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    # Two runs of srs-args in one file at two weights (must not be mixed), vanilla in a second file,
    # and the base policy as the baseline file. Responses have 1..9 words: the length reward is known.
    srs = [_row(i, "w " * (i + 3), "srs-args", 0.5) for i in range(5)] + [
        _row(i, "w " * (i + 5), "srs-args", 2.0) for i in range(5)
    ]
    vanilla = [_row(i, "w " * (i + 1), "vanilla-args", 0.5) for i in range(5)]
    base = [_row(i, "w " * (2 if i % 2 else 1), "base", 0.0) for i in range(5)]
    return _write(tmp_path / "srs.jsonl", srs), _write(tmp_path / "vanilla.jsonl", vanilla), _write(tmp_path / "base.jsonl", base)


def _lengths(rows):
    return [float(len(r["response"].split())) for r in rows]


def test_two_files_and_a_baseline_file_with_cis_in_json(files, tmp_path, capsys):
    srs, vanilla, base = files
    argv = ["evaluate", "--generations", str(srs), str(vanilla), "--baseline_file", str(base), "--reward", "length",
            "--judge", "length", "--metrics", "reward,diversity,win_tie", "--output_dir", str(tmp_path / "out"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    groups = report["methods"]
    # Grouped by the full settings: the two srs-args weights are two groups, named by what tells them apart.
    assert sorted(groups) == ["srs-args (weight=0.5)", "srs-args (weight=2.0)", "vanilla-args"]
    assert groups["srs-args (weight=2.0)"]["settings"]["weight"] == 2.0
    assert groups["vanilla-args"]["files"] == [str(vanilla)] and groups["vanilla-args"]["count"] == 5
    assert report["baseline"]["label"] == "baseline" and report["baseline"]["files"] == [str(base)]
    assert report["baseline"]["judge"] == "length"

    base_lengths = _lengths(json.loads(l) for l in base.read_text().splitlines())
    srs_rows = [json.loads(l) for l in srs.read_text().splitlines()]
    for label, rows in (("srs-args (weight=0.5)", srs_rows[:5]), ("srs-args (weight=2.0)", srs_rows[5:])):
        out = groups[label]
        lengths = _lengths(rows)
        expected = bootstrap_ci(lengths, seed=0)
        assert out["average_reward"] == pytest.approx(expected["mean"])
        assert (out["average_reward_ci_low"], out["average_reward_ci_high"]) == pytest.approx(
            (expected["ci_low"], expected["ci_high"]))
        assert out["average_reward_ci_low"] < out["average_reward"] < out["average_reward_ci_high"]
        for metric in ("diversity",):
            assert out[f"{metric}_ci_low"] <= out[metric] <= out[f"{metric}_ci_high"]
        # The paired difference to the baseline, prompt by prompt.
        diff = out["vs_baseline"]["average_reward"]
        paired = paired_bootstrap_ci(lengths, base_lengths, seed=0)
        assert diff["mean"] == pytest.approx(sum(a - b for a, b in zip(lengths, base_lengths)) / 5)
        assert (diff["ci_low"], diff["ci_high"], diff["n"]) == pytest.approx((paired["ci_low"], paired["ci_high"], 5))
        assert out["vs_baseline"]["prompts"] == 5 and "diversity" in out["vs_baseline"]
        # Longer always wins under the length judge; the rate has its interval too.
        assert out["win_tie"]["win_tie"] == 1.0 and "win_tie_ci_low" in out["win_tie"]
    # vanilla (1..5 words) against base (1, 2, 1, 2, 1 words): tie, tie, win, win, win.
    assert (groups["vanilla-args"]["win_tie"]["wins"], groups["vanilla-args"]["win_tie"]["ties"]) == (3, 2)
    # The files are written too (several inputs: the stem is 'evaluation').
    written = json.loads((tmp_path / "out" / "evaluation.metrics.json").read_text())
    assert written["methods"] == report["methods"]
    samples = [json.loads(l) for l in (tmp_path / "out" / "evaluation.per_sample.jsonl").read_text().splitlines()]
    assert len(samples) == 15 and samples[5]["group"] == "srs-args (weight=2.0)" and samples[5]["reward"] == 5.0


def test_reruns_print_the_same_intervals(files, tmp_path, capsys):
    srs, vanilla, base = files
    argv = ["evaluate", "--generations", str(srs), "--baseline_file", str(base), "--reward", "length",
            "--metrics", "reward", "--output_dir", str(tmp_path), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)["methods"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["methods"] == first
    assert main(argv[:-1]) == 0
    table = capsys.readouterr().out
    assert "baseline: baseline" in table and "srs-args (weight=0.5): 5 rows" in table
    assert "vs baseline" in table and "paired, n=5" in table


def test_baseline_method_picks_one_group_and_win_tie_needs_a_judge(files, tmp_path, capsys):
    srs, vanilla, base = files
    common = ["evaluate", "--generations", str(srs), str(vanilla), "--output_dir", str(tmp_path)]
    # srs-args ran at two weights: the baseline must say which.
    assert main(common + ["--baseline_method", "srs-args", "--metrics", "diversity"]) == 2
    err = capsys.readouterr().err
    assert "matches 2 groups" in err and "--baseline_weight" in err
    assert main(common + ["--baseline_method", "srs-args", "--baseline_weight", "0.5", "--metrics", "diversity",
                          "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"]["label"] == "srs-args (weight=0.5)"
    assert "vs_baseline" not in report["methods"]["srs-args (weight=0.5)"]
    assert report["methods"]["vanilla-args"]["vs_baseline"]["diversity"]["n"] == 5
    # A win-tie rate asked for without any judge is an error, never a silent omission.
    assert main(common + ["--baseline_file", str(base), "--metrics", "win_tie"]) == 2
    assert "needs a judge" in capsys.readouterr().err
    # With --reward and no --judge, the reward judges, and the report says so.
    assert main(common + ["--baseline_file", str(base), "--reward", "length", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"]["judge"].startswith("length (the --reward")
    assert "win_tie" in report["methods"]["vanilla-args"]
    assert main(common + ["--baseline_file", str(base), "--baseline_method", "base"]) == 2
    assert "one baseline" in capsys.readouterr().err
