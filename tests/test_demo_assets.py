"""The demo's bundled assets: prompts file, VADER gold judge, and the trained demo reward model."""

import json
import re
from collections import Counter

import pytest
import torch

from hf_stackshape.assets.demo import (
    DEMO_PROMPTS_PATH,
    DEMO_RM_PATH,
    demo_prompt_records,
    demo_prompts,
    load_demo_reward_model,
    vader_reward,
)
from hf_stackshape.rewards import CallableReward, HFRewardModel

POSITIVE_NEGATIVE = [
    (
        "How was your weekend?",
        "It was wonderful! I had a lovely time with friends and I feel happy and grateful.",
        "It was awful. Everything went wrong, I felt miserable and I hated every minute.",
    ),
    (
        "What do you think of my new painting?",
        "I love it! The colours are beautiful and it is a joy to look at. Great work!",
        "I hate it. The colours are ugly and depressing, and it is a terrible mess.",
    ),
    (
        "Any advice for my first day at a new job?",
        "You will do great! Be kind, smile, ask questions and enjoy meeting your friendly new team.",
        "Expect the worst. People will be hostile, you will fail and it will be a horrible, sad day.",
    ),
]


def _normalise(text):
    return re.sub(r"[^a-z0-9 ]", "", " ".join(text.lower().split()))


def test_prompts_file_is_well_formed():
    lines = DEMO_PROMPTS_PATH.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) >= 300
    for row in rows:
        assert set(row) == {"id", "prompt", "category", "split"}, row
        assert row["split"] in {"train", "test"}
        assert isinstance(row["prompt"], str) and len(row["prompt"].split()) >= 3, row
        assert row["prompt"] == row["prompt"].strip()
    assert len({r["id"] for r in rows}) == len(rows), "ids must be unique"
    assert len({_normalise(r["prompt"]) for r in rows}) == len(rows), "prompts must not repeat"
    splits = Counter(r["split"] for r in rows)
    assert splits["train"] >= 200 and splits["test"] >= 90, splits
    # Every category is represented in both splits (stratified), including prompts to decline.
    by_cat = Counter((r["category"], r["split"]) for r in rows)
    categories = {r["category"] for r in rows}
    assert len(categories) >= 6 and "refusal" in categories
    for cat in categories:
        assert by_cat[(cat, "train")] > 0 and by_cat[(cat, "test")] > 0, cat


def test_demo_prompts_splits_partition_the_file():
    everything = demo_prompts()
    train, test = demo_prompts("train"), demo_prompts("test")
    assert len(train) + len(test) == len(everything)
    assert not set(train) & set(test)
    assert [r["prompt"] for r in demo_prompt_records("test")] == test
    with pytest.raises(ValueError, match="validation"):
        demo_prompts("validation")


def test_vader_reward_values():
    gold = vader_reward()
    assert isinstance(gold, CallableReward)
    # One VADER: the demo's gold judge is load_reward("vader"), one name and one pinned fingerprint.
    from hf_stackshape.rewards import load_reward

    assert gold.name_or_path == "vader"
    assert gold.fingerprint() == load_reward("vader").fingerprint() == {
        "type": "CallableReward", "name": "vader", "batched": False, "fn": {"version": "vader-compound/1"}}
    prompts = ["Hi"] * 3
    responses = ["I love this, it is wonderful!", "The train leaves at noon.", "I hate this, it is awful."]
    values = gold(prompts, responses)
    assert values.dtype == torch.float32 and values.shape == (3,)
    assert values[0] > 0.5 and values[2] < -0.5 and abs(values[1].item()) < 0.05
    assert bool(((values >= -1) & (values <= 1)).all())
    # The prompt is ignored: the judge scores the response only.
    assert gold(["I hate everything"], ["Thanks, great!"]).item() == gold(["Hi"], ["Thanks, great!"]).item()


def test_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_demo_reward_model"):
        load_demo_reward_model(tmp_path)


def test_scoring_layout_matches_reward_trainer_tokenisation(tokenizer, tiny_rm_model):
    """TRL's RewardTrainer tokenises conversational pairs with apply_chat_template; HFRewardModel must
    produce the same ids, or the demo RM would be scored on text it was never trained on."""
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    for prompt, good, _ in POSITIVE_NEGATIVE:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": good}]
        trained = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        scored = rm.encode([prompt], [good])["input_ids"][0].tolist()
        assert scored == list(trained)


def test_bundled_adapter_is_small_and_portable():
    weights = DEMO_RM_PATH / "adapter_model.safetensors"
    assert weights.is_file(), "run examples/train_demo_reward_model.py to create the demo reward model"
    assert weights.stat().st_size < 5_000_000
    config = json.loads((DEMO_RM_PATH / "adapter_config.json").read_text())
    assert not config["base_model_name_or_path"].startswith("/"), "no machine-specific base path"
    assert "score" in (config.get("modules_to_save") or [])


@pytest.mark.slow
def test_demo_reward_model_prefers_positive_answers():
    rm = load_demo_reward_model(batch_size=8)
    assert isinstance(rm, HFRewardModel)
    assert rm.model.config.pad_token_id == rm.tokenizer.pad_token_id is not None
    prompts = [p for p, _, _ in POSITIVE_NEGATIVE]
    good = rm.score(prompts, [g for _, g, _ in POSITIVE_NEGATIVE])
    bad = rm.score(prompts, [b for _, _, b in POSITIVE_NEGATIVE])
    assert bool((good > bad).all()), (good, bad)
    # Merged LoRA weights give the same rewards as the unmerged adapter.
    unmerged = load_demo_reward_model(merge=False, batch_size=8)
    single = unmerged.score(prompts[:1], [POSITIVE_NEGATIVE[0][1]])
    torch.testing.assert_close(single, good[:1], atol=1e-3, rtol=1e-3)
