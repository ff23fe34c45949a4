"""Evaluation metrics against hand-computed values, the packaged `evaluate` modules loaded offline, and
``stackshape evaluate`` end to end."""

import json
import math
import os

import pytest
import torch

from hf_stackshape.evaluation import METRICS, load_metric, metric_path
from hf_stackshape.evaluation.judges import RewardModelJudge
from hf_stackshape.evaluation.scores import coherence_scores, diversity_scores, reward_scores, win_tie_scores
from hf_stackshape.evaluation.stats import bootstrap_ci
from hf_stackshape.evaluation.text_stats import (
    cosine_similarity,
    cut_at_next_turn,
    diversity,
    mean_pool,
    ngram_repetition,
    summarize,
    win_tie_summary,
    word_tokens,
)
from hf_stackshape.rewards import CallableReward

# ----------------------------------------------------------------------------------------------- diversity (paper)


def test_paper_diversity_of_a_b_a_b_a_b_by_hand():
    # "a b a b a b": 2-grams ab ba ab ba ab (5, 2 unique), 3-grams aba bab aba bab (4, 2 unique),
    # 4-grams abab baba abab (3, 2 unique). rep_n = 1 - unique / (total + 1):
    rep_2, rep_3, rep_4 = 1 - 2 / 6, 1 - 2 / 5, 1 - 2 / 4
    expected = (1 - rep_2) * (1 - rep_3) * (1 - rep_4)  # (1/3) (2/5) (1/2) = 1/15
    assert expected == pytest.approx(1 / 15)
    assert diversity("a b a b a b") == pytest.approx(expected, abs=1e-12)
    assert round(diversity("a b a b a b"), 4) == 0.0667
    assert ngram_repetition(["a", "b", "a", "b", "a", "b"], 2) == pytest.approx(rep_2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a b c d e", (4 / 5) * (3 / 4) * (2 / 3)),  # no repeat still loses the +1 of each denominator
        ("a a a a", (1 / 4) * (1 / 3) * (1 / 2)),  # 2-grams: 1 unique of 3; 3-grams 1 of 2; 4-grams 1 of 1
        ("", 0.0),  # empty: no n-gram, rep_n = 1 - 0 / (0 + 1) = 1 for every n
        ("a b c", 0.0),  # shorter than 4 words: the 4-gram factor is 0
        ("a b", 0.0),  # shorter than 3 words
        # NLTK word tokens: "Bad bad bad." -> Bad, bad, bad, "." (4 tokens; the period is a word).
        # 2-grams: (Bad bad) (bad bad) (bad .): 3 unique of 3 -> 3/4; 3-grams 2 of 2 -> 2/3; 4-grams 1 of 1 -> 1/2.
        ("Bad bad bad.", (3 / 4) * (2 / 3) * (1 / 2)),
    ],
)
def test_paper_diversity_hand_computed(text, expected):
    assert diversity(text) == pytest.approx(expected, abs=1e-12)
    assert diversity(text, definition="paper") == diversity(text)


def test_paper_diversity_cuts_at_the_next_human_turn():
    clean = "a b c d e"
    assert cut_at_next_turn(clean + "\n\nHuman: a b a b a b a b") == clean
    assert cut_at_next_turn("x y z###Human: q\n\nHuman: r") == "x y z"
    assert diversity(clean + "\n\nHuman: a b a b a b a b") == pytest.approx((4 / 5) * (3 / 4) * (2 / 3))
    # Without the cut the repeated tail would count: the cut text scores higher.
    assert diversity(clean + "\n\nHuman: a b a b a b a b", definition="ours") < 1.0
    # A response that starts with the next turn is empty once cut: diversity 0.
    assert diversity("\n\nHuman: hello there my friend") == 0.0
    # "Human:" inside a line is not a new turn.
    assert cut_at_next_turn("Human: rights matter") == "Human: rights matter"


def test_paper_tokens_are_nltk_word_tokens_without_punkt():
    assert word_tokens("I don't know, it's fine.") == ["I", "do", "n't", "know", ",", "it", "'s", "fine", "."]
    assert word_tokens('She said "hi".') == ["She", "said", "``", "hi", "''", "."]
    assert word_tokens("") == []


# ----------------------------------------------------------------------------------------------- diversity (ours)


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
def test_ours_diversity_hand_computed(text, expected):
    assert diversity(text, definition="ours") == pytest.approx(expected, abs=1e-12)


def test_ngram_repetition_and_aggregate():
    assert ngram_repetition(["a", "a", "a"], 2, definition="ours") == pytest.approx(0.5)
    assert ngram_repetition(["a", "a", "a"], 2) == pytest.approx(1 - 1 / 3)  # paper: 1 unique of 2, + 1
    assert ngram_repetition(["a"], 2, definition="ours") == 0.0
    assert ngram_repetition(["a"], 2) == 1.0
    with pytest.raises(ValueError, match="n=0"):
        ngram_repetition(["a"], 0)
    with pytest.raises(ValueError, match="'whitespace'.*'paper'.*'ours'"):
        diversity("a b", definition="whitespace")
    with pytest.raises(ValueError, match="'nltk'"):
        diversity_scores([], definition="nltk")
    out = diversity_scores(["a b c d e", "a a a a"], definition="ours")
    assert out["diversities"] == pytest.approx([1.0, 1 / 6])
    assert out["diversity"] == pytest.approx((1 + 1 / 6) / 2)
    assert out["rep_2"] == pytest.approx((0 + 2 / 3) / 2)
    assert out["rep_4"] == pytest.approx(0.0)
    assert out["diversity_definition"] == "ours"
    paper = diversity_scores(["a b c d e", "a a a a"])
    assert paper["diversity_definition"] == "paper"
    assert paper["diversities"] == pytest.approx([0.4, 1 / 24])
    assert paper["rep_2"] == pytest.approx(((1 - 4 / 5) + (1 - 1 / 4)) / 2)
    assert paper["rep_4"] == pytest.approx(((1 - 2 / 3) + (1 - 1 / 2)) / 2)


# ----------------------------------------------------------------------------------------------- intervals


def test_summarize_carries_a_seeded_bootstrap_interval():
    values = [0.1, 0.9, 0.4, 0.35, 0.8, 0.05, 0.6]
    out = summarize(values)
    reference = bootstrap_ci(values, seed=0)
    assert (out["ci_low"], out["ci_high"]) == (reference["ci_low"], reference["ci_high"])
    assert out["mean"] == pytest.approx(sum(values) / len(values)) and out["count"] == 7
    assert out["ci_low"] < out["mean"] < out["ci_high"]
    assert summarize(values) == out  # same seed, same interval
    other = summarize(values, seed=1)
    assert (other["ci_low"], other["ci_high"]) != (out["ci_low"], out["ci_high"])
    wider = summarize(values, confidence=0.99)
    assert wider["ci_low"] <= out["ci_low"] and wider["ci_high"] >= out["ci_high"]
    assert summarize([2.0])["ci_low"] == summarize([2.0])["ci_high"] == 2.0
    assert all(math.isnan(summarize([])[k]) for k in ("mean", "ci_low", "ci_high"))
    broken = summarize([1.0, float("nan")])
    assert math.isnan(broken["mean"]) and math.isnan(broken["ci_low"])  # a NaN score shows


def test_every_score_function_reports_its_interval():
    responses = ["a b c d e", "a a a a", "a b a b a b", "x y z w v u", "the cat the cat"]
    prompts = ["p"] * len(responses)
    words = CallableReward(lambda r: float(len(r.split())))
    r = reward_scores(prompts, responses, words, seed=3)
    assert r["average_reward"] == pytest.approx(sum(r["rewards"]) / 5) and "reward_std" in r
    ci = bootstrap_ci(r["rewards"], seed=3)
    assert (r["average_reward_ci_low"], r["average_reward_ci_high"]) == (ci["ci_low"], ci["ci_high"])
    d = diversity_scores(responses)
    ci = bootstrap_ci(d["diversities"], seed=0)
    assert (d["diversity_ci_low"], d["diversity_ci_high"]) == (ci["ci_low"], ci["ci_high"])
    assert d["diversity_ci_low"] < d["diversity"] < d["diversity_ci_high"]
    assert diversity_scores(responses) == d

    class FixedEmbedder:
        def similarity(self, a, b):
            return torch.tensor([0.1, 0.5, 0.2, 0.9, 0.4], dtype=torch.float64)

    c = coherence_scores(prompts, responses, FixedEmbedder(), confidence=0.9)
    ci = bootstrap_ci([0.1, 0.5, 0.2, 0.9, 0.4], confidence=0.9)
    assert (c["coherence_ci_low"], c["coherence_ci_high"]) == (ci["ci_low"], ci["ci_high"])

    # Win-tie: the interval of the mean of a 0/1 outcome (1 = win or tie) over the counted comparisons.
    winners = ["a", "tie", "b", "a", None, "b", "tie", "a"]
    summary = win_tie_summary(winners, seed=5)
    ci = bootstrap_ci([1, 1, 0, 1, 0, 1, 1], seed=5)
    assert summary["win_tie"] == pytest.approx(5 / 7)
    assert (summary["win_tie_ci_low"], summary["win_tie_ci_high"]) == (ci["ci_low"], ci["ci_high"])
    assert summary["win_tie_ci_low"] < summary["win_tie"] < summary["win_tie_ci_high"]


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
    assert out["average_reward_ci_low"] < out["average_reward"] < out["average_reward_ci_high"]
    assert out == reward_scores(prompts, responses, words)
    reseeded = load_metric("average_reward").compute(predictions=responses, prompts=prompts, reward=words, seed=7)
    assert reseeded == reward_scores(prompts, responses, words, seed=7)
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
    assert out["diversities"] == pytest.approx([1 / 15, (3 / 4) * (2 / 3) * (1 / 2)])
    assert out["diversity_definition"] == "paper" and out["diversity_ci_low"] <= out["diversity"]
    assert out == load_metric("diversity").compute(predictions=["a b a b a b", "a b c d"])  # seeded
    ours = load_metric("diversity").compute(predictions=["a b a b a b", "a b c d"], definition="ours")
    assert ours["diversities"] == pytest.approx([(2 / 5) * (2 / 4) * (2 / 3), 1.0])
    by_config = load_metric("diversity", config_name="ours").compute(predictions=["a b a b a b", "a b c d"])
    assert by_config["diversities"] == ours["diversities"]
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
    assert out["coherence_ci_low"] < out["coherence"] < out["coherence_ci_high"]


def test_bundled_embedder_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from hf_stackshape.assets.defaults import minilm_path
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
    # "Bad bad bad bad bad." under the paper's definition: NLTK words Bad bad bad bad bad "." (6); 2-grams 3 unique
    # of 5, 3-grams 3 of 4, 4-grams 3 of 3: (3/6) (3/5) (3/4).
    assert samples[1]["diversity"] == pytest.approx((3 / 6) * (3 / 5) * (3 / 4))
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
    imported = load_reward("builtins:len", trust_remote_code=True)  # "module:function", here fn(response) -> float
    assert imported.score(["p"], ["abcd"]).tolist() == [4.0]
    custom = CallableReward(lambda r: 1.0)
    assert load_reward(custom) is custom and isinstance(load_reward(lambda r: 2.0), RewardFunction)
    with pytest.raises(ValueError, match="Reward spec"):
        load_reward("  ")
    with pytest.raises(ValueError, match="Cannot import the reward"):
        load_reward("no_such_module_xyz:fn", trust_remote_code=True)


# ----------------------------------------------------------------------------------------------- SimCSE pooling


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hf_stackshape.assets.defaults import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    return BertModel(config).eval(), tokenizer


def test_embedder_poolings_match_the_model_outputs(tiny_bert):
    from hf_stackshape.evaluation import SentenceEmbedder

    model, tokenizer = tiny_bert
    texts = ["A short one.", "A much longer sentence that needs the padding of the batch to be right."]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        outputs = model(**batch)
    expected = {
        "pooler": outputs.pooler_output,  # what the SimCSE tool (the authors' coherence) embeds with
        "cls": outputs.last_hidden_state[:, 0],
        "mean": mean_pool(outputs.last_hidden_state, batch["attention_mask"]),
    }
    got = {}
    for pooling, want in expected.items():
        got[pooling] = SentenceEmbedder((model, tokenizer), pooling=pooling).encode(texts)
        torch.testing.assert_close(got[pooling], torch.nn.functional.normalize(want, dim=-1), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got["pooler"], got["mean"])
    torch.testing.assert_close(SentenceEmbedder((model, tokenizer)).encode(texts), got["mean"])  # default: mean
    with pytest.raises(ValueError, match="'max'"):
        SentenceEmbedder((model, tokenizer), pooling="max")


def test_simcse_alias_loads_the_papers_embedder_with_its_pooler(tiny_bert, monkeypatch, tmp_path):
    import transformers

    from hf_stackshape.evaluation import SentenceEmbedder
    from hf_stackshape.evaluation.embeddings import SIMCSE_MODEL

    model, tokenizer = tiny_bert
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = []
    real_model, real_tok = transformers.AutoModel.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def fake(real):
        def load(name, *args, **kwargs):
            loaded.append(name)
            return real(str(tmp_path))

        return load

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fake(real_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake(real_tok))
    embedder = SentenceEmbedder("simcse")  # the Hub is offline here: the loaders hand back the tiny BERT
    assert loaded == [SIMCSE_MODEL, SIMCSE_MODEL]
    assert (embedder.pooling, embedder.max_length, embedder.name_or_path) == ("pooler", 128, SIMCSE_MODEL)
    direct = SentenceEmbedder((model, tokenizer), pooling="pooler", max_length=128)
    texts = ["How do I bake bread?", "Mix flour and water."]
    torch.testing.assert_close(embedder.encode(texts), direct.encode(texts))
