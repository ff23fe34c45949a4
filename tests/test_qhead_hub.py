"""Q-heads on the Hub: push_to_hub and save_pretrained(push_to_hub=True) upload the head, its LoRA adapter and our
card; the uploaded files load back through the Hub code path (cache + Hub arguments), AutoConfig and AutoModel.

Only huggingface_hub's network calls are replaced (``HfApi.create_repo``, ``create_commit``,
and ``upload_folder`` for ``Trainer.push_to_hub``): what would be
uploaded is captured in a folder, then laid out as a Hub cache snapshot and loaded back offline."""

import os
import shutil
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from transformers import AutoConfig, AutoModel, LlamaForCausalLM

from hf_stackshape import QHeadModel
from hf_stackshape.qhead import QHeadConfig

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub: uploads land in ``tmp_path/hub/<repo_id>``; ``hub.as_cache(repo_id)`` lays them out as a
    huggingface_hub cache (``models--org--name/snapshots/<commit>``) and returns the ``cache_dir``."""
    uploads = tmp_path / "hub"
    calls = []

    def create_repo(self, repo_id, *args, **kwargs):
        calls.append(("create_repo", repo_id))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *args, **kwargs):
        calls.append(("create_commit", repo_id))
        for op in operations:
            target = uploads / repo_id / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(op.path_or_fileobj, target)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}", oid=COMMIT)

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=None, **kwargs):  # Trainer.push_to_hub's call
        from huggingface_hub.utils import filter_repo_objects

        calls.append(("upload_folder", repo_id))
        root = os.path.abspath(folder_path)
        names = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs]
        for name in filter_repo_objects(names, ignore_patterns=ignore_patterns):
            target = uploads / repo_id / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(os.path.join(root, name), target)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}", oid=COMMIT)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)

    def as_cache(repo_id, subfolder=""):
        cache = tmp_path / "cache"
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        shutil.copytree(uploads / repo_id, repo / "snapshots" / COMMIT / subfolder, dirs_exist_ok=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        return str(cache)

    def files(repo_id):
        root = uploads / repo_id
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return SimpleNamespace(as_cache=as_cache, files=files, calls=calls)


def _perturbed(qhead):
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return qhead


def _head(kind, tiny_lm, tmp_path):
    """A plain value head on a frozen backbone saved in a local folder, or a value head with a LoRA adapter."""
    backbone_dir = tmp_path / "backbone"
    tiny_lm.save_pretrained(backbone_dir)
    if kind == "plain":
        return _perturbed(QHeadModel.from_backbone(str(backbone_dir), head_hidden_size=8, base_model_name_or_path=str(backbone_dir)))
    from peft import LoraConfig, get_peft_model

    peft_lm = get_peft_model(tiny_lm, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    return _perturbed(
        QHeadModel.from_backbone(peft_lm, head_hidden_size=8, base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    )


def _push(qhead, how, repo_id, tmp_path):
    if how == "push_to_hub":
        qhead.push_to_hub(repo_id)
    else:
        qhead.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id=repo_id)


@pytest.mark.parametrize("how", ["push_to_hub", "save_pretrained"])
@pytest.mark.parametrize("kind", ["plain", "lora"])
def test_upload_and_load_back(tmp_path, tiny_lm, hub, kind, how):
    ids = torch.randint(0, 1000, (2, 6))
    if kind == "lora":
        base_weights = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    qhead = _head(kind, tiny_lm, tmp_path)
    expected = qhead(ids).value
    _push(qhead, how, "me/head", tmp_path)
    files = hub.files("me/head")
    want = {"README.md", "config.json", "model.safetensors"}
    if kind == "lora":
        want |= {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    assert want <= set(files), files
    assert ("create_repo", "me/head") in hub.calls and ("create_commit", "me/head") in hub.calls

    cache_dir = hub.as_cache("me/head")
    if kind == "plain":  # the backbone is re-attached from backbone_name_or_path
        loaded = QHeadModel.from_pretrained("me/head", cache_dir=cache_dir, revision="main", token=False)
    else:  # a fresh base model without LoRA: the adapter comes from the Hub files through peft
        base = LlamaForCausalLM(tiny_lm.config).eval()
        base.load_state_dict(base_weights)
        loaded = QHeadModel.from_pretrained("me/head", backbone=base, cache_dir=cache_dir, revision=COMMIT)
        assert hasattr(loaded.backbone, "peft_config")
    assert torch.allclose(loaded(ids).value, expected, atol=1e-6)


def test_subfolder_and_auto_classes(tmp_path, tiny_lm, hub):
    base_weights = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    qhead = _head("lora", tiny_lm, tmp_path)
    ids = torch.randint(0, 1000, (1, 5))
    expected = qhead(ids).value
    qhead.push_to_hub("me/heads")
    cache_dir = hub.as_cache("me/heads", subfolder="srs")
    config = AutoConfig.from_pretrained("me/heads", subfolder="srs", cache_dir=cache_dir)
    assert isinstance(config, QHeadConfig) and config.has_adapter
    base = LlamaForCausalLM(tiny_lm.config).eval()
    base.load_state_dict(base_weights)
    loaded = QHeadModel.from_pretrained("me/heads", subfolder="srs", backbone=base, cache_dir=cache_dir)
    assert torch.allclose(loaded(ids).value, expected, atol=1e-6)


def test_auto_model_reads_a_saved_head(tmp_path, tiny_lm):
    qhead = _head("plain", tiny_lm, tmp_path)
    qhead.save_pretrained(tmp_path / "head")
    assert type(AutoConfig.from_pretrained(tmp_path / "head")).__name__ == "QHeadConfig"
    model = AutoModel.from_pretrained(tmp_path / "head")
    ids = torch.randint(0, 1000, (1, 4))
    assert isinstance(model, QHeadModel) and torch.equal(model(ids).value, qhead(ids).value)
    with pytest.raises(ValueError, match=r"\['device_map'\].*backbone_kwargs"):
        QHeadModel.from_pretrained(tmp_path / "head", device_map="auto")


def test_uploaded_card_is_ours_and_names_the_hub_id(tmp_path, tiny_lm, hub):
    qhead = _head("plain", tiny_lm, tmp_path)
    qhead.config.reward_model_name_or_path = "org/reward-model"
    qhead.config.training_metrics = {"eval_mse": 0.25, "eval_spearman_last": 0.5}
    qhead.push_to_hub("me/srs-head", tags=["my-tag"])
    card = huggingface_hub.ModelCard.load(str(tmp_path / "hub" / "me" / "srs-head" / "README.md"))
    assert card.data.library_name == "hf_stackshape"
    assert "my-tag" in card.data.tags and "stackelberg-reward-shaping" in card.data.tags
    assert card.data.base_model is None  # a local folder is not a Hub id: left out of the metadata
    assert card.data.stackshape["training_metrics"]["eval_mse"] == 0.25
    assert 'QHeadModel.from_pretrained("me/srs-head"' in card.text
    assert "org/reward-model" in card.text and "0.2500" in card.text
    assert str(tmp_path) not in card.content and "automatically generated" not in card.content
    lora = _head("lora", tiny_lm, tmp_path / "l")
    lora.push_to_hub("me/lora-head")
    lora_card = huggingface_hub.ModelCard.load(str(tmp_path / "hub" / "me" / "lora-head" / "README.md"))
    assert lora_card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 'from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in lora_card.text


def test_trainer_push_to_hub_uploads_head_adapter_and_card(tmp_path, tiny_lm, tokenizer, hub):
    from peft import LoraConfig
    from test_qhead import good_bad_dataset

    from hf_stackshape import QHeadTrainer, QHeadTrainerConfig

    base_weights = {k: v.clone() for k, v in tiny_lm.state_dict().items()}
    qhead = QHeadModel.from_backbone(tiny_lm, head_hidden_size=8, base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    args = QHeadTrainerConfig(
        output_dir=str(tmp_path / "out"), hub_model_id="me/trained-head", num_train_epochs=1, save_strategy="no",
        report_to="none", disable_tqdm=True, apply_chat_template=False, validation_split=0.25, bound=1.0,
    )
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(4, 2, 0), processing_class=tokenizer,
                           peft_config=LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub(dataset_name="org/rollouts")
    files = set(hub.files("me/trained-head"))
    assert {"README.md", "config.json", "model.safetensors", "adapter/adapter_model.safetensors"} <= files, files
    card = huggingface_hub.ModelCard.load(str(tmp_path / "hub" / "me" / "trained-head" / "README.md"))
    assert 'QHeadModel.from_pretrained("me/trained-head"' in card.text and card.data.datasets == ["org/rollouts"]
    assert "eval_mse" in card.data.stackshape["training_metrics"] and card.data.library_name == "hf_stackshape"
    ids = torch.randint(0, 1000, (1, 5))
    expected = qhead(ids).value
    base = LlamaForCausalLM(tiny_lm.config).eval()
    base.load_state_dict(base_weights)  # the base weights, without the trained LoRA
    loaded = QHeadModel.from_pretrained("me/trained-head", backbone=base, cache_dir=hub.as_cache("me/trained-head"))
    assert torch.allclose(loaded(ids).value, expected, atol=1e-6)
