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


def test_batch_scoring_equals_one_by_one(tiny_rm_model, tokenizer):
    rm = HFRewardModel(tiny_rm_model, tokenizer, batch_size=3)
    batch = rm.score(PROMPTS, RESPONSES)
    assert batch.dtype == torch.float32 and batch.device.type == "cpu" and batch.shape == (len(PROMPTS),)
    single = torch.cat([rm.score([p], [r]) for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    # Padding really happened (the lengths differ), and the scores are not trivially all the same.
    lengths = rm.encode(PROMPTS, RESPONSES)["attention_mask"].sum(-1)
    assert lengths.min() < lengths.max()
    assert batch.std() > 0
    # Order of the pairs does not matter (score sorts by length internally, then restores the order).
    rev = rm.score(PROMPTS[::-1], RESPONSES[::-1])
    torch.testing.assert_close(rev.flip(0), batch, atol=1e-5, rtol=1e-5)
    assert rm(PROMPTS[:2], RESPONSES[:2]).shape == (2,)
    assert rm.score([], []).shape == (0,)


def test_padding_invariance_with_absolute_positions(tokenizer):
    # Llama's rotary positions hide a left-padding shift; GPT-2's learned absolute positions do not,
    # so this checks that the position ids really start at the first real token.
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(2)
    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=256,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    rm = HFRewardModel(GPT2ForSequenceClassification(cfg).eval(), tokenizer, batch_size=len(PROMPTS))
    batch = rm.score(PROMPTS, RESPONSES)
    single = torch.cat([rm.score([p], [r]) for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_score_ids_matches_score_and_restores_tokenizer(tiny_rm_model, tokenizer):
    side = tokenizer.padding_side
    rm = HFRewardModel(tiny_rm_model, tokenizer)
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
