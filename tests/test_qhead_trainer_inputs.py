"""QHeadTrainer takes what TRL's trainers take: a head, a backbone or a model id as ``model=``, no
``processing_class`` (loaded from the model), conversation prompts, a ``completion`` column, a user's
``compute_metrics`` next to ours; its card has framework versions, the paper and a faithful usage snippet."""

import pytest
import torch
from datasets import Dataset

from hf_stackshape import QHeadModel, QHeadTrainer
from hf_stackshape.qhead.trainer import _tokenize_rollout, normalize_rollout_columns
from test_qhead import _args, good_bad_dataset


@pytest.fixture
def backbone_dir(tmp_path, tiny_lm, tokenizer):
    path = tmp_path / "backbone"
    tiny_lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _flat_trl(conversational: bool, n_prompts=3, n=3):
    """The good/bad task as TRL's prompt-completion rows (flat: one completion per row)."""
    grouped = good_bad_dataset(n_prompts, n, seed=0)
    rows = {"prompt": [], "completion": [], "reward": [], "threshold": []}
    for row in grouped:
        for text, reward in zip(row["responses"], row["rewards"]):
            prompt = [{"role": "user", "content": row["prompt"]}] if conversational else row["prompt"]
            rows["prompt"].append(prompt)
            rows["completion"].append([{"role": "assistant", "content": text}] if conversational else text)
            rows["reward"].append(reward)
            rows["threshold"].append(row["threshold"])
    return Dataset.from_dict(rows)


def test_model_may_be_a_backbone_or_its_id_with_head_kwargs(tmp_path, tiny_lm, tokenizer, backbone_dir):
    args = _args(tmp_path, num_train_epochs=1)
    data = good_bad_dataset(2, 2, 0)
    from_model = QHeadTrainer(tiny_lm, args, train_dataset=data, processing_class=tokenizer,
                              head_kwargs={"head_type": "q", "rank": 4})
    assert isinstance(from_model.model, QHeadModel) and from_model.model.config.head_type == "q"
    assert from_model.model.backbone is tiny_lm and from_model.model.config.rank == 4
    # an id / folder, and no processing_class: the backbone's tokenizer is loaded from it
    from_id = QHeadTrainer(backbone_dir, args, train_dataset=data, head_kwargs={"head_hidden_size": 8})
    assert from_id.model.config.backbone_name_or_path == backbone_dir
    assert from_id.processing_class.get_vocab() == tokenizer.get_vocab()
    assert from_id.model.config.head_hidden_size == 8
    with pytest.raises(ValueError, match="already a QHeadModel"):
        QHeadTrainer(from_id.model, args, train_dataset=data, head_kwargs={"rank": 2})
    with pytest.raises(ValueError, match="head_kwargs"):
        QHeadTrainer(tiny_lm, args, train_dataset=data, processing_class=tokenizer, head_kwargs={"nonsense": 1})
    with pytest.raises(ValueError, match="causal-LM backbone"):
        QHeadTrainer(42, args, train_dataset=data, processing_class=tokenizer)


def test_trl_completion_column_and_conversations(tmp_path, tiny_lm, tokenizer):
    plain = _flat_trl(conversational=False)
    ours = Dataset.from_dict({"prompt": plain["prompt"], "response": plain["completion"], "reward": plain["reward"],
                              "threshold": plain["threshold"]})
    args = _args(tmp_path, num_train_epochs=1, validation_split=0.0)
    a = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), args, train_dataset=plain, processing_class=tokenizer)
    b = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), args, train_dataset=ours, processing_class=tokenizer)
    assert a.train_dataset["input_ids"] == b.train_dataset["input_ids"]
    assert a.train_dataset["target"] == b.train_dataset["target"]

    # conversation prompts go through the chat template, exactly as a string prompt with apply_chat_template
    conv = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), args, train_dataset=_flat_trl(True),
                        processing_class=tokenizer)
    chat_args = _args(tmp_path, num_train_epochs=1, validation_split=0.0, apply_chat_template=True)
    chat = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), chat_args, train_dataset=plain,
                        processing_class=tokenizer)
    assert conv.train_dataset["input_ids"] == chat.train_dataset["input_ids"]
    assert conv.train_dataset["input_ids"] != a.train_dataset["input_ids"]
    assert conv.train_dataset["target"] == chat.train_dataset["target"]


def test_conversation_rows_group_by_prompt_and_bad_prompts_are_named():
    data = normalize_rollout_columns(_flat_trl(True, n_prompts=2, n=3))
    assert len(set(data["prompt"])) == 2 and "response" in data.column_names
    with pytest.raises(ValueError, match="Prompt 1 must be a string or a conversation"):
        normalize_rollout_columns(Dataset.from_dict({"prompt": [[{"role": "user", "content": "a"}], [{"x": 1}]],
                                                     "completion": ["b", "c"], "reward": [1.0, 0.0]}))
    with pytest.raises(ValueError, match="both"):
        normalize_rollout_columns(Dataset.from_dict({"prompt": ["a"], "completion": ["b"], "response": ["b"],
                                                     "reward": [1.0]}))


def test_conversations_need_a_chat_template(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    row = normalize_rollout_columns(_flat_trl(True, 1, 1))[0]
    with pytest.raises(ValueError, match="no chat template"):
        _tokenize_rollout(row, bare, apply_chat_template=False, max_length=64)


def test_user_compute_metrics_is_merged_with_ours(tmp_path, tiny_lm, tokenizer):
    seen = []

    def mine(eval_pred):
        seen.append(len(eval_pred.label_ids))
        return {"my_count": float(len(eval_pred.label_ids))}

    torch.manual_seed(0)
    trainer = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), _args(tmp_path, num_train_epochs=1),
                           train_dataset=good_bad_dataset(4, 2, 0), eval_dataset=good_bad_dataset(2, 2, 1),
                           processing_class=tokenizer, compute_metrics=mine)
    metrics = trainer.evaluate()
    assert seen and metrics["eval_my_count"] == 4.0
    assert {"eval_mse", "eval_spearman_last", "eval_mse_mid"} <= set(metrics)


@pytest.mark.parametrize("chat", [True, False])
def test_card_has_versions_paper_and_the_training_prompt_format(tmp_path, tiny_lm, tokenizer, chat):
    import transformers

    trainer = QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8),
                           _args(tmp_path, num_train_epochs=1, apply_chat_template=chat),
                           train_dataset=good_bad_dataset(2, 2, 0), processing_class=tokenizer)
    trainer.create_model_card()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Framework versions" in card and f"- transformers: {transformers.__version__}" in card
    assert "https://arxiv.org/abs/2602.02572" in card and "@inproceedings{wang2026stackelberg" in card
    assert "trust_remote_code=True" in card
    snippet = card[card.index("## Use") : card.index("## Training")]
    assert ("apply_chat_template" in snippet) is chat
    assert ("chat template's user turn" in snippet) is chat
