"""``custom_generate`` exports and self-contained Q-heads: loaded in a process where ``import hf_stackshape`` is
impossible, they must give the library's tokens / values exactly."""

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import LogitsProcessorList

from hf_stackshape import ARGSLogitsProcessor, CDLogitsProcessor, HFRewardModel, QHeadModel, StackelbergBestOfN
from hf_stackshape.pipeline.generation import format_prompts
from hf_stackshape.utils.portable import ALLOWED_PACKAGES, GENERATE_METHODS, export_generate, imports_of

PROMPTS = ["How do I bake bread?", "Tell me a joke"]
NEW_TOKENS = 6

# Run in a fresh interpreter: hf_stackshape cannot be imported there (a meta-path finder refuses it).
_BLOCKED = textwrap.dedent(
    """
    import json, sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "hf_stackshape" or name.startswith("hf_stackshape."):
                raise ImportError("hf_stackshape is blocked in this test process")
    sys.meta_path.insert(0, _Block())
    try:
        import hf_stackshape  # noqa: F401
        raise SystemExit("hf_stackshape was importable")
    except ImportError:
        pass
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(1)
    paths = json.loads(sys.argv[1])
    result = {}
    """
)


def _run_blocked(body: str, paths: dict, tmp_path) -> dict:
    script = tmp_path / "blocked.py"
    script.write_text(_BLOCKED + textwrap.dedent(body) + "\nprint('RESULT' + json.dumps(result))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(paths)], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.rsplit("RESULT", 1)[1])


def _encode(tokenizer, prompts=PROMPTS):
    texts = format_prompts(tokenizer, prompts)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side


@pytest.mark.parametrize("method", sorted(GENERATE_METHODS))
def test_export_is_flat_and_imports_only_torch_transformers_and_stdlib(method, tmp_path):
    out = export_generate(method, tmp_path / method, qhead="me/head" if method == "srs-cd" else None)
    folder = out / "custom_generate"
    assert (folder / "requirements.txt").read_text().split() == ["torch>=2.4", "transformers>=5.24"]
    readme = (out / "README.md").read_text()
    assert "custom_generate" in readme.split("---")[1]  # the Hub card's tags
    for name, imported in imports_of(folder).items():
        extra = [m for m in imported if m not in sys.stdlib_module_names and m not in ALLOWED_PACKAGES and m != "__future__"]
        assert not extra, f"{name} imports {extra}"
        for node in ast.walk(ast.parse((folder / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (folder / f"{node.module}.py").exists(), (name, node.module)
    # every argument of generate() is documented in the card
    tree = ast.parse((folder / "generate.py").read_text())
    gen = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate")
    for arg in gen.args.kwonlyargs:
        assert f"`{arg.arg}`" in readme, arg.arg
    if method == "srs-cd":
        assert "DEFAULT_QHEAD = 'me/head'" in (folder / "generate.py").read_text()


def test_export_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="srs-args"):
        export_generate("srs-argz", tmp_path / "x")
    with pytest.raises(ValueError, match="qhead"):
        export_generate("srs-args", tmp_path / "y", qhead="me/head")
    export_generate("srs-bon", tmp_path / "z")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_generate("srs-bon", tmp_path / "z")


def test_cli_export_generate(tmp_path, capsys):
    from hf_stackshape.cli import main

    assert main(["export-generate", "--method", "srs-cd", "--output_dir", str(tmp_path / "cd"), "--qhead", "a/b"]) == 0
    assert (tmp_path / "cd" / "custom_generate" / "srs_cd.py").exists()
    assert "trust_remote_code=True" in capsys.readouterr().out


@pytest.mark.slow
def test_exports_and_head_run_without_the_library_and_match_it(tmp_path, tokenizer, tiny_lm, reward, one_thread):
    """The three exports and a saved Q-head, loaded where hf_stackshape cannot be imported: same tokens/values."""
    model_dir, rm_dir, head_dir = tmp_path / "model", tmp_path / "rm", tmp_path / "head"
    tiny_lm.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    reward.model.save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    exports = {m: str(export_generate(m, tmp_path / m)) for m in GENERATE_METHODS}
    enc = _encode(tokenizer)

    # --- the library path
    rm = HFRewardModel.from_pretrained(str(rm_dir))
    with ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=5, weight=2.0, prompts=PROMPTS, attention_mask=enc["attention_mask"]) as args:
        plain = tiny_lm.generate(**enc, max_new_tokens=NEW_TOKENS, do_sample=False)
        lib_args = tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([args]), max_new_tokens=NEW_TOKENS, do_sample=False)
    assert not torch.equal(plain, lib_args)  # the guidance changes tokens, so equality below means something

    head = QHeadModel.from_backbone(tiny_lm, head_type="q", backbone_name_or_path=str(model_dir), seed=3)
    with torch.no_grad():
        head.head.up.weight.mul_(400.0)
    head.save_pretrained(head_dir)
    config = json.loads((head_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_qhead.QHeadConfig", "AutoModel": "modeling_qhead.QHeadModel"}
    assert (head_dir / "modeling_qhead.py").exists() and (head_dir / "configuration_qhead.py").exists()
    lib_head = QHeadModel.from_pretrained(head_dir, backbone=tiny_lm)
    with CDLogitsProcessor(lib_head, k=5, weight=1.5, temperature=0.7, base_model=tiny_lm, tokenizer=tokenizer) as cd:
        lib_cd = tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([cd]), max_new_tokens=NEW_TOKENS, do_sample=False)
    assert not torch.equal(plain, lib_cd)
    with torch.no_grad():
        lib_values = lib_head(**enc).value[:, -1, :8]

    bon = StackelbergBestOfN(tiny_lm, tokenizer, rm, n=4, beta=0.5, max_new_tokens=NEW_TOKENS, batch_size=len(PROMPTS), seed=5, show_progress=False)
    lib_bon = bon.generate(PROMPTS).responses

    paths = {"model": str(model_dir), "rm": str(rm_dir), "head": str(head_dir), **exports,
             "ids": enc["input_ids"].tolist(), "mask": enc["attention_mask"].tolist(), "prompts": PROMPTS, "new": NEW_TOKENS}
    result = _run_blocked(
        """
        model = AutoModelForCausalLM.from_pretrained(paths["model"]).eval()
        tok = AutoTokenizer.from_pretrained(paths["model"])
        enc = {"input_ids": torch.tensor(paths["ids"]), "attention_mask": torch.tensor(paths["mask"])}
        common = dict(max_new_tokens=paths["new"], do_sample=False, tokenizer=tok)
        try:
            model.generate(**enc, custom_generate=paths["srs-args"], reward_model=paths["rm"], **common)
            result["refused"] = False
        except ValueError as err:
            result["refused"] = "trust_remote_code" in str(err)
        out = model.generate(**enc, custom_generate=paths["srs-args"], trust_remote_code=True, reward_model=paths["rm"],
                             k=5, weight=2.0, prompts=paths["prompts"], **common)
        result["args"] = out.tolist()
        out = model.generate(**enc, custom_generate=paths["srs-cd"], trust_remote_code=True, qhead=paths["head"],
                             k=5, weight=1.5, guidance_temperature=0.7, **common)
        result["cd"] = out.tolist()
        out = model.generate(**enc, custom_generate=paths["srs-bon"], trust_remote_code=True, reward_model=paths["rm"],
                             n=4, weight=2.0, seed=5, prompts=paths["prompts"], max_new_tokens=paths["new"], tokenizer=tok)
        new = out[:, enc["input_ids"].shape[1]:]
        result["bon"] = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        head = AutoModel.from_pretrained(paths["head"], trust_remote_code=True)
        result["head_class"] = type(head).__module__
        with torch.no_grad():
            result["values"] = head(**enc).value[:, -1, :8].tolist()
        head.save_pretrained(paths["head"] + "-resaved")
        """,
        paths,
        tmp_path,
    )
    assert result["refused"] is True
    assert result["args"] == lib_args.tolist()
    assert result["cd"] == lib_cd.tolist()
    assert result["bon"] == lib_bon
    assert "hf_stackshape" not in result["head_class"] and "transformers_modules" in result["head_class"]
    torch.testing.assert_close(torch.tensor(result["values"]), lib_values.float(), rtol=0, atol=1e-5)
    # the head re-saved by its self-contained class still loads through the library
    again = QHeadModel.from_pretrained(str(head_dir) + "-resaved", backbone=tiny_lm)
    with torch.no_grad():
        torch.testing.assert_close(again(**enc).value[:, -1, :8], lib_values, rtol=0, atol=0)
