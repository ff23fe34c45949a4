"""The one comparison with paired intervals (evaluation.compare) that sweep, evaluate and the demo report, checked
against hand computations; and the named steps that sweep, evaluate and the demo are now made of."""

import json
import math

import numpy as np
import pytest

from hf_stackshape.evaluation.compare import Comparison, compare_to_baseline, match_by_prompt
from hf_stackshape.evaluation.judges import RewardModelJudge
from hf_stackshape.evaluation.stats import paired_bootstrap_ci
from hf_stackshape.rewards import CallableReward


def _words(response):
    return float(len(response.split()))


def test_difference_ci_and_win_tie_by_hand():
    method = {"reward": [3.1, 5.0, 2.3, 7.7], "gold": [1.0, None, 2.0, 4.0]}
    base = {"reward": [1.0, 5.2, 4.0, 3.3], "gold": [0.0, 1.0, float("nan"), 1.0]}
    prompts = ["p0", "p1", "p2", "p3"]
    responses = ["a b c", "a b", "a", "a b c d"]
    baseline = ["a", "x y", "x y z", "x"]
    judge = RewardModelJudge(CallableReward(_words, name="words"))
    cmp = compare_to_baseline(method, base, prompts, responses, baseline, judge=judge, seed=7)
    # Differences by hand: reward 2.1, -0.2, -1.7, 4.4 (mean 1.15); gold keeps the pairs with both sides: 1, 3 (mean 2).
    assert cmp.n == 4
    assert cmp.differences["reward"]["mean"] == pytest.approx(1.15) and cmp.differences["reward"]["n"] == 4
    assert cmp.differences["gold"]["mean"] == 2.0 and cmp.differences["gold"]["n"] == 2
    # The paired interval: percentiles of the means of resampled differences, seeded (2000 resamples).
    diffs = np.array(method["reward"]) - np.array(base["reward"])
    idx = np.random.default_rng(7).integers(0, 4, size=(2000, 4))
    low, high = np.quantile(diffs[idx].mean(axis=1), [0.025, 0.975])
    assert (cmp.differences["reward"]["ci_low"], cmp.differences["reward"]["ci_high"]) == (low, high)
    assert cmp.differences["reward"] == paired_bootstrap_ci(method["reward"], base["reward"], seed=7)
    few = [compare_to_baseline(method, base, seed=s, n_resamples=5).differences["reward"] for s in (7, 8)]
    assert few[0] != few[1]  # the seed and the resample count reach the bootstrap
    # Win-tie by word count: 3 vs 1 win, 2 vs 2 tie, 1 vs 3 loss, 4 vs 1 win.
    w = cmp.win_tie
    assert (w["wins"], w["ties"], w["losses"], w["total"]) == (2, 1, 1, 4) and w["win_tie"] == 0.75
    assert w["win_tie_ci_low"] <= 0.75 <= w["win_tie_ci_high"] and len(w["judgements"]) == 4


def test_constant_and_single_differences_have_exact_intervals():
    cmp = compare_to_baseline({"r": [2.0, 3.0, 4.0]}, {"r": [1.5, 2.5, 3.5]})
    assert (cmp.differences["r"]["mean"], cmp.differences["r"]["ci_low"], cmp.differences["r"]["ci_high"]) == (0.5, 0.5, 0.5)
    one = compare_to_baseline({"r": [2.0]}, {"r": [5.0]}).differences["r"]
    assert (one["mean"], one["ci_low"], one["ci_high"], one["n"]) == (-3.0, -3.0, -3.0, 1)
    none = compare_to_baseline({"r": []}, {"r": []})
    assert none.n == 0 and math.isnan(none.differences["r"]["mean"]) and none.win_tie is None


def test_columns_are_the_sweep_table_fields_in_order():
    cmp = Comparison(
        n=2,
        differences={"reward": {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5, "n": 2},
                     "gold_reward": {"mean": -1.0, "ci_low": -2.0, "ci_high": 0.0, "n": 2}},
        win_tie={"win_tie": 0.5, "win_tie_ci_low": 0.0, "win_tie_ci_high": 1.0, "wins": 1},
    )
    assert list(cmp.columns("_vs_vanilla").items()) == [
        ("win_tie_vs_vanilla", 0.5), ("win_tie_vs_vanilla_ci_low", 0.0), ("win_tie_vs_vanilla_ci_high", 1.0),
        ("reward_vs_vanilla", 1.0), ("reward_vs_vanilla_ci_low", 0.5), ("reward_vs_vanilla_ci_high", 1.5),
        ("gold_reward_vs_vanilla", -1.0), ("gold_reward_vs_vanilla_ci_low", -2.0), ("gold_reward_vs_vanilla_ci_high", 0.0),
    ]
    judged_only = Comparison(n=1, win_tie={"win_tie": 1.0, "win_tie_ci_low": 1.0, "win_tie_ci_high": 1.0})
    assert judged_only.columns("_vs_base") == {"win_tie_vs_base": 1.0, "win_tie_vs_base_ci_low": 1.0,
                                               "win_tie_vs_base_ci_high": 1.0}


def test_bad_input_says_what_is_missing():
    with pytest.raises(ValueError, match="baseline has no values of \\['gold'\\]"):
        compare_to_baseline({"gold": [1.0]}, {"reward": [1.0]})
    with pytest.raises(ValueError, match="one pair per prompt"):
        compare_to_baseline({"r": [1.0, 2.0]}, {"r": [1.0]})
    with pytest.raises(ValueError, match="needs `prompts`"):
        compare_to_baseline({"r": [1.0]}, {"r": [1.0]}, judge=RewardModelJudge(CallableReward(_words)))


def test_match_by_prompt_takes_the_first_baseline_answer_and_skips_missing():
    assert match_by_prompt(["a", "b", "c", "a"], ["c", "a", "a", "x"]) == [(0, 1), (2, 0), (3, 1)]
    assert match_by_prompt(["z"], ["a"]) == []


# ----------------------------------------------------------------------------------------------- the steps


def test_plan_cells_adds_base_and_each_vanilla_once():
    from hf_stackshape.pipeline.sweep import SweepConfig, plan_cells

    cells = plan_cells(SweepConfig(methods=["srs-args", "args", "srs-cd"], weights=[1.0, 0.5]))
    assert [(m.label, w) for m, w in cells] == [
        ("base", None), ("srs-args", 1.0), ("srs-args", 0.5), ("vanilla-args", 1.0), ("vanilla-args", 0.5),
        ("srs-cd", 1.0), ("srs-cd", 0.5), ("vanilla-cd", 1.0), ("vanilla-cd", 0.5),
    ]


def test_score_cells_compares_each_shaped_cell_with_its_vanilla(tmp_path):
    from hf_stackshape.pipeline.sweep import SweepConfig, plan_cells, score_cells

    class _Embedder:  # coherence is not under test here: a fixed similarity per pair
        def similarity(self, prompts, responses):
            import torch

            return torch.full((len(prompts),), 0.5)

    prompts = ["p0", "p1", "p2"]
    config = SweepConfig(methods=["srs-args"], weights=[1.0], seed=3)
    generations = {"base": ["a", "a", "a"], "vanilla-args_w1": ["a b", "a", "a b c"], "srs-args_w1": ["a b c", "a b", "a"]}
    reward = CallableReward(_words, name="words")
    judge = RewardModelJudge(reward)
    table = score_cells(plan_cells(config), generations, prompts, reward, config, judge, _Embedder())
    assert [r["method"] for r in table] == ["base", "vanilla-args", "srs-args"]  # raw-reward cells first
    srs = table[2]
    # srs - vanilla word counts: 1, 1, -2; srs vs vanilla: win, win, loss.
    expected = paired_bootstrap_ci([3.0, 2.0, 1.0], [2.0, 1.0, 3.0], seed=3)
    assert (srs["reward_vs_vanilla"], srs["reward_vs_vanilla_ci_low"], srs["reward_vs_vanilla_ci_high"]) == (
        expected["mean"], expected["ci_low"], expected["ci_high"])
    assert srs["win_tie_vs_vanilla"] == pytest.approx(2 / 3) and srs["win_tie_vs_base"] == 1.0
    assert "reward_vs_vanilla" not in table[1] and "win_tie_vs_base" not in table[0]
    assert list(srs)[-6:] == ["win_tie_vs_vanilla", "win_tie_vs_vanilla_ci_low", "win_tie_vs_vanilla_ci_high",
                              "reward_vs_vanilla", "reward_vs_vanilla_ci_low", "reward_vs_vanilla_ci_high"]


def test_report_groups_baseline_and_compares_by_prompt():
    from hf_stackshape.evaluation.report import (
        Columns,
        Scorer,
        baseline_from_group,
        baseline_from_rows,
        evaluate_groups,
        group_rows,
    )

    def row(prompt, response, method, weight):
        return {"prompt": prompt, "response": response, "method": method, "weight": weight, "_file": "f.jsonl"}

    rows = [row("p0", "a b c", "srs", 1.0), row("p1", "a", "srs", 1.0), row("p2", "a b", "srs", 2.0),
            row("p1", "a b", "base", 0.0), row("p0", "a", "base", 0.0)]
    groups = group_rows(rows)
    assert [g["label"] for g in groups.values()] == ["srs (weight=1.0)", "srs (weight=2.0)", "base"]
    with pytest.raises(ValueError, match="matches 2 groups"):
        baseline_from_group(rows, groups, "srs")
    with pytest.raises(ValueError, match="holds rows of 2 settings"):
        baseline_from_rows(rows[:3], "b.jsonl", Columns())
    baseline = baseline_from_group(rows, groups, "base")
    reward = CallableReward(_words, name="words")
    results, samples, info = evaluate_groups(rows, groups, Scorer(reward=reward), baseline,
                                             judge=RewardModelJudge(reward), judge_label="words")
    assert info["label"] == "base" and info["judge"] == "words" and info["metrics"]["count"] == 2
    srs = results["srs (weight=1.0)"]
    # p0: 3 vs 1 words, p1: 1 vs 2 words.
    assert srs["vs_baseline"]["prompts"] == 2 and srs["vs_baseline"]["average_reward"]["mean"] == 0.5
    assert (srs["win_tie"]["wins"], srs["win_tie"]["losses"]) == (1, 1)
    assert results["srs (weight=2.0)"]["vs_baseline"]["prompts"] == 0 and "win_tie" not in results["srs (weight=2.0)"]
    assert [s.get("judgement", {}).get("winner") for s in samples[:2]] == ["a", "b"]
    assert json.dumps(samples[0], default=str)  # plain rows, without the _file key
    assert "_file" not in samples[0]


def test_demo_trains_a_head_per_cd_transform_plus_raw():
    from hf_stackshape.demo import cd_transforms

    assert cd_transforms(["args", "srs-cd", "cd", "srs-bon"]) == ["srs", "raw"]
    assert cd_transforms(["args", "srs-args"]) == []
