"""Stackelberg best-of-N: selection law, classic best-of-N, diagnostics, reward adapters, method registry."""

import math

import pytest
import torch

from hf_stackshape.bon import BON_SAFEGUARDS, StackelbergBestOfN, effective_sample_size, follower_weights
from hf_stackshape.rewards import CallableReward, HFRewardModel
from hf_stackshape.core.shaping import bisect_threshold

pytestmark = pytest.mark.usefixtures("one_thread")


def _char_reward(prompt, response):
    """A deterministic reward of the text with few ties."""
    return (sum(map(ord, response)) % 97) / 97.0


def _selector(**kwargs):
    """A StackelbergBestOfN used only for its pure `select` (no model needed)."""
    return StackelbergBestOfN(None, None, CallableReward(_char_reward), **kwargs)


def _reference_srs_probabilities(u, beta, bound, alpha):
    """softmax(B_eff sigmoid(alpha (u - m*)) / beta), written out in the test (bisection for m*)."""
    u = torch.tensor(u, dtype=torch.float64)
    b_eff = min(bound, 2.0 * float(u.max() - u.min()))
    m = bisect_threshold(u[None], beta, b_eff, steps=200)[0]
    shaped = b_eff * torch.sigmoid(alpha * (u - m))
    w = torch.exp((shaped - shaped.max()) / beta)
    return (w / w.sum()).numpy()


@pytest.mark.parametrize("transform", ["srs", "raw"])
def test_soft_selection_frequencies_match_softmax_chi_square(transform):
    from scipy.stats import chisquare

    u = [0.0, 0.4, 0.5, 1.1, 1.3]
    beta, trials = 0.5, 20000
    if transform == "srs":
        expected = _reference_srs_probabilities(u, beta, bound=15.0, alpha=1.0)
    else:
        w = torch.exp(torch.tensor(u, dtype=torch.float64) / beta)
        expected = (w / w.sum()).numpy()
    bon = _selector(n=5, beta=beta, transform=transform, seed=123)
    out = bon.select(torch.tensor([u] * trials))
    counts = torch.bincount(out["chosen_index"], minlength=5).numpy()
    assert chisquare(counts, expected * trials).pvalue > 1e-3
    # The weights reported are the law itself, and a wrong law is rejected by the same test (it has power).
    assert torch.allclose(out["weights"][0], torch.tensor(expected), atol=1e-9)
    uniform = [trials / 5] * 5
    assert chisquare(counts, uniform).pvalue < 1e-6


def test_selection_is_seeded_and_independent_of_batching():
    rewards = torch.rand(12, 6, generator=torch.Generator().manual_seed(0))
    bon = _selector(n=6, beta=0.3, seed=7)
    whole = bon.select(rewards)["chosen_index"]
    assert torch.equal(whole, bon.select(rewards)["chosen_index"])
    g = torch.Generator().manual_seed(7)
    halves = torch.cat([bon.select(rewards[:5], g)["chosen_index"], bon.select(rewards[5:], g)["chosen_index"]])
    assert torch.equal(whole, halves)
    other = _selector(n=6, beta=0.3, seed=8).select(rewards)["chosen_index"]
    assert not torch.equal(whole, other)


def test_argmax_selection_and_diagnostics():
    rewards = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 2.0], [0.0, 0.0, 0.0]])
    for transform in ("raw", "srs", "hard"):
        out = _selector(n=3, beta=0.5, transform=transform, selection="argmax").select(rewards)
        # srs is increasing in r: its argmax is the raw argmax (first index on ties).
        if transform != "hard":
            assert out["chosen_index"].tolist() == [1, 0, 0]
        assert torch.equal(out["effective_sample_size"], torch.ones(3, dtype=torch.float64))
        assert torch.equal(out["chosen_reward"], out["expected_reward"])


def test_soft_diagnostics_threshold_ess_and_no_guidance():
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    out = _selector(n=4, beta=0.5, transform="hard").select(rewards)
    expected_m = bisect_threshold(rewards, 0.5, 15.0, safeguards=BON_SAFEGUARDS, steps=200)
    assert torch.allclose(out["threshold"], expected_m.double(), atol=1e-9)
    # The theorem's fixed point on the samples: m* is the hard threshold's own utility E_rho[u].
    assert torch.allclose(out["expected_reward"], out["threshold"], atol=1e-9)
    assert out["threshold"][1].item() == 1.0  # all rewards tie
    assert torch.all((out["effective_sample_size"] >= 1) & (out["effective_sample_size"] <= 4 + 1e-9))
    assert out["effective_sample_size"][1].item() == pytest.approx(4.0)  # ties: uniform
    base = _selector(n=4, beta=math.inf).select(rewards)
    assert torch.allclose(base["weights"], torch.full((2, 4), 0.25, dtype=torch.float64))
    assert torch.allclose(base["threshold"], rewards.double().mean(-1))


def test_masked_samples_are_never_chosen():
    rewards = torch.tensor([[0.0, 5.0, 1.0]]).repeat(500, 1)
    mask = torch.tensor([[True, False, True]]).repeat(500, 1)
    for selection in ("soft", "argmax"):
        out = _selector(n=3, beta=1.0, selection=selection).select(rewards, mask=mask)
        assert not (out["chosen_index"] == 1).any()


def test_follower_weights_and_ess_closed_forms():
    w = follower_weights(torch.tensor([[0.0, math.log(3.0)]]), beta=1.0)
    assert torch.allclose(w, torch.tensor([[0.25, 0.75]], dtype=torch.float64))
    assert effective_sample_size(w).item() == pytest.approx(1 / (0.25**2 + 0.75**2))
    with pytest.raises(ValueError, match="beta"):
        follower_weights(torch.zeros(1, 2), beta=0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "`n`"),
        ({"selection": "greedy"}, "selection"),
        ({"beta": -1.0}, "beta"),
        ({"do_sample": False}, "do_sample"),
        ({"num_return_sequences": 3}, "num_return_sequences"),
        ({"transform": "nope"}, "transform"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _selector(**kwargs)


def _reference_best_of_n(model, tokenizer, prompts, reward, n, seed, max_new_tokens):
    """Classic best-of-N written out: sample n per prompt, one unbatched prompt and sample at a time (sample j of
    prompt i from its keyed generator, hf_stackshape.utils.sampling), score, keep the argmax."""
    from hf_stackshape.utils.sampling import KeyedSampler, draw_key

    texts = []
    for i, p in enumerate(prompts):
        text = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
        for j in range(n):
            sampler = KeyedSampler.expand([draw_key(seed, i, j, "sample")], model.generation_config)
            out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, logits_processor=[sampler],
                                 pad_token_id=tokenizer.pad_token_id)
            texts.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    best = []
    for i, prompt in enumerate(prompts):
        group = texts[i * n : (i + 1) * n]
        scores = [reward(prompt, r) for r in group]
        best.append(group[max(range(n), key=lambda j: scores[j])])
    return best, [texts[i * n : (i + 1) * n] for i in range(len(prompts))]


def test_argmax_raw_equals_classic_best_of_n(tiny_lm, tokenizer):
    prompts = ["Hello there", "Tell me a story about a cat", "Why?"]
    bon = StackelbergBestOfN(tiny_lm, tokenizer, CallableReward(_char_reward), n=4, transform="raw",
                             selection="argmax", max_new_tokens=6, batch_size=3, seed=5, show_progress=False)
    out = bon.generate(prompts, return_candidates=True)
    best, groups = _reference_best_of_n(tiny_lm, tokenizer, prompts, _char_reward, n=4, seed=5, max_new_tokens=6)
    assert out.candidates == groups
    assert out.responses == best
    expected = torch.tensor([[_char_reward(p, r) for r in g] for p, g in zip(prompts, groups)])
    assert torch.allclose(out.rewards, expected)
    assert torch.allclose(out.chosen_reward, expected.max(dim=-1).values.double())
    rows = out.diagnostics()
    assert len(rows) == 3 and set(rows[0]) >= {"threshold", "chosen_reward", "effective_sample_size"}


def test_generate_batches_resume_and_hf_reward_grouped_scoring(tiny_lm, tiny_rm_model, tokenizer, monkeypatch):
    reward = HFRewardModel(tiny_rm_model, tokenizer)
    calls = []
    original = HFRewardModel.score_grouped
    monkeypatch.setattr(HFRewardModel, "score_grouped", lambda self, p, r: calls.append(len(p)) or original(self, p, r))
    prompts = ["Hi", "How are you?", "Name a colour", "Count to three", "Bye"]
    bon = StackelbergBestOfN(tiny_lm, tokenizer, reward, n=3, beta=0.5, max_new_tokens=5, batch_size=2, seed=1,
                             show_progress=False)
    seen = []
    out = bon.generate(prompts, return_candidates=True, on_batch=lambda start, rs: seen.append((start, rs)))
    assert calls == [2, 2, 1]  # one grouped reward call per batch of prompts
    assert [s for s, _ in seen] == [0, 2, 4] and [r for _, rs in seen for r in rs] == out.responses
    flat = reward.score([p for p in prompts for _ in range(3)], [r for g in out.candidates for r in g])
    assert torch.allclose(out.rewards.reshape(-1), flat, atol=1e-4)
    for i, group in enumerate(out.candidates):
        assert out.responses[i] == group[int(out.chosen_index[i])]
    # A resumed run (first_index) samples and selects exactly as the uninterrupted one.
    rest = bon.generate(prompts[2:], return_candidates=True, first_index=2)
    assert rest.responses == out.responses[2:] and rest.candidates == out.candidates[2:]


def test_generation_config_is_respected(tiny_lm, tokenizer):
    tiny_lm.generation_config.top_k = 7
    bon = StackelbergBestOfN(tiny_lm, tokenizer, CallableReward(_char_reward), n=2, temperature=0.7)
    cfg = bon.generation_config()
    assert (cfg.top_k, cfg.temperature, cfg.do_sample, cfg.num_return_sequences) == (7, 0.7, True, 2)
    assert tiny_lm.generation_config.num_return_sequences in (None, 1)  # the model's own config is untouched


def test_methods_registered_and_dispatched(tiny_lm, tokenizer):
    from hf_stackshape.pipeline.generation import generate_responses, parse_method

    assert (parse_method("bon").selection, parse_method("bon").transform) == ("argmax", "raw")
    assert (parse_method("soft-bon").selection, parse_method("soft-bon").transform) == ("soft", "raw")
    assert (parse_method("srs-bon").selection, parse_method("srs-bon").transform) == ("soft", "srs")
    assert [parse_method(m).label for m in ("bon", "soft-bon", "srs-bon", "hard-bon")] == [
        "bon", "soft-bon", "srs-bon", "hard-bon"]
    prompts = ["Hi", "Tell me a joke"]
    reward = CallableReward(_char_reward)
    got = generate_responses(tiny_lm, tokenizer, prompts, method="srs-bon", reward=reward, weight=2.0,
                             num_samples=3, max_new_tokens=5, batch_size=2, seed=3, show_progress=False)
    direct = StackelbergBestOfN(tiny_lm, tokenizer, reward, n=3, beta=0.5, transform="srs", max_new_tokens=5,
                                batch_size=2, seed=3, show_progress=False).generate(prompts)
    assert got == direct.responses
    with pytest.raises(ValueError, match="reward"):
        generate_responses(tiny_lm, tokenizer, prompts, method="bon", num_samples=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="not a best-of-N method"):
        StackelbergBestOfN.from_method("srs-args", tiny_lm, tokenizer, reward)
    uniform = StackelbergBestOfN.from_method("soft-bon", tiny_lm, tokenizer, reward, weight=0.0, n=3)
    assert uniform.inverse_beta == 0.0 and uniform.selection == "soft" and uniform.transform.name == "raw"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_half_precision(tiny_lm, tiny_rm_model, tokenizer):
    model = tiny_lm.to("cuda", torch.bfloat16)
    reward = HFRewardModel(tiny_rm_model.to("cuda", torch.bfloat16), tokenizer)
    out = StackelbergBestOfN(model, tokenizer, reward, n=4, max_new_tokens=5, show_progress=False).generate(["Hi", "Yo"])
    assert len(out.responses) == 2 and out.rewards.dtype == torch.float32 and out.rewards.device.type == "cpu"


def test_sweep_runs_best_of_n_against_soft_bon(tiny_lm, tokenizer, tmp_path):
    from hf_stackshape.pipeline.sweep import SweepConfig, run_sweep

    config = SweepConfig(methods=["srs-bon", "bon"], weights=[1.0], num_samples=3, max_new_tokens=4, batch_size=3)
    table = run_sweep(tiny_lm, tokenizer, ["Hi", "Say something nice.", "Why?"], CallableReward(_char_reward),
                      config, tmp_path, show_progress=False)
    assert sorted(r["method"] for r in table) == ["base", "bon", "soft-bon", "srs-bon"]
    (srs,) = [r for r in table if r["method"] == "srs-bon"]
    assert "win_tie_vs_vanilla" in srs  # compared with soft-bon, the same selection on the raw reward
    (argmax,) = [r for r in table if r["method"] == "bon"]
    assert "win_tie_vs_vanilla" not in argmax
    # One sampling serves every best-of-N cell, with the responses separate runs give.
    import json

    from hf_stackshape.pipeline.generation import generate_responses

    stored = [json.loads(line)["response"] for line in (tmp_path / "generations" / "srs-bon_w1.jsonl").read_text().splitlines()]
    assert stored == generate_responses(tiny_lm, tokenizer, ["Hi", "Say something nice.", "Why?"], method="srs-bon",
                                        reward=CallableReward(_char_reward), weight=1.0, num_samples=3,
                                        max_new_tokens=4, batch_size=3, seed=config.seed, show_progress=False)


def test_grid_equals_separate_runs(tiny_lm, tokenizer):
    from hf_stackshape.bon import best_of_n_grid
    from hf_stackshape.pipeline.generation import generate_responses

    prompts = ["Hi", "Tell me a joke", "Why?"]
    reward = CallableReward(_char_reward)
    grid = best_of_n_grid(tiny_lm, tokenizer, reward, prompts, ["bon", "soft-bon", "srs-bon"], [0.5, 4.0], n=4,
                          max_new_tokens=5, batch_size=2, seed=2, show_progress=False)
    assert sorted(grid) == sorted((m, w) for m in ("bon", "soft-bon", "srs-bon") for w in (0.5, 4.0))
    for (method, weight), out in grid.items():
        separate = generate_responses(tiny_lm, tokenizer, prompts, method=method, reward=reward, weight=weight,
                                      num_samples=4, max_new_tokens=5, batch_size=2, seed=2, show_progress=False)
        assert out.responses == separate, (method, weight)
    assert grid[("srs-bon", 0.5)].candidates == grid[("bon", 4.0)].candidates
