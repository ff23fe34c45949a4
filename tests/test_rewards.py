"""Reward adapters: HFRewardModel on a tiny random reward model, CallableReward, as_reward_function."""

import math

import pytest
import torch

from conftest import tiny_llama_config
from hf_stackshape.rewards import CallableReward, HFRewardModel, RewardFunction, as_reward_function

PROMPTS = ["Hi", "How do I bake bread at home?", "Tell me a joke", "What is 2 + 2?", "Name a colour."]
RESPONSES = [
    "Hello there, how can I help you today?",
    "Mix flour",
    "Why did the chicken cross the road? To get to the other side, of course.",
    "4",
    "Blue is a colour, and so is green.",
]


@pytest.fixture
def plain_tokenizer(smol_folder):
    """The SmolLM2 tokenizer without a chat template (a fresh copy: the session one keeps its template)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_folder, padding_side="left")
    tok.chat_template = None
    return tok


def batch_and_single(rm):
    """Scores of all pairs in batches and one pair at a time (no padding); asserts they agree."""
    batch = rm.score(PROMPTS, RESPONSES)
    single = torch.cat([rm.score([p], [r]) for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    return batch, single


def test_batch_scoring_equals_one_by_one(tiny_rm_model, tokenizer):
    rm = HFRewardModel(tiny_rm_model, tokenizer, batch_size=3)
    batch, _ = batch_and_single(rm)
    assert batch.dtype == torch.float32 and batch.device.type == "cpu" and batch.shape == (len(PROMPTS),)
    # Padding really happened (the lengths differ), and the scores are not trivially all the same.
    lengths = rm.encode(PROMPTS, RESPONSES)["attention_mask"].sum(-1)
    assert lengths.min() < lengths.max()
    assert batch.std() > 0
    # Order of the pairs does not matter (score sorts by length internally, then restores the order).
    rev = rm.score(PROMPTS[::-1], RESPONSES[::-1])
    torch.testing.assert_close(rev.flip(0), batch, atol=1e-5, rtol=1e-5)
    assert rm(PROMPTS[:2], RESPONSES[:2]).shape == (2,)
    assert rm.score([], []).shape == (0,)


@pytest.mark.parametrize("arch, side", [("gpt2", "left"), ("bert", "right"), ("deberta-v2", "right")])
def test_padding_invariance_beyond_llama(tokenizer, arch, side):
    # Llama's rotary positions hide a left-padding shift; GPT-2's learned absolute positions do not, so
    # it checks that position ids start at the first real token. Encoder heads (BERT, DeBERTa) read the
    # first token, which left padding would make a pad token: they must be padded on the right.
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        n_positions=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_config(cfg).eval()
    rm = HFRewardModel(model, tokenizer, batch_size=len(PROMPTS), use_chat_template=False)
    assert rm.padding_side == side
    real = rm.encode(PROMPTS, RESPONSES)["attention_mask"].bool()
    assert real[:, -1 if side == "left" else 0].all() and not real[:, 0 if side == "left" else -1].all()
    _, single = batch_and_single(rm)
    # Forcing the other side shows what the default avoids (GPT-2 does not care: it finds the last token).
    other = "right" if side == "left" else "left"
    wrong = HFRewardModel(model, tokenizer, batch_size=len(PROMPTS), use_chat_template=False, padding_side=other)
    if arch != "gpt2":
        assert not torch.allclose(wrong.score(PROMPTS, RESPONSES), single, atol=1e-5)
    with pytest.raises(ValueError, match="padding_side"):
        HFRewardModel(model, tokenizer, padding_side="middle")


def test_score_ids_matches_score_and_restores_tokenizer(tiny_rm_model, tokenizer):
    side = tokenizer.padding_side
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    assert rm.padding_side == "left"  # decoder head: the last real token
    enc = rm.encode(PROMPTS[:3], RESPONSES[:3])
    assert tokenizer.padding_side == side
    assert (enc["attention_mask"][:, -1] == 1).all()  # left padded
    torch.testing.assert_close(rm.score_ids(enc["input_ids"], enc["attention_mask"]), rm.score(PROMPTS[:3], RESPONSES[:3]))


def test_left_truncation_keeps_the_response(tiny_rm_model, plain_tokenizer):
    rm = HFRewardModel(tiny_rm_model, plain_tokenizer, max_length=12)
    assert not rm.use_chat_template
    response = "the final answer is forty two"
    long_a = "Once upon a time " * 80 + "what is the answer?"
    long_b = "Completely different opening words here " * 60 + "what is the answer?"
    enc = rm.encode([long_a, long_b], [response, response])
    assert enc["input_ids"].shape[-1] == 12
    resp_ids = plain_tokenizer(" " + response, add_special_tokens=False)["input_ids"]
    for row in enc["input_ids"]:
        assert plain_tokenizer.decode(row).endswith(response)
        assert row[-len(resp_ids) :].tolist() == resp_ids[-len(resp_ids) :] or plain_tokenizer.decode(
            row[-len(resp_ids) :]
        ).strip() == response
    # Only the (shared) end is scored, so the different beginnings do not matter.
    scores = rm.score([long_a, long_b], [response, response])
    assert scores[0].item() == pytest.approx(scores[1].item(), abs=1e-5)
    # With room for everything the prompts are seen and the scores differ.
    full = HFRewardModel(rm.model, plain_tokenizer, max_length=512).score([long_a, long_b], [response, response])
    assert abs(full[0].item() - full[1].item()) > 1e-6
    assert plain_tokenizer.truncation_side == "right"  # restored


def test_chat_template_used_when_available(tiny_rm_model, tokenizer):
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    assert rm.use_chat_template
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert rm.format("Hi", "Hello!") == tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>assistant" in rm.format("Hi", "Hello!")
    forbidden = HFRewardModel(tiny_rm_model, tokenizer, use_chat_template=False)
    assert forbidden.format("Hi", "Hello!") == "Hi\nHello!"
    assert not torch.allclose(rm.score(["Hi"], ["Hello!"]), forbidden.score(["Hi"], ["Hello!"]))


def test_plain_and_custom_templates(tiny_rm_model, plain_tokenizer, tokenizer):
    plain = HFRewardModel(tiny_rm_model, plain_tokenizer)
    assert not plain.use_chat_template and plain.format("Q", "A") == "Q\nA"
    with pytest.raises(ValueError, match="chat template"):
        HFRewardModel(tiny_rm_model, plain_tokenizer, use_chat_template=True)
    custom = HFRewardModel(tiny_rm_model, tokenizer, template="User: {prompt}\nBot: {response}")
    assert not custom.use_chat_template
    assert custom.format("Q", "A") == "User: Q\nBot: A"
    fn = HFRewardModel(tiny_rm_model, tokenizer, template=lambda p, r: f"<{p}|{r}>")
    assert fn.format("Q", "A") == "<Q|A>"
    # Scoring a template equals scoring the text it produces through the plain path.
    same = HFRewardModel(tiny_rm_model, plain_tokenizer, template="{prompt}{response}")
    torch.testing.assert_close(fn.score(["Q"], ["A"]), same.score(["<Q|"], ["A>"]))
    with pytest.raises(ValueError, match="response"):
        HFRewardModel(tiny_rm_model, tokenizer, template="{prompt} only")


def test_reward_model_must_have_one_label(tokenizer):
    from transformers import LlamaForSequenceClassification

    cfg = tiny_llama_config(len(tokenizer), num_labels=2, pad_token_id=tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="num_labels=2"):
        HFRewardModel(LlamaForSequenceClassification(cfg), tokenizer)


def test_bad_arguments(tiny_rm_model, tokenizer):
    with pytest.raises(ValueError, match="batch_size"):
        HFRewardModel(tiny_rm_model, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        HFRewardModel(tiny_rm_model, tokenizer, max_length=1)
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    with pytest.raises(ValueError, match="pair up"):
        rm.score(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="lists"):
        rm.score("a", "x")


def test_non_finite_model_output_raises(tiny_rm_model, tokenizer):
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    with torch.no_grad():
        tiny_rm_model.score.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        rm.score(["Hi"], ["Hello"])


# --------------------------------------------------------------------------------------------------
# CallableReward
# --------------------------------------------------------------------------------------------------


def test_callable_one_and_two_arguments():
    one = CallableReward(lambda response: len(response))
    assert one(["p1", "p2"], ["abc", "de"]).tolist() == [3.0, 2.0]
    two = CallableReward(lambda prompt, response: len(prompt) - len(response))
    out = two(["prompt", "p"], ["abc", "de"])
    assert out.tolist() == [3.0, -1.0] and out.dtype == torch.float32

    def with_default(prompt, response, scale=10.0):
        return scale * len(response)

    assert CallableReward(with_default)(["p"], ["ab"]).tolist() == [20.0]

    class Scorer:
        def __call__(self, response):
            return response.count("!")

    scorer = CallableReward(Scorer(), name="bangs")
    assert scorer(["p"], ["hi!!"]).tolist() == [2.0] and scorer.name_or_path == "bangs"
    assert CallableReward(len).score(["p"], ["four"]).tolist() == [4.0]
    assert CallableReward(with_default).name_or_path == "with_default"


def test_callable_batched():
    calls = []

    def batched(prompts, responses):
        calls.append(len(prompts))
        return [len(p) + len(r) for p, r in zip(prompts, responses)]

    rf = CallableReward(batched, batched=True)
    assert rf(["a", "bb", "ccc"], ["1", "2", "3"]).tolist() == [2.0, 3.0, 4.0]
    assert calls == [3]
    assert CallableReward(lambda ps, rs: torch.arange(len(ps)), batched=True)(["a", "b"], ["c", "d"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        CallableReward(lambda ps, rs: [1.0], batched=True)(["a", "b"], ["c", "d"])


@pytest.mark.parametrize("value, match", [("abc", "numbers"), (None, "numbers"), ([1, 2], "numbers")])
def test_callable_non_numeric_raises(value, match):
    with pytest.raises(ValueError, match=match):
        CallableReward(lambda r: value)(["p"], ["r"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -math.inf])
def test_callable_non_finite_raises(value):
    with pytest.raises(ValueError, match="non-finite"):
        CallableReward(lambda r: value)(["p"], ["r"])
    with pytest.raises(ValueError, match="non-finite"):
        CallableReward(lambda ps, rs: [0.0, value], batched=True)(["p", "q"], ["r", "s"])


def test_callable_batched_scalar_return_raises():
    with pytest.raises(ValueError, match="numbers|values"):
        CallableReward(lambda ps, rs: 3.0, batched=True)(["p"], ["r"])


def test_callable_validation():
    with pytest.raises(ValueError, match="callable"):
        CallableReward(42)
    rf = CallableReward(lambda r: 1.0)
    with pytest.raises(ValueError, match="pair up"):
        rf(["a"], ["b", "c"])
    assert rf([], []).shape == (0,)


# --------------------------------------------------------------------------------------------------
# as_reward_function
# --------------------------------------------------------------------------------------------------


def test_as_reward_function(tiny_rm_model, tokenizer):
    rf = CallableReward(lambda r: 1.0)
    assert as_reward_function(rf) is rf
    wrapped = as_reward_function(lambda prompt, response: float(len(response)))
    assert isinstance(wrapped, CallableReward) and wrapped(["p"], ["abc"]).tolist() == [3.0]
    rm = as_reward_function((tiny_rm_model, tokenizer))
    assert isinstance(rm, HFRewardModel) and rm.model is tiny_rm_model
    assert isinstance(rm, RewardFunction)
    with pytest.raises(ValueError, match="callable"):
        as_reward_function(tiny_rm_model)  # a model without its tokenizer
    for bad in (42, "reward", [tiny_rm_model, tokenizer], (1, 2)):
        with pytest.raises(ValueError, match="Cannot use"):
            as_reward_function(bad)


# --------------------------------------------------------------------------------------------------
# HFRewardModel.score_grouped: N responses per prompt, the prompt's prefix encoded once
# --------------------------------------------------------------------------------------------------

GROUP_PROMPTS = ["Hi", "How do I bake bread at home?", "Tell me a joke about a cat and a dog."]
GROUP_RESPONSES = [
    # ragged lengths, an empty response, identical responses, a shared start, the pad/EOS text itself
    ["Hello there, how can I help you today?", "", "Hello", "Hello"],
    ["Mix flour", "Mix flour, water, yeast and salt; knead, rest, shape and bake at 230 C.", " ", "\n"],
    ["Why? <|im_end|>", "No.", "A cat and a dog walk into a bar " * 4, "x"],
]


def _flat(prompts, groups):
    return [p for p, g in zip(prompts, groups) for _ in g], [r for g in groups for r in g]


def _spy_score(rm):
    """Record the pairs ``score_grouped`` hands to the plain ``score`` (its fallback)."""
    seen, plain = [], rm.score

    def spy(prompts, responses):
        seen.extend(zip(prompts, responses))
        return plain(prompts, responses)

    rm.score = spy
    return seen


def _count_tokens(module):
    """Token positions the model's forward passes run (a hook on the input embedding)."""
    counted = []
    module.get_input_embeddings().register_forward_hook(lambda m, args, out: counted.append(args[0].numel()))
    return counted


def _gpt2_rm(tokenizer):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model("gpt2", vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                               num_labels=1, pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(3)
    return AutoModelForSequenceClassification.from_config(cfg).eval()


@pytest.mark.parametrize("batch_size", [pytest.param(16, marks=pytest.mark.slow), 3])
def test_score_grouped_equals_flat_score_chat_template(tiny_rm_model, tokenizer, batch_size):
    rm = HFRewardModel(tiny_rm_model, tokenizer, batch_size=batch_size)
    flat_p, flat_r = _flat(GROUP_PROMPTS, GROUP_RESPONSES)
    expected = HFRewardModel(tiny_rm_model, tokenizer, batch_size=1).score(flat_p, flat_r).view(3, 4)
    counted = _count_tokens(tiny_rm_model)
    rm.score(flat_p, flat_r)
    flat_tokens = sum(counted)
    counted.clear()
    seen = _spy_score(rm)
    grouped = rm.score_grouped(GROUP_PROMPTS, GROUP_RESPONSES)
    assert grouped.shape == (3, 4) and grouped.dtype == torch.float32
    torch.testing.assert_close(grouped, expected, rtol=1e-4, atol=1e-6)
    assert seen == []  # every prompt went through the shared-prefix path
    # The chat template's system prompt + user turn ran once per prompt, not 4 times: fewer token
    # positions than `score` runs with the same batch size.
    assert sum(counted) < flat_tokens
    # Different rewards for different responses (the comparison above is not between constants).
    assert grouped[0, 0] != grouped[0, 1] and grouped[0, 2] == grouped[0, 3]


@pytest.mark.parametrize("arch", ["llama-plain-template", "gpt2"])
def test_score_grouped_without_chat_template(tiny_rm_model, plain_tokenizer, tokenizer, arch):
    # "{prompt}\n{response}": an empty response leaves the head alone; GPT-2's learned absolute positions
    # check that the response rows continue the prefix's positions.
    model = tiny_rm_model if arch != "gpt2" else _gpt2_rm(tokenizer)
    rm = HFRewardModel(model, plain_tokenizer, batch_size=8)
    assert not rm.use_chat_template and rm.shared_prefix_unsupported() is None
    seen = _spy_score(rm)
    grouped = rm.score_grouped(GROUP_PROMPTS, GROUP_RESPONSES)
    assert seen == []
    flat = HFRewardModel(model, plain_tokenizer, batch_size=1).score(*_flat(GROUP_PROMPTS, GROUP_RESPONSES))
    torch.testing.assert_close(grouped, flat.view(3, 4), rtol=1e-4, atol=1e-6)


def test_score_grouped_truncated_group_falls_back(tiny_rm_model, plain_tokenizer):
    # One prompt is too long for max_length: its group is scored by `score` (left truncation exactly as
    # there), the others share their prefix.
    long_prompt = "Once upon a time " * 20 + "what is the answer?"
    prompts = ["Hi", long_prompt, "Tell me a joke"]
    responses = [["one", "two words"], ["forty two", "the final answer is forty two"], ["no", ""]]
    rm = HFRewardModel(tiny_rm_model, plain_tokenizer, max_length=40)
    seen = _spy_score(rm)
    grouped = rm.score_grouped(prompts, responses)
    assert seen == [(long_prompt, r) for r in responses[1]]
    flat = HFRewardModel(tiny_rm_model, plain_tokenizer, max_length=40, batch_size=1).score(*_flat(prompts, responses))
    torch.testing.assert_close(grouped, flat.view(3, 2), rtol=1e-4, atol=1e-6)
    # Truncation really happened for that group: with room for everything its rewards change.
    full = HFRewardModel(tiny_rm_model, plain_tokenizer).score_grouped(prompts, responses)
    assert not torch.allclose(full[1], grouped[1], atol=1e-6)
    torch.testing.assert_close(full[[0, 2]], grouped[[0, 2]], rtol=1e-4, atol=1e-6)


def test_score_grouped_falls_back_when_it_cannot_share(tokenizer, tiny_rm_model):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model("bert", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64, num_labels=1,
                               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(3)
    encoder = HFRewardModel(AutoModelForSequenceClassification.from_config(cfg).eval(), tokenizer)
    assert "no `score` head" in encoder.shared_prefix_unsupported()
    seen = _spy_score(encoder)
    flat_p, flat_r = _flat(GROUP_PROMPTS, GROUP_RESPONSES)
    grouped = encoder.score_grouped(GROUP_PROMPTS, GROUP_RESPONSES)
    assert seen == list(zip(flat_p, flat_r))
    torch.testing.assert_close(grouped, encoder.score(flat_p, flat_r).view(3, 4))

    # A subclass that changes `score` keeps its semantics.
    class Doubled(HFRewardModel):
        def score(self, prompts, responses):
            return 2 * super().score(prompts, responses)

    doubled = Doubled(tiny_rm_model, tokenizer)
    assert "overrides `score`" in doubled.shared_prefix_unsupported()
    base = HFRewardModel(tiny_rm_model, tokenizer).score_grouped(GROUP_PROMPTS, GROUP_RESPONSES)
    torch.testing.assert_close(doubled.score_grouped(GROUP_PROMPTS, GROUP_RESPONSES), 2 * base, rtol=1e-4, atol=1e-6)

    # One response per prompt: nothing to share.
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    seen = _spy_score(rm)
    single = rm.score_grouped(GROUP_PROMPTS, [[g[1]] for g in GROUP_RESPONSES])
    assert single.shape == (3, 1) and len(seen) == 3


def test_score_grouped_shapes_and_bad_inputs(tiny_rm_model, tokenizer):
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    assert rm.score_grouped([], []).shape == (0, 0)
    assert rm.score_grouped(["a", "b"], [[], []]).shape == (2, 0)
    with pytest.raises(ValueError, match="same number of responses"):
        rm.score_grouped(["a", "b"], [["x"], ["y", "z"]])
    with pytest.raises(ValueError, match="pair up"):
        rm.score_grouped(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="not strings"):
        rm.score_grouped(["a"], ["xyz"])
    with pytest.raises(ValueError, match="list of prompts"):
        rm.score_grouped("a", [["x"]])
