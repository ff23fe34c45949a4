"""QHeadModel save/load/share and QHeadTrainer on shaped rewards (SRS-CD)."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from conftest import tiny_llama_config
from datasets import Dataset
from transformers import HfArgumentParser, LlamaForCausalLM

from hf_stackshape import QHeadConfig, QHeadModel, QHeadTrainer, QHeadTrainerConfig, get_transform
from hf_stackshape.qhead.modeling_qhead import QHeadOutput
from hf_stackshape.qhead.trainer import shape_rollouts


@pytest.fixture
def backbone_dir(tmp_path, tiny_lm):
    path = tmp_path / "backbone"
    tiny_lm.save_pretrained(path)
    return str(path)


def _perturb(qhead, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return qhead


def good_bad_dataset(n_prompts, n_responses, seed, words=8):
    """A learnable synthetic task: reward = fraction of the word ' good' in the response."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_prompts):
        responses, rewards = [], []
        for _ in range(n_responses):
            p_good = rng.random()
            ws = [" good" if rng.random() < p_good else " bad" for _ in range(words)]
            responses.append("".join(ws))
            rewards.append(sum(w == " good" for w in ws) / words)
        rows.append(
            {"prompt": f"Question {i}:", "responses": responses, "rewards": rewards, "threshold": sum(rewards) / len(rewards)}
        )
    return Dataset.from_list(rows)


def _args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        num_train_epochs=8,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        transform="srs",
        bound=1.0,
        alpha=5.0,
        beta=0.5,
        safeguards="none",
        seed=0,
        apply_chat_template=False,
    )
    defaults.update(kw)
    return QHeadTrainerConfig(**defaults)


# ------------------------------------------------------------------------------------------------ model


@pytest.mark.parametrize("head_type", ["value", "q"])
def test_save_load_round_trip(tmp_path, tiny_lm, backbone_dir, head_type):
    qhead = _perturb(
        QHeadModel.from_backbone(
            backbone_dir, head_type=head_type, head_hidden_size=16, rank=4, reward_model_name_or_path="my/rm"
        )
    )
    ids = torch.randint(0, 1000, (2, 6))
    expected = qhead(ids).value
    qhead.save_pretrained(tmp_path / "head")
    files = sorted(os.listdir(tmp_path / "head"))
    code = sorted(f"{stem}.py" for stem in ("configuration_qhead", "modeling_qhead", "qhead_card", "srs_io", "srs_modeling", "srs_presets"))
    assert files == sorted(["README.md", "config.json", "model.safetensors", *code])  # code: loads without the library
    from safetensors.torch import load_file

    keys = set(load_file(tmp_path / "head" / "model.safetensors"))
    assert keys and all(k.startswith("head.") for k in keys)  # the frozen backbone is not saved
    loaded = QHeadModel.from_pretrained(tmp_path / "head")  # backbone re-attached from its local path
    assert torch.equal(loaded(ids).value, expected)
    shared = QHeadModel.from_pretrained(tmp_path / "head", backbone=tiny_lm)
    assert shared.backbone is tiny_lm
    assert torch.equal(shared(ids).value, expected)


def test_from_pretrained_in_fresh_process(tmp_path, backbone_dir):
    qhead = _perturb(QHeadModel.from_backbone(backbone_dir, head_type="q", rank=4))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    expected = qhead(ids).value[0, -1, :5].tolist()
    qhead.save_pretrained(tmp_path / "head")
    code = (
        "import json, sys, torch; from hf_stackshape import QHeadModel; "
        f"m = QHeadModel.from_pretrained({str(tmp_path / 'head')!r}); "
        "print(json.dumps(m(torch.tensor([[5, 6, 7, 8, 9]])).value[0, -1, :5].tolist()))"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == pytest.approx(expected, abs=1e-6)


def test_lora_adapter_saved_and_restored(tmp_path, tiny_lm):
    from peft import LoraConfig, get_peft_model

    peft_lm = get_peft_model(tiny_lm, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    qhead = _perturb(QHeadModel.from_backbone(peft_lm, head_type="value", head_hidden_size=8))
    assert qhead.config.has_adapter and not qhead.is_frozen_backbone
    ids = torch.randint(0, 1000, (1, 5))
    expected = qhead(ids).value
    qhead.save_pretrained(tmp_path / "head")
    assert os.path.isfile(tmp_path / "head" / "adapter" / "adapter_config.json")
    torch.manual_seed(0)
    fresh_base = LlamaForCausalLM(tiny_lm.config).eval()
    fresh_base.load_state_dict(peft_lm.get_base_model().state_dict(), strict=False)  # base weights, no LoRA
    loaded = QHeadModel.from_pretrained(tmp_path / "head", backbone=fresh_base)
    assert torch.allclose(loaded(ids).value, expected, atol=1e-6)


def test_model_card_names_base_rm_transform(tmp_path, tiny_lm, tokenizer):
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="q", rank=4, backbone_name_or_path="org/backbone-lm")
    args = _args(
        tmp_path, transform="srs", bound=15.0, alpha=1.0, beta=0.667, safeguards="cd", num_train_epochs=1,
        reward_model_name_or_path="org/reward-model", base_model_name_or_path="org/base-lm",
    )
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(2, 2, 0), processing_class=tokenizer)
    trainer.save_model(str(tmp_path / "saved"))
    card = open(tmp_path / "saved" / "README.md").read()
    for needle in ("org/base-lm", "org/reward-model", "org/backbone-lm", "`srs`", "bound=`15.0`", "alpha=`1.0`",
                   "beta=`0.667`", "exponent_cap", "fudge"):
        assert needle in card, needle
    config = QHeadConfig.from_pretrained(tmp_path / "saved")
    assert config.shaping["name"] == "srs" and config.shaping["beta"] == pytest.approx(0.667)
    assert config.reward_model_name_or_path == "org/reward-model"


def test_load_errors(tmp_path, tiny_lm):
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="value", head_hidden_size=8)
    qhead.config.backbone_name_or_path = None
    qhead.save_pretrained(tmp_path / "nobackbone")
    with pytest.raises(ValueError, match="backbone"):
        QHeadModel.from_pretrained(tmp_path / "nobackbone")
    qhead.config.backbone_name_or_path = str(tmp_path / "does-not-exist")
    qhead.save_pretrained(tmp_path / "badbackbone")
    with pytest.raises(ValueError, match="does-not-exist"):
        QHeadModel.from_pretrained(tmp_path / "badbackbone")
    small = LlamaForCausalLM(tiny_llama_config(100))
    with pytest.raises(ValueError, match="hidden_size|vocab_size"):
        QHeadModel.from_pretrained(tmp_path / "nobackbone", backbone=LlamaForCausalLM(tiny_llama_config(100, seed_hidden=16)))
    q = QHeadModel.from_backbone(tiny_lm, head_type="q", rank=2)
    q.save_pretrained(tmp_path / "q")
    with pytest.raises(ValueError, match="vocab_size"):
        QHeadModel.from_pretrained(tmp_path / "q", backbone=small)


# ------------------------------------------------------------------------------------------------ data


def test_shaped_targets_use_stored_threshold_and_flat_schema():
    ds = Dataset.from_list(
        [
            {"prompt": "a", "responses": ["x", "y", "z"], "rewards": [0.0, 1.0, 2.0], "threshold": 1.5},
            {"prompt": "b", "responses": ["u", "v"], "rewards": [3.0, -1.0], "threshold": 0.0},
        ]
    )
    srs = get_transform("srs", bound=2.0, alpha=3.0, beta=1.0, safeguards="none")
    out = shape_rollouts(ds, srs)
    expected = [2.0 * torch.sigmoid(torch.tensor(3.0 * (u - m))).item() for u, m in
                [(0.0, 1.5), (1.0, 1.5), (2.0, 1.5), (3.0, 0.0), (-1.0, 0.0)]]
    assert out["target"] == pytest.approx(expected, rel=1e-6)
    assert out["response"] == ["x", "y", "z", "u", "v"]
    flat = Dataset.from_dict(
        {"prompt": out["prompt"], "response": out["response"], "reward": [0.0, 1.0, 2.0, 3.0, -1.0],
         "threshold": [1.5, 1.5, 1.5, 0.0, 0.0]}
    )
    assert shape_rollouts(flat, srs)["target"] == pytest.approx(expected, rel=1e-6)
    no_thr = ds.remove_columns("threshold")  # then m*(x) is solved over the rollouts
    assert shape_rollouts(no_thr, srs)["target"] != pytest.approx(expected, rel=1e-6)
    raw = shape_rollouts(ds, get_transform("raw"))["target"]
    assert raw == [0.0, 1.0, 2.0, 3.0, -1.0]


def test_missing_columns_are_named(tmp_path, tiny_lm, tokenizer):
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="value", head_hidden_size=8)
    bad = Dataset.from_dict({"prompt": ["a"], "responses": [["b"]]})
    with pytest.raises(ValueError, match=r"\['rewards'\].*\['response', 'reward'\]"):
        QHeadTrainer(qhead, _args(tmp_path), train_dataset=bad, processing_class=tokenizer)
    with pytest.raises(ValueError, match="loss_type"):
        _args(tmp_path, loss_type="mse")


def test_config_parses_with_hf_argument_parser(tmp_path):
    (args,) = HfArgumentParser(QHeadTrainerConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--transform", "hard", "--loss_type", "fudge+consistency", "--bound", "3",
         "--precompute_hidden_states", "false", "--report_to", "none"]
    )
    assert args.transform == "hard" and args.loss_type == "fudge+consistency" and args.bound == 3.0
    assert args.precompute_hidden_states is False and args.label_names == ["target"]


# ------------------------------------------------------------------------------------------------ training


def _train(tmp_path, backbone, tokenizer, head_type, **kw):
    torch.manual_seed(0)
    qhead = QHeadModel.from_backbone(backbone, head_type=head_type, head_hidden_size=32, rank=8)
    args = _args(tmp_path, eval_strategy="epoch", **kw)
    trainer = QHeadTrainer(
        qhead, args, train_dataset=good_bad_dataset(12, 6, seed=0), eval_dataset=good_bad_dataset(5, 6, seed=1),
        processing_class=tokenizer,
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return qhead, losses, evals, trainer


def _held_out_spearman(qhead, tokenizer, args):
    from scipy.stats import spearmanr

    records = shape_rollouts(good_bad_dataset(5, 6, seed=2), args.shaping_transform())
    preds = []
    with torch.no_grad():
        for prompt, response in zip(records["prompt"], records["response"]):
            ids = tokenizer(prompt + response, add_special_tokens=False, return_tensors="pt")["input_ids"]
            values = qhead(ids).value[0]
            preds.append(float(values[-1]) if qhead.config.head_type == "value" else float(values[-2, ids[0, -1]]))
    return spearmanr(preds, records["target"]).correlation


# A vocabulary-wide q head learns each token row from the rollouts that take that token, so on 12 prompts it ranks
# held-out rollouts less well than the value head (measured: 0.42, 0.53, 0.58 for init seeds 0, 1, 2).
@pytest.mark.parametrize(
    "head_type,loss_type,min_rho",
    [("value", "fudge+consistency", 0.6), ("q", "fudge", 0.3), ("value", "consistency", 0.6)],
)
def test_training_lowers_loss_and_ranks_held_out_rollouts(tmp_path, tiny_lm, tokenizer, head_type, loss_type, min_rho):
    qhead, losses, evals, trainer = _train(tmp_path, tiny_lm, tokenizer, head_type, loss_type=loss_type)
    assert losses[-1] < 0.5 * losses[0]
    assert evals[-1] < evals[0]
    rho = _held_out_spearman(qhead.eval(), tokenizer, trainer.args)
    assert rho > min_rho, rho
    # The trainer's own diagnostics agree with the computation above.
    metrics = trainer.evaluate(good_bad_dataset(5, 6, seed=2), metric_key_prefix="test")
    assert metrics["test_spearman_last"] == pytest.approx(rho, abs=1e-6)
    assert set(qhead.config.training_metrics) == {"test_mse", "test_mse_mid", "test_spearman_last", "test_spearman_mid"}


def test_precomputed_hidden_states_give_the_same_training(tmp_path, tiny_lm, tokenizer):
    _, with_cache, _, _ = _train(tmp_path, tiny_lm, tokenizer, "value", num_train_epochs=2, precompute_hidden_states=True)
    _, without, _, _ = _train(tmp_path, tiny_lm, tokenizer, "value", num_train_epochs=2, precompute_hidden_states=False)
    assert with_cache == pytest.approx(without, rel=1e-4)


def test_lora_backbone_trains(tmp_path, tiny_lm, tokenizer):
    from peft import LoraConfig, get_peft_model

    peft_lm = get_peft_model(tiny_lm, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in peft_lm.named_parameters() if "lora_B" in n}
    qhead = QHeadModel.from_backbone(peft_lm, head_type="value", head_hidden_size=8)
    args = _args(tmp_path, num_train_epochs=1, precompute_hidden_states=True)  # ignored: the backbone trains
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(4, 4, 0), processing_class=tokenizer)
    assert "hidden_index" not in trainer.train_dataset.column_names
    trainer.train()
    after = dict(peft_lm.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    trainer.save_model(str(tmp_path / "lora"))
    assert os.path.isfile(tmp_path / "lora" / "adapter" / "adapter_model.safetensors")


def test_train_qhead_cli(tmp_path, tiny_lm, tokenizer, capsys):
    from hf_stackshape.cli import main

    tiny_lm.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    good_bad_dataset(4, 3, seed=0).save_to_disk(str(tmp_path / "calib" / "dataset"))
    (tmp_path / "calib" / "calibration_config.json").write_text(json.dumps({"use_chat_template": False, "bound": 1.0}))
    argv = ["train-qhead", "--calibration_dir", str(tmp_path / "calib"), "--backbone", str(tmp_path / "backbone"),
            "--head_type", "q", "--rank", "4", "--output_dir", str(tmp_path / "head"), "--num_train_epochs", "1",
            "--bound", "1.0", "--report_to", "none", "--save_strategy", "no", "--validation_split", "0.25",
            "--disable_tqdm", "true"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "saved the q head" in out and "validation MSE" in out
    loaded = QHeadModel.from_pretrained(tmp_path / "head")
    assert loaded.config.head_type == "q" and loaded.config.shaping["bound"] == 1.0
    assert main(["train-qhead", "--calibration_dir", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "x")]) == 2


# ------------------------------------------------------------------------------------------------ paper preset


def test_paper_objective_by_hand(tmp_path, tiny_lm, tokenizer):
    """The paper's loss (authors' train_value_function.py): MSE(V_last, r) over the batch + 1.0 x the MSE of
    consecutive response-prefix values pooled over every valid pair of the batch."""
    args = QHeadTrainerConfig.from_preset("paper", output_dir=str(tmp_path / "out"), report_to="none", apply_chat_template=False)
    assert (args.loss_type, args.consistency_weight, args.learning_rate, args.weight_decay) == ("consistency", 1.0, 1e-4, 0.0)
    assert (args.per_device_train_batch_size, args.num_train_epochs, args.max_grad_norm) == (64, 15, 1.0)
    assert args.early_stopping_patience == 5 and args.load_best_model_at_end and args.metric_for_best_model == "mse"
    qhead = QHeadModel.from_backbone(tiny_lm, preset="paper", head_hidden_size=8)
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(4, 2, 0), processing_class=tokenizer)

    # Row 0: prompt = position 0, response = positions 1..3; row 1: response = positions 1..2 (position 3 is padding).
    values = torch.tensor([[9.0, 0.5, 1.0, 2.0], [-7.0, 1.0, 3.0, 100.0]])
    inputs = {
        "input_ids": torch.zeros(2, 4, dtype=torch.long),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "response_start": torch.tensor([1, 1]),
        "target": torch.tensor([1.5, 2.0]),
    }
    fake = lambda **kw: QHeadOutput(value=values)  # noqa: E731 - the values by hand, whatever the head
    final = ((2.0 - 1.5) ** 2 + (3.0 - 2.0) ** 2) / 2  # last response token of each row
    pairs = ((1.0 - 0.5) ** 2 + (2.0 - 1.0) ** 2 + (3.0 - 1.0) ** 2) / 3  # 3 valid pairs in the batch
    assert trainer.compute_loss(fake, inputs).item() == pytest.approx(final + 1.0 * pairs)  # 0.625 + 1.75
    assert final + pairs == pytest.approx(2.375)


def test_paper_head_is_orthogonal_and_seeded(tiny_lm):
    torch.manual_seed(123)
    a = QHeadModel.from_backbone(tiny_lm, preset="paper", head_hidden_size=64)
    torch.manual_seed(456)  # the global RNG does not matter: a local generator seeded with `seed` (default 0)
    torch.rand(10)
    b = QHeadModel.from_backbone(tiny_lm, preset="paper", head_hidden_size=64)
    state = torch.random.get_rng_state()
    c = QHeadModel.from_backbone(tiny_lm, preset="paper", head_hidden_size=64, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # building a head leaves the global RNG alone
    sa, sb, sc = a.head.state_dict(), b.head.state_dict(), c.head.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["dense_in.weight"], sc["dense_in.weight"])
    assert a.config.head_hidden_size == 64 and a.config.init == "orthogonal" and a.config.head_type == "value"
    w = sa["dense_in.weight"]  # (64, 32): orthonormal columns, gain 1
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-5)
    assert torch.count_nonzero(sa["dense_in.bias"]) == 0
    assert QHeadConfig.from_preset("paper", hidden_size=4).head_hidden_size == 8192
    with pytest.raises(ValueError, match="init"):
        QHeadConfig(hidden_size=4, init="xavier")


def test_validation_split_by_prompt_and_early_stopping(tmp_path, tiny_lm, tokenizer):
    from hf_stackshape.qhead.trainer import split_by_prompt

    prompts = [f"p{i // 3}" for i in range(30)]  # 10 prompts x 3 rollouts
    train, val = split_by_prompt(prompts, 0.2, seed=0)
    assert split_by_prompt(prompts, 0.2, seed=0) == (train, val) and split_by_prompt(prompts, 0.2, seed=1) != (train, val)
    assert len({prompts[i] for i in val}) == 2 and not {prompts[i] for i in val} & {prompts[i] for i in train}
    assert sorted(train + val) == list(range(30))
    assert split_by_prompt(["a", "a"], 0.5, seed=0) == ([0, 1], [])

    qhead = QHeadModel.from_backbone(tiny_lm, head_hidden_size=8)
    # lr 0: the validation MSE never improves, so patience 1 stops after the second evaluation of 6 epochs.
    args = _args(tmp_path, learning_rate=0.0, num_train_epochs=6, validation_split=0.25, early_stopping_patience=1)
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(8, 3, 0), processing_class=tokenizer)
    assert len(trainer.eval_dataset) == 6 and len(trainer.train_dataset) == 18
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_mse" in h]
    assert len(evals) == 2 and trainer.state.epoch == pytest.approx(2.0)
    assert {"eval_mse_mid", "eval_spearman_last", "eval_spearman_mid"} <= set(evals[-1])
    with pytest.raises(ValueError, match="validation set"):
        QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8),
                     _args(tmp_path, validation_split=0.5, early_stopping_patience=1),
                     train_dataset=good_bad_dataset(1, 3, 0), processing_class=tokenizer)


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    from hf_stackshape.qhead.trainer import spearman

    rng = random.Random(0)
    x = [rng.choice([0.0, 1.0, 2.0, 3.0]) for _ in range(40)]  # many ties
    y = [v + rng.random() for v in x]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).correlation, abs=1e-12)
    assert spearman([1.0, 1.0], [1.0, 2.0]) != spearman([1.0, 1.0], [1.0, 2.0])  # nan: a constant side


def test_peft_config_and_tags(tmp_path, tiny_lm, tokenizer):
    from peft import LoraConfig

    qhead = QHeadModel.from_backbone(tiny_lm, head_hidden_size=8)
    trainer = QHeadTrainer(qhead, _args(tmp_path, num_train_epochs=1), train_dataset=good_bad_dataset(4, 2, 0),
                           processing_class=tokenizer, peft_config=LoraConfig(r=2, target_modules=["q_proj"]))
    assert qhead.config.has_adapter and hasattr(qhead.backbone, "peft_config") and not qhead.is_frozen_backbone
    assert "stackelberg-reward-shaping" in qhead.model_tags
    trainer.create_model_card(model_name="my-head", dataset_name="org/rollouts", tags=["extra"])
    card = open(tmp_path / "out" / "README.md").read()
    assert "# my-head" in card and "- org/rollouts" in card and "- extra" in card and "LoRA adapter" in card
    with pytest.raises(ValueError, match="PeftConfig"):
        QHeadTrainer(QHeadModel.from_backbone(tiny_lm, head_hidden_size=8), _args(tmp_path),
                     train_dataset=good_bad_dataset(4, 2, 0), processing_class=tokenizer, peft_config={"r": 2})


def test_train_qhead_refuses_other_settings_and_names_bad_lines(tmp_path, tiny_lm, tokenizer):
    from hf_stackshape.cli import main
    from hf_stackshape.commands.train_qhead import TrainQHeadArguments, load_rollouts, run
    from hf_stackshape.utils.runs import RunMismatchError

    tiny_lm.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    data = tmp_path / "rollouts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in good_bad_dataset(4, 2, seed=0).to_list()))

    def train(overwrite=False, **kw):
        settings = dict(output_dir=str(tmp_path / "head"), num_train_epochs=1, save_strategy="no", report_to="none",
                        disable_tqdm=True, validation_split=0.0)
        settings.update(kw)
        args = TrainQHeadArguments(calibration_dir=str(data), backbone=str(tmp_path / "backbone"), head_hidden_size=8,
                                   lora_r=2, lora_target_modules=["q_proj"], overwrite=overwrite)
        return run(args, QHeadTrainerConfig(**settings))

    assert train() == 0
    assert os.path.isfile(tmp_path / "head" / "run.json")
    assert os.path.isfile(tmp_path / "head" / "adapter" / "adapter_config.json")
    assert train() == 0  # same settings: resumes (nothing left to do)
    with pytest.raises(RunMismatchError, match="training.learning_rate"):
        train(learning_rate=5e-4)
    data.write_text(data.read_text().replace("Question 0", "Question zero"))
    with pytest.raises(RunMismatchError, match="calibration_data"):
        train()
    assert train(overwrite=True) == 0

    data.write_text('{"prompt": "a", "responses": ["b"], "rewards": [1.0]}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"rollouts.jsonl: line 3 is a JSON list"):
        load_rollouts(str(data))
    data.write_text('{"prompt": "a", "responses": ["b"], "rewards": [1.0]}\n{"prompt": \n')
    assert main(["train-qhead", "--calibration_dir", str(data), "--output_dir", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match=r"rollouts.jsonl: line 2 is not valid JSON"):
        load_rollouts(str(data))


def test_checkpoint_restores_head_and_adapter(tmp_path, tiny_lm, tokenizer):
    from peft import LoraConfig, get_peft_model

    config = tiny_lm.config
    peft_lm = get_peft_model(tiny_lm, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    qhead = QHeadModel.from_backbone(peft_lm, head_hidden_size=8)
    args = _args(tmp_path, num_train_epochs=1, save_strategy="epoch", validation_split=0.0)
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(4, 2, 0), processing_class=tokenizer)
    trainer.train()
    ckpt = os.path.join(args.output_dir, f"checkpoint-{trainer.state.global_step}")
    assert os.path.isfile(os.path.join(ckpt, "adapter", "adapter_model.safetensors"))
    trained = {n: p.detach().clone() for n, p in qhead.named_parameters() if "lora_" in n or n.startswith("head.")}

    torch.manual_seed(5)
    fresh_lm = LlamaForCausalLM(config).eval()
    fresh_lm.load_state_dict(peft_lm.get_base_model().state_dict(), strict=False)
    fresh = QHeadModel.from_backbone(
        get_peft_model(fresh_lm, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)),
        head_hidden_size=8, seed=7,
    )
    other = QHeadTrainer(fresh, args, train_dataset=good_bad_dataset(4, 2, 0), processing_class=tokenizer)
    before = dict(fresh.named_parameters())
    assert any(not torch.equal(before[n], trained[n]) for n in trained if "lora_" in n)
    other._load_from_checkpoint(ckpt)
    after = dict(fresh.named_parameters())
    assert all(torch.equal(after[n], trained[n]) for n in trained)


def test_train_qhead_cli_paper_preset(tmp_path, tiny_lm, tokenizer, capsys):
    from hf_stackshape.cli import main

    tiny_lm.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    good_bad_dataset(6, 2, seed=0).save_to_disk(str(tmp_path / "calib" / "dataset"))
    (tmp_path / "calib" / "calibration_config.json").write_text(json.dumps({"use_chat_template": False}))
    argv = ["train-qhead", "--preset", "paper", "--calibration_dir", str(tmp_path / "calib"), "--backbone",
            str(tmp_path / "backbone"), "--head_hidden_size", "16", "--output_dir", str(tmp_path / "head"),
            "--num_train_epochs", "2", "--report_to", "none", "--disable_tqdm", "true"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "validation MSE" in capsys.readouterr().out
    head = QHeadModel.from_pretrained(tmp_path / "head")
    assert (head.config.init, head.config.head_hidden_size) == ("orthogonal", 16)
    assert head.config.training_settings["loss_type"] == "consistency"
    assert set(head.config.training_metrics) == {"eval_mse", "eval_mse_mid", "eval_spearman_last", "eval_spearman_mid"}
    manifest = json.loads((tmp_path / "head" / "run.json").read_text())
    assert manifest["fingerprint"]["training"]["apply_chat_template"] is False  # followed the calibration
    assert manifest["fingerprint"]["training"]["early_stopping_patience"] == 5
    card = (tmp_path / "head" / "README.md").read_text()
    assert "eval_spearman_last" in card and "train_value_function.py" in card
