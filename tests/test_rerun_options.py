"""Reruns never mix settings (issue 20): every option of every resumable command (generate, calibrate, sweep,
train-qhead) is either pinned by the run manifest (a rerun that changes it is refused, naming it) or shown not
to change the output (the rerun gives what an uninterrupted run gives).

The option tables below are checked against the commands' dataclasses, so an option added later fails
``test_every_option_is_in_the_table`` until it is classified here. Runs use tiny random models saved to disk,
so each case takes seconds; the sweep and train-qhead reruns are marked slow.
"""

import json
import math
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from conftest import tiny_llama_config

PROMPTS = ["Say something nice.", "What is the capital of France? Answer briefly please.", "Hi", "Tell me a joke."]
OTHER_PROMPTS = ["Name a colour.", "Count to three.", "Why is the sky blue?", "Hello there."]


def _main(*args):
    from hf_stackshape.cli import main

    return main([str(a) for a in args])


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _write_jsonl(path, rows):
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------- assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tokenizer):
    """Tiny base models, reward models, prompt sources, a Q-head and a calibration, saved to disk once."""
    from datasets import Dataset, DatasetDict
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from hf_stackshape.qhead import QHeadModel
    from hf_stackshape.rewards import load_reward

    root = tmp_path_factory.mktemp("assets")
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(tiny_llama_config(len(tokenizer), **ids)).eval()
    lm.generation_config.pad_token_id = tokenizer.pad_token_id
    lm.generation_config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(1)
    rm = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1, **ids)).eval()
    with torch.no_grad():
        rm.score.weight.mul_(300.0)
    a = type("Assets", (), {})()
    a.root = root
    for name, model in (("lm", lm), ("rm", rm)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        with torch.no_grad():  # a second copy that differs in one weight
            next(model.parameters()).view(-1)[0].add_(0.5)
        model.save_pretrained(root / f"{name}2")
        tokenizer.save_pretrained(root / f"{name}2")
        with torch.no_grad():
            next(model.parameters()).view(-1)[0].sub_(0.5)
    a.lm, a.lm2, a.rm, a.rm2 = root / "lm", root / "lm2", root / "rm", root / "rm2"
    a.prompts, a.other_prompts, a.two_columns = root / "prompts.jsonl", root / "other.jsonl", root / "two.jsonl"
    _write_jsonl(a.prompts, [{"prompt": p} for p in PROMPTS])
    _write_jsonl(a.other_prompts, [{"prompt": p} for p in OTHER_PROMPTS])
    _write_jsonl(a.two_columns, [{"prompt": p, "question": q} for p, q in zip(PROMPTS, OTHER_PROMPTS)])
    a.dataset, a.dataset2 = root / "ds", root / "ds2"
    DatasetDict(test=Dataset.from_dict({"prompt": PROMPTS, "question": OTHER_PROMPTS}),
                train=Dataset.from_dict({"prompt": OTHER_PROMPTS, "question": PROMPTS})).save_to_disk(str(a.dataset))
    DatasetDict(test=Dataset.from_dict({"prompt": OTHER_PROMPTS, "question": PROMPTS}),
                train=Dataset.from_dict({"prompt": PROMPTS, "question": OTHER_PROMPTS})).save_to_disk(str(a.dataset2))
    a.qhead = root / "qhead"
    QHeadModel.from_backbone(lm, head_type="value", head_hidden_size=8, backbone_name_or_path=str(a.lm)).save_pretrained(a.qhead)
    # A calibration made with the tiny RM: per-prompt thresholds and the record of the reward.
    a.cal = root / "cal"
    Dataset.from_dict({"prompt": PROMPTS, "threshold": [0.1, -0.2, 0.3, 0.0]}).save_to_disk(str(a.cal / "dataset"))
    try:
        from hf_stackshape.calibration.thresholds import reward_record
    except ImportError:  # code before issue 20 (to check that these tests fail there): no record
        record = None
    else:
        record = reward_record(load_reward(str(a.rm), device="cpu"))
    (a.cal / "calibration_config.json").write_text(json.dumps({"beta": 0.667, "reward": record}))
    return a


# ---------------------------------------------------------------------------------------------- generate

GEN_COMMON = ["--k", "3", "--max_new_tokens", "3", "--batch_size", "2"]


def _gen_base(a, kind):
    """The base command of each kind of generate run (all but the output file)."""
    common = ["generate", "--model", a.lm, "--reward_model", a.rm, *GEN_COMMON]
    return {
        "args": [*common, "--prompts", a.prompts, "--method", "srs-args"],
        "sample": [*common, "--prompts", a.prompts, "--method", "srs-args", "--do_sample", "--temperature", "0.8"],
        "bon": [*common, "--prompts", a.prompts, "--method", "srs-bon", "--num_samples", "2", "--weight", "1"],
        "cd": [*common, "--prompts", a.prompts, "--method", "cd", "--qhead", a.qhead],
        "thresholds": [*common, "--prompts", a.prompts, "--method", "srs-args", "--thresholds_from", a.cal],
        "dataset": [*common, "--dataset", a.dataset, "--split", "test", "--method", "srs-args"],
    }[kind]


def _resolve(a, value):
    """``@name`` -> the asset ``a.name``; ``@root/x`` -> a path under the assets folder; else the value."""
    if isinstance(value, str) and value.startswith("@root/"):
        return str(a.root / value[len("@root/"):])
    if isinstance(value, str) and value.startswith("@"):
        return getattr(a, value[1:])
    return value


def _apply_change(a, argv, change):
    """``argv`` with the change's options set: each ``--name`` in ``change`` replaces that option and all its
    values in ``argv``; a value ``None`` removes the option; a bare switch (``--overwrite``) is appended."""
    argv, change = list(argv), list(change)
    i = 0
    while i < len(change):
        name, j = change[i], i + 1
        while j < len(change) and not (isinstance(change[j], str) and change[j].startswith("--")):
            j += 1
        values = [_resolve(a, v) for v in change[i + 1 : j]]
        if name in argv:
            k = argv.index(name)
            end = k + 1
            while end < len(argv) and not (isinstance(argv[end], str) and argv[end].startswith("--")):
                end += 1
            del argv[k:end]
        if values != [None]:
            argv += [name, *values]
        i = j
    return argv


#: option -> (base kind, the change, expectation): ("refused", text the error must name) or "same" (the rerun
#: ends with the rows an uninterrupted run with the new settings writes, equal to the base settings' rows).
GENERATE_TABLE = [
    ("prompts", "args", ["--prompts", "@other_prompts"], ("refused", "answers another prompt")),
    ("dataset", "dataset", ["--dataset", "@dataset2"], ("refused", "answers another prompt")),
    ("split", "dataset", ["--split", "train"], ("refused", "answers another prompt")),
    ("column", "dataset", ["--column", "question"], ("refused", "answers another prompt")),
    ("limit", "args", ["--limit", "3"], "same"),
    ("output_file", "args", ["--output_file", "@root/elsewhere.jsonl"], "same"),
    ("overwrite", "args", ["--overwrite"], "same"),
    ("method", "args", ["--method", "minmax-args"], ("refused", "settings.method")),
    ("model", "args", ["--model", "@lm2"], ("refused", "model.weights")),
    ("reward_model", "args", ["--reward_model", "@rm2"], ("refused", "reward.model.weights")),
    ("trust_remote_code", "args", ["--trust_remote_code", "true"], "same"),
    ("qhead", "cd", ["--qhead", "@qhead_retrained"], ("refused", "settings.qhead")),
    ("weight", "args", ["--weight", "2"], ("refused", "settings.weight")),
    ("k", "args", ["--k", "4"], ("refused", "settings.k")),
    ("num_samples", "bon", ["--num_samples", "3"], ("refused", "settings.num_samples")),
    ("bound", "args", ["--bound", "5"], ("refused", "settings.bound")),
    ("alpha", "args", ["--alpha", "3"], ("refused", "settings.alpha")),
    ("beta", "args", ["--beta", "1"], ("refused", "settings.beta")),
    ("cd_temperature", "cd", ["--cd_temperature", "0.5"], ("refused", "settings.cd_temperature")),
    ("thresholds_from", "thresholds", ["--thresholds_from", "@cal_other"], ("refused", "settings.threshold_source")),
    ("max_new_tokens", "args", ["--max_new_tokens", "4"], ("refused", "settings.max_new_tokens")),
    ("max_prompt_length", "args", ["--max_prompt_length", "8"], ("refused", "max_prompt_length")),
    ("batch_size", "args", ["--batch_size", "1"], "same"),
    ("do_sample", "args", ["--do_sample"], ("refused", "settings.do_sample")),
    ("temperature", "sample", ["--temperature", "1.3"], ("refused", "settings.temperature")),
    ("seed", "sample", ["--seed", "1"], ("refused", "settings.seed")),
    ("dtype", "args", ["--dtype", "bfloat16"], ("refused", "model.dtype")),
    ("preset", "args", ["--preset", "paper"], ("refused", "settings.preset")),
    ("dialogue_prompts_as_text", "args", ["--dialogue_prompts_as_text", "true"],
     ("refused", "settings.dialogue_prompts_as_text")),
    ("stop_at_new_turn", "args", ["--stop_at_new_turn", "true"], ("refused", "settings.stop_at_new_turn")),
]

_GEN_CACHE = {}


def _gen_partial_and_full(a, kind):
    """(partial run folder: 2 of 4 prompts answered, rows of an uninterrupted run), computed once per kind."""
    if kind not in _GEN_CACHE:
        partial, full = a.root / f"gen-{kind}-partial", a.root / f"gen-{kind}-full"
        partial.mkdir()
        full.mkdir()
        assert _main(*_gen_base(a, kind), "--output_file", partial / "out.jsonl", "--limit", "2") == 0
        assert _main(*_gen_base(a, kind), "--output_file", full / "out.jsonl") == 0
        _GEN_CACHE[kind] = (partial, _rows(full / "out.jsonl"))
    return _GEN_CACHE[kind]


def _prepare_extra_assets(a):
    """Inputs some changes point to: a copy of the Q-head retrained (other weights) and another calibration."""
    from hf_stackshape.qhead import QHeadModel

    if not (a.root / "qhead_retrained").exists():
        head = QHeadModel.from_pretrained(a.qhead)
        with torch.no_grad():
            for p in head.head.parameters():
                p.add_(0.1)
        head.save_pretrained(a.root / "qhead_retrained")
        shutil.copytree(a.cal, a.root / "cal_other")
    a.qhead_retrained, a.cal_other = a.root / "qhead_retrained", a.root / "cal_other"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option,kind,change,expect", GENERATE_TABLE, ids=[row[0] for row in GENERATE_TABLE])
def test_generate_option_is_pinned_or_does_not_change_the_output(assets, tmp_path, capsys, option, kind, change,
                                                                  expect):
    a = assets
    _prepare_extra_assets(a)
    partial, full_rows = _gen_partial_and_full(a, kind)
    shutil.copytree(partial, tmp_path / "run")
    out = tmp_path / "run" / "out.jsonl"
    before = out.read_text()
    argv = _apply_change(a, [*_gen_base(a, kind), "--output_file", out], change)
    capsys.readouterr()
    code = _main(*argv)
    err = capsys.readouterr().err
    if expect == "same":
        assert code == 0, err
        target = Path(argv[argv.index("--output_file") + 1])
        if option == "limit":  # the rerun answered one more prompt; finishing it gives the uninterrupted rows
            assert len(_rows(out)) == 3
            assert _main(*_gen_base(a, kind), "--output_file", out) == 0
        assert _rows(target) == full_rows
    else:
        assert code == 2, (option, err)
        assert expect[1] in err and "Traceback" not in err, (option, err)
        assert out.read_text() == before  # nothing was appended


@pytest.mark.usefixtures("one_thread")
def test_generate_batch_size_does_not_change_sampled_rows(assets, tmp_path):
    partial, full_rows = _gen_partial_and_full(assets, "sample")
    shutil.copytree(partial, tmp_path / "run")
    out = tmp_path / "run" / "out.jsonl"
    assert _main(*_gen_base(assets, "sample"), "--output_file", out, "--batch_size", "1") == 0
    assert _rows(out) == full_rows


# -------------------------------------------------------------------------------- generate: the cases


@pytest.mark.usefixtures("one_thread")
def test_thresholds_changed_in_place_are_refused_on_resume(assets, tmp_path, capsys):
    """Issue 20.1: recalibrating --thresholds_from's folder between two parts of a run is refused by name."""
    from datasets import Dataset

    cal = tmp_path / "cal"
    shutil.copytree(assets.cal, cal)
    argv = [*_gen_base(assets, "args"), "--thresholds_from", cal, "--output_file", tmp_path / "out.jsonl"]
    assert _main(*argv, "--limit", "2") == 0
    before = (tmp_path / "out.jsonl").read_text()
    # Recalibrated with another beta: other thresholds, same folder.
    shutil.rmtree(cal / "dataset")
    Dataset.from_dict({"prompt": PROMPTS, "threshold": [0.5, 0.4, -0.3, 0.2]}).save_to_disk(str(cal / "dataset"))
    capsys.readouterr()
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    assert "inputs.thresholds_from" in err and "--overwrite" in err, err
    assert (tmp_path / "out.jsonl").read_text() == before
    # An unchanged folder resumes.
    shutil.rmtree(cal / "dataset")
    shutil.copytree(assets.cal / "dataset", cal / "dataset")
    assert _main(*argv) == 0 and len(_rows(tmp_path / "out.jsonl")) == 4


@pytest.mark.usefixtures("one_thread")
def test_a_retrained_qhead_in_the_same_folder_is_refused_on_resume(assets, tmp_path, capsys):
    qhead = tmp_path / "qhead"
    shutil.copytree(assets.qhead, qhead)
    argv = [*_gen_base(assets, "cd"), "--qhead", qhead, "--output_file", tmp_path / "out.jsonl"]
    assert _main(*argv, "--limit", "2") == 0
    _prepare_extra_assets(assets)
    shutil.rmtree(qhead)
    shutil.copytree(assets.qhead_retrained, qhead)
    capsys.readouterr()
    assert _main(*argv) == 2
    assert "inputs.qhead" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_thresholds_of_another_reward_are_refused_naming_both(assets, tmp_path, capsys):
    """Issue 20.1: thresholds calibrated with one reward do not guide another."""
    argv = [*_gen_base(assets, "thresholds"), "--output_file", tmp_path / "out.jsonl", "--limit", "1"]
    capsys.readouterr()
    assert _main(*argv, "--reward_model", assets.rm2) == 2
    err = capsys.readouterr().err
    assert f"calibrated with the reward {str(assets.rm)!r}" in err and str(assets.rm2) in err, err
    assert "model.weights" in err and "stackshape calibrate --reward_model" in err
    assert not (tmp_path / "out.jsonl.run.json").exists()
    assert _main(*argv) == 0  # the calibration's own reward


@pytest.mark.usefixtures("one_thread")
def test_calibrate_records_its_reward_and_generate_checks_it(assets, tmp_path, capsys):
    cal = tmp_path / "cal"
    assert _main("calibrate", "--model", assets.lm, "--reward_model", assets.rm, "--prompts", assets.prompts,
                 "--num_samples", "2", "--max_new_tokens", "3", "--output_dir", cal, "--show_progress", "false") == 0
    record = json.loads((cal / "calibration_config.json").read_text())["reward"]
    assert record["name"] == str(assets.rm) and record["fingerprint"]["type"] == "HFRewardModel"
    base = [*_gen_base(assets, "args"), "--thresholds_from", cal, "--limit", "1"]
    assert _main(*base, "--output_file", tmp_path / "ok.jsonl") == 0
    capsys.readouterr()
    assert _main(*base, "--reward_model", "length", "--output_file", tmp_path / "bad.jsonl") == 2
    err = capsys.readouterr().err
    assert str(assets.rm) in err and "'length'" in err and "wrong reward's scale" in err, err


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("bad", ["-1", "nan"])
def test_a_failed_validation_writes_nothing_and_the_corrected_command_runs(assets, tmp_path, capsys, bad):
    """Issue 20.4: --weight -1 / nan fail before the manifest is written."""
    out = tmp_path / "out.jsonl"
    argv = [*_gen_base(assets, "args"), "--output_file", out, "--limit", "1"]
    assert _main(*argv, "--weight", bad) == 2
    err = capsys.readouterr().err
    assert "weight" in err and bad in err, err
    assert not out.exists() and not Path(f"{out}.run.json").exists()
    assert _main(*argv, "--weight", "1") == 0
    assert _rows(out)[0]["weight"] == 1.0


def test_nan_settings_compare_equal_on_resume(tmp_path):
    from hf_stackshape.utils.runs import open_run, same_setting

    with open_run(tmp_path / "run", {"weight": math.nan, "grid": [1.0, math.nan]}, kind="t") as run:
        assert not run.resumed
        (run.output / "result").write_text("x")
    with open_run(tmp_path / "run", {"weight": math.nan, "grid": [1.0, math.nan]}, kind="t") as run:
        assert run.resumed
    assert same_setting({"a": [math.nan]}, {"a": [math.nan]}) and not same_setting(math.nan, 1.0)


def test_a_fresh_run_that_fails_before_any_result_leaves_no_manifest(tmp_path):
    from hf_stackshape.utils.runs import RunMismatchError, open_run

    for single_file, output in ((False, tmp_path / "folder"), (True, tmp_path / "file.jsonl")):
        with pytest.raises(RuntimeError):
            with open_run(output, {"w": 1}, kind="t", single_file=single_file):
                raise RuntimeError("boom")
        assert not output.exists() and not Path(f"{output}.run.json").exists()
        with open_run(output, {"w": 2}, kind="t", single_file=single_file) as run:  # other settings: accepted
            assert not run.resumed
            (output if single_file else output / "result").write_text("x")
        # A run that wrote a result keeps its manifest when it later fails.
        with pytest.raises(RuntimeError):
            with open_run(output, {"w": 2}, kind="t", single_file=single_file):
                raise RuntimeError("boom")
        with pytest.raises(RunMismatchError, match="w: 2 -> 3"):
            open_run(output, {"w": 3}, kind="t", single_file=single_file).__enter__()


@pytest.mark.usefixtures("one_thread")
def test_an_old_manifest_without_the_input_digests_is_refused_with_the_fix(assets, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    argv = [*_gen_base(assets, "thresholds"), "--output_file", out]
    assert _main(*argv, "--limit", "1") == 0
    manifest = Path(f"{out}.run.json")
    data = json.loads(manifest.read_text())
    del data["fingerprint"]["inputs"]  # as an older version wrote it
    manifest.write_text(json.dumps(data))
    capsys.readouterr()
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    assert "inputs.thresholds_from: '<missing>'" in err and "--overwrite" in err, err
    assert _main(*argv, "--overwrite") == 0 and len(_rows(out)) == 4


def test_content_digest_is_stable_and_sees_every_byte(tmp_path):
    from hf_stackshape.utils.runs import content_digest

    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"abc")
    (folder / "sub" / "b.txt").write_text("x")
    first = content_digest(folder)
    moved = shutil.copytree(folder, tmp_path / "moved")
    assert content_digest(moved) == first  # where it sits does not matter
    (folder / "run.json").write_text("{}")  # bookkeeping is ignored
    (folder / "checkpoint-1").mkdir()
    (folder / "checkpoint-1" / "x").write_text("y")
    assert content_digest(folder) == first
    (folder / "sub" / "b.txt").write_text("z")
    assert content_digest(folder) != first
    (folder / "sub" / "b.txt").write_text("x")
    (folder / "sub" / "b.txt").rename(folder / "sub" / "c.txt")
    assert content_digest(folder) != first
    with pytest.raises(FileNotFoundError, match="nope"):
        content_digest(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- calibrate

CAL_COMMON = ["--num_samples", "2", "--max_new_tokens", "3", "--chunk_size", "2", "--show_progress", "false"]


def _cal_base(a):
    return ["calibrate", "--model", a.lm, "--reward_model", a.rm, "--prompts", a.prompts, *CAL_COMMON]


#: option -> (change, expectation): ("refused", key) or "fresh" (the rerun's calibration equals an uninterrupted
#: run with the new settings: only the chunks the change affects are redone, and the thresholds are re-solved).
CALIBRATE_TABLE = [
    ("prompts", ["--prompts", "@other_prompts"], "fresh"),
    ("dataset", ["--prompts", None, "--dataset", "@dataset", "--split", "test"], "fresh"),
    ("split", ["--prompts", None, "--dataset", "@dataset", "--split", "train"], "fresh"),
    ("column", ["--prompts", "@two_columns", "--column", "question"], "fresh"),
    ("limit", ["--limit", "3"], "fresh"),
    ("model", ["--model", "@lm2"], ("refused", "model.weights")),
    ("reward_model", ["--reward_model", "@rm2"], ("refused", "reward.model.weights")),
    ("reward_batch_size", ["--reward_batch_size", "3"], ("refused", "reward_batch_size")),
    ("trust_remote_code", ["--trust_remote_code", "true"], "fresh"),
    ("dtype", ["--dtype", "bfloat16"], ("refused", "model.dtype")),
    ("num_samples", ["--num_samples", "3"], ("refused", "sampling.num_samples")),
    ("max_new_tokens", ["--max_new_tokens", "4"], ("refused", "sampling.max_new_tokens")),
    ("temperature", ["--temperature", "1.2"], ("refused", "sampling.temperature")),
    ("top_p", ["--top_p", "0.5"], ("refused", "sampling.top_p")),
    ("top_k", ["--top_k", "5"], ("refused", "sampling.top_k")),
    ("beta", ["--beta", "2"], "fresh"),
    ("bound", ["--bound", "3"], "fresh"),
    ("safeguards", ["--safeguards", "none"], "fresh"),
    ("chat_template", ["--chat_template", "false"], ("refused", "use_chat_template")),  # the manifest's key
    ("use_chat_template", ["--use_chat_template", "false"], ("refused", "use_chat_template")),  # deprecated alias
    ("max_prompt_length", ["--max_prompt_length", "8"], ("refused", "max_prompt_length")),
    ("chunk_size", ["--chunk_size", "3"], ("refused", "sampling.chunk_size")),
    ("seed", ["--seed", "1"], ("refused", "sampling.seed")),
    ("output_dir", ["--output_dir", "@root/cal-elsewhere"], "fresh"),
    ("overwrite", ["--overwrite"], "fresh"),
    ("show_progress", ["--show_progress", "true"], "fresh"),
    ("dialogue_prompts_as_text", ["--dialogue_prompts_as_text", "true"], ("refused", "sampling.dialogue_prompts_as_text")),
    ("stop_at_new_turn", ["--stop_at_new_turn", "true"], ("refused", "sampling.stop_at_new_turn")),
]


_CAL_PARTIAL = {}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option,change,expect", CALIBRATE_TABLE, ids=[row[0] for row in CALIBRATE_TABLE])
def test_calibrate_option_is_pinned_or_the_rerun_equals_a_fresh_run(assets, tmp_path, capsys, option, change, expect):
    a = assets
    if "partial" not in _CAL_PARTIAL:  # one chunk of two finished, as a kill after it leaves it
        partial = a.root / "cal-partial"
        assert _main(*_cal_base(a), "--output_dir", partial, "--limit", "2") == 0
        (partial / "calibration.jsonl").unlink()
        shutil.rmtree(partial / "dataset")
        _CAL_PARTIAL["partial"] = partial
    run = tmp_path / "run"
    shutil.copytree(_CAL_PARTIAL["partial"], run)
    argv = _apply_change(a, [*_cal_base(a), "--output_dir", run], change)
    capsys.readouterr()
    code = _main(*argv)
    err = capsys.readouterr().err
    if expect == "fresh":
        assert code == 0, err
        out = Path(argv[argv.index("--output_dir") + 1])
        fresh = tmp_path / "fresh"
        assert _main(*_apply_change(a, argv, ["--output_dir", str(fresh)])) == 0
        assert _rows(out / "calibration.jsonl") == _rows(fresh / "calibration.jsonl")
    else:
        assert code == 2, (option, err)
        assert expect[1] in err and "--overwrite" in err, (option, err)


# ---------------------------------------------------------------------------------------------- sweep

SWEEP_COMMON = ["--methods", "srs-args", "bon", "--weights", "1", "--k", "3", "--num_samples", "2",
                "--max_new_tokens", "3", "--batch_size", "2", "--limit", "2"]


def _sweep_base(a):
    return ["sweep", "--model", a.lm, "--reward_model", a.rm, "--prompts", a.prompts, *SWEEP_COMMON]


#: option -> (change, expectation): ("refused", key) or "fresh" (the rerun's cells and table equal a sweep run
#: from scratch with the new settings: a cell is reused only when its settings and prompts match).
SWEEP_TABLE = [
    ("prompts", ["--prompts", "@other_prompts"], "fresh"),
    ("dataset", ["--prompts", None, "--dataset", "@dataset", "--split", "test"], "fresh"),
    ("split", ["--prompts", None, "--dataset", "@dataset", "--split", "train"], "fresh"),
    ("column", ["--prompts", "@two_columns", "--column", "question"], "fresh"),
    ("limit", ["--limit", "3"], "fresh"),
    ("output_dir", ["--output_dir", "@root/sweep-elsewhere"], "fresh"),
    ("model", ["--model", "@lm2"], ("refused", "model.weights")),
    ("reward_model", ["--reward_model", "@rm2"], ("refused", "reward.model.weights")),
    ("gold_reward", ["--gold_reward", "length"], "fresh"),
    ("trust_remote_code", ["--trust_remote_code", "true"], "fresh"),
    ("overwrite", ["--overwrite"], "fresh"),
    ("qheads", ["--methods", "cd", "--qheads", "raw=@qhead"], ("refused", "qheads.raw")),
    ("dtype", ["--dtype", "bfloat16"], ("refused", "model.dtype")),
    ("methods", ["--methods", "minmax-args", "bon"], "fresh"),
    ("weights", ["--weights", "2"], "fresh"),
    ("k", ["--k", "4"], "fresh"),
    ("num_samples", ["--num_samples", "3"], "fresh"),
    ("max_new_tokens", ["--max_new_tokens", "4"], "fresh"),
    ("batch_size", ["--batch_size", "1"], "fresh"),
    ("bound", ["--bound", "5"], "fresh"),
    ("alpha", ["--alpha", "3"], "fresh"),
    ("judge_tolerance", ["--judge_tolerance", "0.5"], "fresh"),
    ("seed", ["--seed", "1"], "fresh"),
]

_SWEEP_BASE = {}


def _sweep_outputs(folder):
    cells = {p.name: p.read_text() for p in sorted((folder / "generations").glob("*.jsonl"))}
    return cells, json.loads((folder / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option,change,expect", SWEEP_TABLE, ids=[row[0] for row in SWEEP_TABLE])
def test_sweep_option_is_pinned_or_the_rerun_equals_a_fresh_sweep(assets, tmp_path, capsys, option,
                                                                   change, expect):
    a = assets
    if "base" not in _SWEEP_BASE:
        _SWEEP_BASE["base"] = a.root / "sweep-base"
        assert _main(*_sweep_base(a), "--output_dir", _SWEEP_BASE["base"]) == 0
    run = tmp_path / "run"
    shutil.copytree(_SWEEP_BASE["base"], run)
    argv = _apply_change(a, [*_sweep_base(a), "--output_dir", run], change)
    if option == "qheads":
        argv[argv.index("raw=@qhead")] = f"raw={a.qhead}"
    capsys.readouterr()
    code = _main(*argv)
    err = capsys.readouterr().err
    if expect == "fresh":
        assert code == 0, err
        out = Path(argv[argv.index("--output_dir") + 1])
        fresh = tmp_path / "fresh"
        assert _main(*_apply_change(a, argv, ["--output_dir", str(fresh)])) == 0
        (cells, table), (fresh_cells, fresh_table) = _sweep_outputs(out), _sweep_outputs(fresh)
        assert table == fresh_table
        # Cells of grid points the new sweep no longer has may stay behind, unused; every cell it has is fresh's.
        assert {name: cells.get(name) for name in fresh_cells} == fresh_cells
    else:
        assert code == 2, (option, err)
        assert expect[1] in err and "--overwrite" in err, (option, err)


@pytest.mark.usefixtures("one_thread")
def test_a_sweep_with_another_seed_redoes_its_best_of_n_cells(assets, tmp_path):
    """Issue 20.2: --seed 1 into a seed-0 folder gives the files a seed-1 sweep writes, never relabelled ones."""
    argv = ["sweep", "--model", assets.lm, "--reward_model", assets.rm, "--prompts", assets.prompts, "--methods",
            "bon", "soft-bon", "--weights", "1", "--num_samples", "2", "--max_new_tokens", "3", "--limit", "2"]
    assert _main(*argv, "--output_dir", tmp_path / "sw") == 0
    seed0 = _sweep_outputs(tmp_path / "sw")[0]
    assert _main(*argv, "--seed", "1", "--output_dir", tmp_path / "sw") == 0
    assert _main(*argv, "--seed", "1", "--output_dir", tmp_path / "fresh") == 0
    resumed, fresh = _sweep_outputs(tmp_path / "sw")[0], _sweep_outputs(tmp_path / "fresh")[0]
    assert resumed == fresh
    bon_cells = [name for name in fresh if "bon" in name]
    assert bon_cells and all(resumed[name] != seed0[name] for name in bon_cells)
    assert all(json.loads(resumed[name].splitlines()[0])["seed"] == 1 for name in bon_cells)
    assert resumed["base.jsonl"] == seed0["base.jsonl"]  # greedy cells do not depend on the seed: reused


# ---------------------------------------------------------------------------------------------- train-qhead


def _rollouts(path):
    rows = [{"prompt": p, "responses": [f"answer {i} to {p}" for i in range(2)], "rewards": [float(j), float(-j)],
             "threshold": 0.0} for j, p in enumerate(PROMPTS)]
    _write_jsonl(path, rows)
    return path


def test_train_qhead_fingerprint_pins_every_option_but_the_no_effect_ones(assets, tokenizer):
    """Every TrainingArguments / QHeadTrainerConfig / TrainQHeadArguments option is in the manifest unless it is
    listed as unable to change the head; the no-effect lists name real options only."""
    from transformers import AutoModelForCausalLM

    from hf_stackshape.commands.train_qhead import (
        NO_EFFECT_HEAD_KEYS, NO_EFFECT_TRAINING_KEYS, TrainQHeadArguments, run_fingerprint)
    from hf_stackshape.qhead import QHeadTrainerConfig

    config = QHeadTrainerConfig(output_dir=str(assets.root / "x"), report_to="none")
    args = TrainQHeadArguments(calibration_dir="c")
    backbone = AutoModelForCausalLM.from_pretrained(assets.lm)
    fp = run_fingerprint(args, config, "digest", backbone, tokenizer)
    trainer_fields = {f.name for f in fields(QHeadTrainerConfig) if f.init}
    # A renamed option is recorded under its old key (chat_template as apply_chat_template: earlier runs resume);
    # its deprecated alias is no option of its own.
    renamed = QHeadTrainerConfig.RENAMED_FIELDS
    recorded_as = {new: old for old, new in renamed.items()}
    options = trainer_fields - NO_EFFECT_TRAINING_KEYS - set(renamed)
    assert set(fp["training"]) == {recorded_as.get(name, name) for name in options}
    assert fp["training"]["apply_chat_template"] is None and "chat_template" not in fp["training"]
    assert NO_EFFECT_TRAINING_KEYS - trainer_fields <= {"overwrite_output_dir", "logging_dir"}  # absent in some versions
    assert set(fp["head"]) == {f.name for f in fields(TrainQHeadArguments)} - NO_EFFECT_HEAD_KEYS
    assert NO_EFFECT_HEAD_KEYS <= {f.name for f in fields(TrainQHeadArguments)}
    # Options that change the head and were missing before issue 20.
    for name in ("dataloader_drop_last", "per_device_eval_batch_size", "gradient_checkpointing", "lr_scheduler_kwargs",
                 "label_smoothing_factor", "torch_compile", "full_determinism", "neftune_noise_alpha"):
        assert name in fp["training"], name


def _train(a, data, out, *extra):
    return _main("train-qhead", "--calibration_dir", data, "--backbone", a.lm, "--head_hidden_size", "8",
                 "--output_dir", out, "--num_train_epochs", "1", "--report_to", "none", "--save_strategy", "no",
                 "--disable_tqdm", "true", "--per_device_train_batch_size", "2", "--validation_split", "0.5",
                 "--per_device_eval_batch_size", "2", *extra)


@pytest.mark.usefixtures("one_thread")
def test_train_qhead_drop_last_on_a_small_calibration_says_why(assets, tmp_path, capsys):
    """Issue 20.5: --dataloader_drop_last with a validation set smaller than one batch: a clear error, no
    traceback; with a batch that fits, it trains."""
    data = _rollouts(tmp_path / "rollouts.jsonl")
    capsys.readouterr()
    code = _train(assets, data, tmp_path / "head", "--dataloader_drop_last", "true", "--per_device_eval_batch_size", "16")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "--dataloader_drop_last drops every validation batch" in err and "--per_device_eval_batch_size" in err, err
    assert not (tmp_path / "head" / "run.json").exists()  # nothing left that would block the corrected command
    assert _train(assets, data, tmp_path / "head", "--dataloader_drop_last", "true") == 0
    assert "validation MSE" in capsys.readouterr().out


#: option -> (change, expectation) for reruns of a finished train-qhead run: ("refused", key) or "same" (the
#: rerun resumes and leaves the same head weights).
TRAIN_QHEAD_TABLE = [
    ("calibration_dir", ["--calibration_dir", "@changed_data"], ("refused", "calibration_data")),
    ("backbone", ["--backbone", "@lm2"], ("refused", "backbone.weights")),
    ("head_type", ["--head_type", "q"], ("refused", "head.head_type")),
    ("head_hidden_size", ["--head_hidden_size", "4"], ("refused", "head.head_hidden_size")),
    ("rank", ["--rank", "4"], ("refused", "head.rank")),
    ("init", ["--init", "orthogonal"], ("refused", "head.init")),
    ("head_seed", ["--head_seed", "1"], ("refused", "head.head_seed")),
    ("lora_r", ["--lora_r", "2"], ("refused", "head.lora_r")),
    ("lora_alpha", ["--lora_alpha", "3"], ("refused", "head.lora_alpha")),
    ("lora_dropout", ["--lora_dropout", "0.1"], ("refused", "head.lora_dropout")),
    ("lora_target_modules", ["--lora_target_modules", "q_proj"], ("refused", "head.lora_target_modules")),
    ("dtype", ["--dtype", "bfloat16"], ("refused", "head.dtype")),
    ("overwrite", ["--overwrite"], "same"),
    ("dataloader_drop_last", ["--dataloader_drop_last", "true"], ("refused", "training.dataloader_drop_last")),
    ("per_device_eval_batch_size", ["--per_device_eval_batch_size", "1"],
     ("refused", "training.per_device_eval_batch_size")),
    ("learning_rate", ["--learning_rate", "0.01"], ("refused", "training.learning_rate")),
    ("loss_type", ["--loss_type", "consistency"], ("refused", "training.loss_type")),
    ("logging_steps", ["--logging_steps", "1"], "same"),
    ("disable_tqdm", ["--disable_tqdm", "false"], "same"),
    ("save_total_limit", ["--save_total_limit", "1"], "same"),
]


def _head_state(folder):
    from safetensors.torch import load_file

    return {name: tensor for name, tensor in load_file(str(Path(folder) / "model.safetensors")).items()}


_TRAIN_BASE = {}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("option,change,expect", TRAIN_QHEAD_TABLE, ids=[row[0] for row in TRAIN_QHEAD_TABLE])
def test_train_qhead_option_is_pinned_or_does_not_change_the_head(assets, tmp_path, capsys, option, change, expect):
    a = assets
    if "base" not in _TRAIN_BASE:
        data = _rollouts(a.root / "rollouts.jsonl")
        changed = a.root / "rollouts-changed.jsonl"
        changed.write_text(data.read_text().replace("answer 1", "reply 1"))
        _TRAIN_BASE.update(base=a.root / "head-base", data=data)
        assert _train(a, data, _TRAIN_BASE["base"]) == 0
    a.changed_data = a.root / "rollouts-changed.jsonl"
    run = tmp_path / "head"
    shutil.copytree(_TRAIN_BASE["base"], run)
    before = _head_state(run)
    extra = _apply_change(a, [], change)
    capsys.readouterr()
    code = _train(a, _TRAIN_BASE["data"], run, *extra)
    err = capsys.readouterr().err
    if expect == "same":
        assert code == 0, err
        after = _head_state(run)
        assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    else:
        assert code == 2, (option, err)
        assert expect[1] in err and "--overwrite" in err, (option, err)


# ---------------------------------------------------------------------------------------------- the audit


def _options(module):
    return {f.name for dataclass in module.DATACLASSES for f in fields(dataclass) if f.init}


def test_every_option_is_in_the_table():
    """Each option of generate, calibrate and sweep has a row above; train-qhead's own options too (its
    TrainingArguments are covered field by field by the fingerprint test)."""
    from hf_stackshape.commands import calibrate, generate, sweep
    from hf_stackshape.commands.train_qhead import TrainQHeadArguments

    assert {row[0] for row in GENERATE_TABLE} == _options(generate)
    assert {row[0] for row in CALIBRATE_TABLE} == _options(calibrate)
    assert {row[0] for row in SWEEP_TABLE} == _options(sweep)
    assert {f.name for f in fields(TrainQHeadArguments)} <= {row[0] for row in TRAIN_QHEAD_TABLE}
