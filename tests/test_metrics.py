"""Evaluation metrics against hand-computed values, the packaged `evaluate` modules loaded offline, and
``stackshape evaluate`` end to end."""

import json
import math
import os

import pytest
import torch

from hf_stackshape.evaluation import METRICS, load_metric, metric_path
from hf_stackshape.evaluation.scores import diversity_scores, reward_scores, win_tie_scores
from hf_stackshape.evaluation.judges import RewardModelJudge
from hf_stackshape.evaluation.text_stats import (
    cosine_similarity,
    diversity,
    mean_pool,
    ngram_repetition,
    win_tie_summary,
)
from hf_stackshape.rewards import CallableReward

# ----------------------------------------------------------------------------------------------- diversity


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a b c d e", 1.0),  # nothing repeated
        ("a b a b a b", (2 / 5) * (2 / 4) * (2 / 3)),  # unique/total 2-, 3-, 4-grams
        ("a a a a", (1 / 3) * (1 / 2) * (1 / 1)),
        ("the cat the cat sat", (3 / 4) * (3 / 3) * (2 / 2)),
        ("The the THE the", 1.0),  # case is kept
        ("x   y\n\tz", 1.0),  # any whitespace separates words
        ("x y", 1.0),  # one 2-gram; no 3- or 4-gram: factor 1 by convention
        ("hello", 1.0),
        ("", 1.0),
    ],
)
def test_diversity_hand_computed(text, expected):
    assert diversity(text) == pytest.approx(expected, abs=1e-12)


def test_ngram_repetition_and_aggregate():
    assert ngram_repetition(["a", "a", "a"], 2) == pytest.approx(0.5)
    assert ngram_repetition(["a"], 2) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        ngram_repetition(["a"], 0)
    out = diversity_scores(["a b c d e", "a a a a"])
    assert out["diversities"] == pytest.approx([1.0, 1 / 6])
    assert out["diversity"] == pytest.approx((1 + 1 / 6) / 2)
    assert out["rep_2"] == pytest.approx((0 + 2 / 3) / 2)
    assert out["rep_4"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------- coherence math


def test_cosine_and_mean_pool_hand_computed():
    a = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [6.0, 8.0], [-1.0, -2.0]])
    assert cosine_similarity(a, b).tolist() == pytest.approx([1 / math.sqrt(2), 1.0, -1.0])
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
    with pytest.raises(ValueError, match="same shape"):
        cosine_similarity(a, b[:2])


# ----------------------------------------------------------------------------------------------- win-tie counts


def test_win_tie_summary_counts():
    out = win_tie_summary(["a", "tie", "b", "a", None, "tie"])
    assert (out["wins"], out["ties"], out["losses"], out["total"], out["failed"]) == (2, 2, 1, 5, 1)
    assert out["win_tie"] == pytest.approx(4 / 5) and out["loss_rate"] == pytest.approx(1 / 5)
    assert out["failed_indices"] == [4]
    assert math.isnan(win_tie_summary([None])["win_tie"])
    with pytest.raises(ValueError, match="'draw'"):
        win_tie_summary(["draw"])


def test_win_tie_scores_with_reward_judge():
    judge = RewardModelJudge(CallableReward(lambda r: len(r.split())))
    out = win_tie_scores(["p"] * 4, ["a b c", "a", "a b", "a b c d"], ["a", "a b", "a b", "a"], judge)
    assert (out["wins"], out["ties"], out["losses"]) == (2, 1, 1)
    assert out["win_tie"] == pytest.approx(3 / 4)
    assert [j["winner"] for j in out["judgements"]] == ["a", "b", "tie", "a"]


# ----------------------------------------------------------------------------------------------- evaluate modules


@pytest.mark.parametrize("name", METRICS)
def test_metrics_load_offline_with_evaluate(name):
    import evaluate

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    metric = evaluate.load(str(metric_path(name)))
    assert isinstance(metric, evaluate.Metric) and metric.name == name
    assert isinstance(load_metric(name), evaluate.Metric)


def test_load_metric_unknown_name():
    with pytest.raises(ValueError, match="Unknown metric 'bleu'"):
        load_metric("bleu")


def test_average_reward_module_matches_hand_computed():
    words = CallableReward(lambda prompt, response: len(response.split()) - len(prompt.split()))
    prompts = ["one", "one two", "x"]
    responses = ["a b c", "a", "a b c d e"]
    expected = [2.0, -1.0, 4.0]
    out = load_metric("average_reward").compute(predictions=responses, prompts=prompts, reward=words)
    assert out["rewards"] == pytest.approx(expected)
    assert out["average_reward"] == pytest.approx(sum(expected) / 3)
    assert out == reward_scores(prompts, responses, words)
    with pytest.raises(ValueError, match="needs a reward"):
        load_metric("average_reward").compute(predictions=["a"], prompts=["p"])


def test_average_reward_by_config_name_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    responses = ["I love this, thank you!", "This is terrible."]
    out = load_metric("average_reward", config_name="vader").compute(predictions=responses, prompts=["q", "q"])
    analyzer = SentimentIntensityAnalyzer()
    assert out["rewards"] == pytest.approx([analyzer.polarity_scores(r)["compound"] for r in responses], abs=1e-6)


def test_diversity_and_win_tie_modules():
    out = load_metric("diversity").compute(predictions=["a b a b a b", "a b c d"])
    assert out["diversities"] == pytest.approx([(2 / 5) * (2 / 4) * (2 / 3), 1.0])
    judge = RewardModelJudge(lambda r: len(r))
    metric = load_metric("win_tie")
    out = metric.compute(predictions=["long", "s", "ab"], references=["s", "long", "cd"], prompts=["p"] * 3, judge=judge)
    assert (out["wins"], out["ties"], out["losses"], out["win_tie"]) == (1, 1, 1, pytest.approx(2 / 3))
    with pytest.raises(ValueError, match="needs a judge"):
        load_metric("win_tie").compute(predictions=["a"], references=["b"], prompts=["p"])


def test_coherence_module_identical_texts_near_one():
    metric = load_metric("coherence")
    prompts = ["How do I bake sourdough bread at home?"] * 3
    related = "Mix flour, water and a starter, let it rise, then bake."
    responses = [prompts[0], related, "Stock prices fell sharply on Monday."]
    out = metric.compute(predictions=responses, prompts=prompts)
    identical, related, unrelated = out["coherences"]
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert identical > related > unrelated
    assert out["coherence"] == pytest.approx(sum(out["coherences"]) / 3)


def test_bundled_embedder_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from hf_stackshape.defaults import minilm_path
    from hf_stackshape.evaluation import SentenceEmbedder

    texts = ["short", "A much longer sentence, so that the batch really needs padding to work."]
    reference = torch.as_tensor(st.SentenceTransformer(str(minilm_path()), device="cpu").encode(texts))
    assert torch.allclose(SentenceEmbedder().encode(texts), reference, atol=1e-5)


# ----------------------------------------------------------------------------------------------- CLI


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_evaluate_end_to_end(tmp_path, capsys):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from hf_stackshape.cli import main

    rows = [
        {"prompt": "How are you?", "response": "I am great, thank you so much!", "method": "srs"},
        {"prompt": "How are you?", "response": "Bad bad bad bad bad.", "method": "vanilla"},
        {"prompt": "Tell me a joke", "response": "A happy joke about a happy cat.", "method": "srs"},
        {"prompt": "Tell me a joke", "response": "A happy joke about a happy cat.", "method": "vanilla"},
        {"prompt": "Any advice?", "response": "Awful idea, I hate it.", "method": "srs"},
        {"prompt": "Any advice?", "response": "Sure, good luck!", "method": "vanilla"},
    ]
    source = tmp_path / "gen.jsonl"
    _write_jsonl(source, rows)
    out_dir = tmp_path / "out"
    argv = ["evaluate", "--generations", str(source), "--reward", "vader", "--judge", "vader"]
    assert main(argv + ["--baseline_method", "vanilla", "--output_dir", str(out_dir)]) == 0
    report = json.loads((out_dir / "gen.metrics.json").read_text())
    samples = [json.loads(line) for line in (out_dir / "gen.per_sample.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and [s["prompt"] for s in samples] == [r["prompt"] for r in rows]

    vader = SentimentIntensityAnalyzer()
    rewards = [vader.polarity_scores(r["response"])["compound"] for r in rows]
    srs, vanilla = report["methods"]["srs"], report["methods"]["vanilla"]
    assert srs["average_reward"] == pytest.approx(sum(rewards[0::2]) / 3, abs=1e-6)
    assert vanilla["average_reward"] == pytest.approx(sum(rewards[1::2]) / 3, abs=1e-6)
    assert [s["reward"] for s in samples] == pytest.approx(rewards, abs=1e-6)
    assert samples[1]["diversity"] == pytest.approx(3 / 4)  # "Bad bad bad bad bad.": 3 unique of 4 2-grams
    assert 0 < samples[0]["coherence"] < 1
    # srs vs vanilla per prompt under the VADER judge: win, tie (same text), loss.
    win_tie = srs["win_tie"]
    assert (win_tie["wins"], win_tie["ties"], win_tie["losses"], win_tie["failed"]) == (1, 1, 1, 0)
    assert win_tie["win_tie"] == pytest.approx(2 / 3)
    assert "win_tie" not in vanilla
    assert [samples[i]["judgement"]["winner"] for i in (0, 2, 4)] == ["a", "tie", "b"]
    assert "win_tie" in capsys.readouterr().out

    # A baseline column instead of a baseline method.
    paired = [{"prompt": "q", "response": "Great, thanks!", "reference": "Awful."}]
    _write_jsonl(tmp_path / "paired.jsonl", paired)
    argv = ["evaluate", "--generations", str(tmp_path / "paired.jsonl"), "--judge", "vader"]
    assert main(argv + ["--baseline_column", "reference", "--metrics", "win_tie"]) == 0
    paired_report = json.loads((tmp_path / "paired.metrics.json").read_text())
    assert paired_report["methods"]["all"]["win_tie"]["wins"] == 1


def test_cli_evaluate_bad_inputs_give_one_line(tmp_path, capsys):
    from hf_stackshape.cli import main

    assert main(["evaluate", "--generations", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Generations file not found" in err

    _write_jsonl(tmp_path / "g.jsonl", [{"prompt": "p", "answer": "r"}])
    assert main(["evaluate", "--generations", str(tmp_path / "g.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'response'" in err and "answer" in err

    argv = ["evaluate", "--generations", str(tmp_path / "g.jsonl"), "--response_column", "answer"]
    assert main(argv + ["--metrics", "reward"]) == 2
    assert "--reward" in capsys.readouterr().err


def test_load_reward_specs_used_by_the_metrics():
    from hf_stackshape.rewards import RewardFunction, load_reward

    assert load_reward("length").score(["p", "p"], ["a b c", ""]).tolist() == [3.0, 0.0]
    imported = load_reward("builtins:len")  # "module:function", here fn(response) -> float
    assert imported.score(["p"], ["abcd"]).tolist() == [4.0]
    custom = CallableReward(lambda r: 1.0)
    assert load_reward(custom) is custom and isinstance(load_reward(lambda r: 2.0), RewardFunction)
    with pytest.raises(ValueError, match="Reward spec"):
        load_reward("  ")
    with pytest.raises(ValueError, match="Cannot import the reward"):
        load_reward("no_such_module_xyz:fn")
