"""The reward contract (hf_stackshape.rewards.testing.check_reward): our rewards keep it, broken rewards are named."""

import itertools

import pytest
import torch

from hf_stackshape.rewards import (
    CallableReward,
    HFRewardModel,
    RewardFunction,
    ShardedReward,
    load_reward,
    score_groups,
)
from hf_stackshape.rewards.testing import RewardContractError, check_reward


# ------------------------------------------------------------------------------------ our rewards keep it


def test_callable_rewards_keep_the_contract():
    for reward in (
        CallableReward(lambda response: len(response)),
        CallableReward(lambda prompt, response: len(prompt) - 0.5 * len(response)),
        CallableReward(lambda ps, rs: [len(p) + len(r) for p, r in zip(ps, rs)], batched=True),
        load_reward("length"),
        load_reward("vader"),
    ):
        report = check_reward(reward)
        assert report["score_grouped"] is None and report["batch consistency"]["max_abs_diff"] == 0.0
        assert report["fingerprint"] == reward.fingerprint()


@pytest.mark.parametrize("case", ["chat-template", "plain-template", "truncated"])
def test_hf_reward_models_keep_the_contract(case, tiny_rm_model, tokenizer, smol_folder):
    if case == "plain-template":  # "{prompt}\n{response}"
        from transformers import AutoTokenizer

        plain_tokenizer = AutoTokenizer.from_pretrained(smol_folder)
        plain_tokenizer.chat_template = None
        rm = HFRewardModel(tiny_rm_model, plain_tokenizer, batch_size=2)
    elif case == "truncated":  # left truncation: score_grouped falls back per prompt
        rm = HFRewardModel(tiny_rm_model, tokenizer, max_length=24)
    else:  # the chat template, score_grouped sharing each prompt's prefix
        rm = HFRewardModel(tiny_rm_model, tokenizer, batch_size=4)
    report = check_reward(rm)
    assert report["score_grouped"] is not None  # checked, not skipped
    assert report["batch consistency"]["max_abs_diff"] < 1e-4


def test_sharded_reward_keeps_the_contract(tiny_rm_model, tokenizer):
    report = check_reward(ShardedReward(HFRewardModel(tiny_rm_model, tokenizer)))
    assert report["fingerprint"] == HFRewardModel(tiny_rm_model, tokenizer).fingerprint()


@pytest.mark.slow
def test_the_demo_reward_model_keeps_the_contract():
    check_reward(load_reward("demo"))


def test_user_pairs_and_bad_arguments():
    reward = CallableReward(lambda response: len(response))
    assert check_reward(reward, ["a", "b", "c"], ["x", "yy", "zzz"])["output"] == {"pairs": 3, "min": 1.0, "max": 3.0}
    with pytest.raises(ValueError, match="both"):
        check_reward(reward, prompts=["a", "b"])
    with pytest.raises(ValueError, match="at least two"):
        check_reward(reward, ["a"], ["x"])
    with pytest.raises(ValueError, match="rtol"):
        check_reward(reward, rtol=-1)


# ---------------------------------------------------------------------------- broken rewards are named


class _Length(RewardFunction):
    def score(self, prompts, responses):
        return torch.tensor([float(len(r)) for r in responses])


def test_a_score_grouped_that_disagrees_with_score_fails():
    class Grouped(_Length):
        def score_grouped(self, prompts, groups):
            return self.score([p for p, g in zip(prompts, groups) for _ in g], [r for g in groups for r in g]).view(
                len(prompts), -1) + 1.0

    with pytest.raises(RewardContractError, match=r"score_grouped: score_grouped differs from score"):
        check_reward(Grouped())

    class WrongShape(_Length):
        def score_grouped(self, prompts, groups):
            return torch.zeros(len(prompts))

    with pytest.raises(RewardContractError, match=r"score_grouped: returned \(2,\), must be a tensor of shape \(2, 3\)"):
        check_reward(WrongShape())


def test_an_unstable_or_non_json_fingerprint_fails():
    counter = itertools.count()

    class Unstable(_Length):
        def fingerprint(self):
            return {"call": next(counter)}

    with pytest.raises(RewardContractError, match="fingerprint: two calls of fingerprint"):
        check_reward(Unstable())

    class NotJson(_Length):
        def fingerprint(self):
            return {"tokenizer": object()}

    with pytest.raises(RewardContractError, match="fingerprint: fingerprint.. is not plain JSON"):
        check_reward(NotJson())


def test_a_batch_dependent_reward_fails():
    # Normalised by its batch: each reward depends on which other pairs share the call.
    centred = CallableReward(lambda ps, rs: [len(r) - sum(map(len, rs)) / len(rs) for r in rs], batched=True)
    with pytest.raises(RewardContractError, match="batch consistency: the pairs scored one pair at a time"):
        check_reward(centred)
    calls = itertools.count()
    drifting = CallableReward(lambda response: len(response) + next(calls))
    with pytest.raises(RewardContractError, match="batch consistency: the pairs scored again"):
        check_reward(drifting)


def test_wrong_outputs_fail_first():
    class Float64(RewardFunction):
        def score(self, prompts, responses):
            return torch.zeros(len(prompts), dtype=torch.float64)

    class Column(RewardFunction):
        def score(self, prompts, responses):
            return torch.zeros(len(prompts), 1)

    class NaN(RewardFunction):
        def score(self, prompts, responses):
            return torch.full((len(prompts),), float("nan"))

    class Listy(RewardFunction):
        def score(self, prompts, responses):
            return [0.0] * len(prompts)

    class Raises(RewardFunction):
        def score(self, prompts, responses):
            raise RuntimeError("service down")

    for broken, message in ((Float64(), "dtype torch.float64"), (Column(), r"shape \(6, 1\)"),
                            (NaN(), "non-finite"), (Listy(), "list, not a torch.Tensor"),
                            (Raises(), "RuntimeError: service down")):
        with pytest.raises(RewardContractError, match="output: .*" + message):
            check_reward(broken)


# ------------------------------------------------------------------------------------- the grouped scorer


def test_score_groups_is_the_one_grouped_scorer(tiny_rm_model, tokenizer):
    import hf_stackshape.bon as bon

    assert bon._score_groups is score_groups  # the old private name, kept for the bundled srs-bon template
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    prompts, groups = ["Hi", "How do I bake bread?"], [["Hello!", "Hey", ""], ["Knead it.", "Bake it.", "Buy it."]]
    calls = []
    grouped = rm.score_grouped
    rm.score_grouped = lambda p, g: calls.append(len(p)) or grouped(p, g)
    out = score_groups(rm, prompts, groups)
    assert calls == [2] and out.shape == (2, 3) and out.dtype == torch.float32
    flat = rm.score([p for p in prompts for _ in range(3)], [r for g in groups for r in g])
    torch.testing.assert_close(out.reshape(-1), flat, rtol=1e-4, atol=1e-4)
    # A reward without score_grouped scores the flattened pairs; a plain callable is wrapped.
    assert score_groups(lambda response: len(response), ["a", "b"], [["x", ""], ["yyy", "zz"]]).tolist() == [[1, 0], [3, 2]]
    assert score_groups(rm, [], []).shape == (0, 0)
    with pytest.raises(ValueError, match="same number of responses"):
        score_groups(rm, ["a", "b"], [["x"], ["y", "z"]])
    with pytest.raises(ValueError, match="pair up"):
        score_groups(rm, ["a", "b"], [["x"]])

    class Short(RewardFunction):
        def score(self, prompts, responses):
            return torch.zeros(1)

    with pytest.raises(ValueError, match="returned 1 values for 4 responses"):
        score_groups(Short(), ["a", "b"], [["x", "y"], ["z", "w"]])
