"""Safety holes of issue 21, each reproduced as an adversarial user would: a config file that grants code
execution, ``--overwrite`` deleting a user's files, a half-written checkpoint, hanging or huge judge replies,
runs sharing a folder by another name, inputs read wrong, and processor state that leaks between calls."""

import json
import os
import sys

import pytest

from hf_stackshape import cli
from hf_stackshape.runs import RunLockedError, RunMismatchError, open_run

FP = {"weight": 0.5}


# ------------------------------------------------------------------------- 1. a config file cannot run code


EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")


def score(response):
    return float(len(response))
"""


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_cannot_grant_trust_remote_code(tmp_path, monkeypatch, capsys, suffix):
    marker = tmp_path / "evil-ran"
    (tmp_path / "evilmod_issue21.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evilmod_issue21", None)
    rows = tmp_path / "g.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "response": "abc"}) + "\n")
    settings = {"reward": "evilmod_issue21:score", "trust_remote_code": True, "metrics": "reward"}
    config = tmp_path / f"c{suffix}"
    if suffix == ".json":
        config.write_text(json.dumps(settings))
    else:
        config.write_text("reward: evilmod_issue21:score\ntrust_remote_code: true\nmetrics: reward\n")
    argv = ["evaluate", "--config", str(config), "--generations", str(rows), "--output_dir", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "trust_remote_code" in err and "only the command line" in err and "pass --trust_remote_code" in err
    assert not marker.exists() and "evilmod_issue21" not in sys.modules
    # `trust_remote_code: false` in a file is refused too (the file has no say either way).
    config.write_text(config.read_text().replace("true", "false"))
    assert cli.main(argv) == 2 and "only the command line" in capsys.readouterr().err
    # The command line flag (the user's own opt-in) still works with the rest of the file.
    settings.pop("trust_remote_code")
    config.write_text(json.dumps(settings) if suffix == ".json" else "reward: evilmod_issue21:score\nmetrics: reward\n")
    assert cli.main(["evaluate", "--config", str(config), "--generations", str(rows), "--output_dir",
                     str(tmp_path / "out"), "--trust_remote_code"]) == 0, capsys.readouterr().err
    assert marker.read_text() == "ran"
    sys.modules.pop("evilmod_issue21", None)


# --------------------------------------------------------- 2. --overwrite removes only what a run wrote


def test_overwrite_of_a_file_run_keeps_the_users_siblings(tmp_path):
    prompts = tmp_path / "mytest.txt"
    prompts.write_text("Hello\n")
    (tmp_path / "mytest.notes").write_text("my notes")
    out = tmp_path / "mytest"
    with open_run(out, FP, single_file=True, overwrite=True) as run:
        assert not run.resumed
        out.write_text("{}\n")
    with open_run(out, {"weight": 2.0}, single_file=True, overwrite=True):
        assert not out.exists()
    assert prompts.read_text() == "Hello\n" and (tmp_path / "mytest.notes").read_text() == "my notes"
    # A file with that name and no manifest is the user's: refused, named, kept.
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my data\n")
    with pytest.raises(RunMismatchError, match=r"no run manifest.*mine\.jsonl"):
        with open_run(mine, FP, single_file=True, overwrite=True):
            pass
    assert mine.read_text() == "my data\n"


def test_overwrite_refuses_a_folder_without_a_manifest_naming_its_files(tmp_path):
    victim = tmp_path / "victim"
    (victim / "other-run").mkdir(parents=True)
    with open_run(victim / "other-run", FP, kind="calibrate"):
        (victim / "other-run" / "calibration.jsonl").write_text("{}\n")
    (victim / "thesis.tex").write_text("years of work")
    with pytest.raises(RunMismatchError, match=r"victim.*no run manifest.*other-run.*thesis\.tex") as info:
        with open_run(victim, FP, kind="calibrate", overwrite=True):
            pass
    assert "move or delete" in str(info.value)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert (victim / "other-run" / "calibration.jsonl").is_file()


# ------------------------------------------------------- 5. one folder by two names; paths by spelling


def test_a_symlink_to_a_run_folder_shares_its_lock(tmp_path):
    real = tmp_path / "calib"
    link = tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    with open_run(real, FP, kind="calibrate"):
        with pytest.raises(RunLockedError, match="in use"):
            with open_run(link, FP, kind="calibrate"):
                pass
    with open_run(link, FP, kind="calibrate") as run:  # released: the link resumes the same run
        assert run.resumed


def test_relative_and_absolute_model_paths_are_one_setting(tmp_path, monkeypatch):
    from hf_stackshape.commands.generate import GenerateArguments, row_settings
    from hf_stackshape.generation import decoder_settings, parse_method

    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "heads" / "q").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    method = parse_method("srs-args")
    decoder = decoder_settings(method, None)
    spellings = ["models/m", "./models/m", str(tmp_path / "models" / "m"), "models/../models/m/"]
    settings = [row_settings(GenerateArguments(model=s), method, decoder) for s in spellings]
    assert all(s == settings[0] for s in settings) and settings[0]["model"] == os.path.realpath("models/m")
    # A Hub id is kept as given.
    assert row_settings(GenerateArguments(model="org/name"), method, decoder)["model"] == "org/name"


# ------------------------------------------------------------------ 6. config values of the wrong type


@pytest.mark.parametrize(
    "command,text,named",
    [
        ("generate", "weight: [1, 2]\n", ["weight", "[1, 2]", "a number"]),
        ("generate", "max_new_tokens: true\n", ["max_new_tokens", "True", "an integer"]),
        ("sweep", "weights: 0.5\n", ["weights", "0.5", "a list of numbers", "[0.5, 1.0]"]),
        ("sweep", "methods: srs-args\n", ["methods", "'srs-args'", "a list of strings"]),
        ("generate", "do_sample: 'yes'\n", ["do_sample", "'yes'", "true or false"]),
    ],
)
def test_config_values_of_the_wrong_type_are_named(tmp_path, capsys, command, text, named):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert cli.main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Unknown method 's'" not in err
    for piece in named:
        assert piece in err, err


# ------------------------------------------------------- 3. a SIGKILL during a checkpoint save never blocks


KILL_DURING_SAVE = """
import os, signal, sys
from transformers import Trainer

real = Trainer._save_optimizer_and_scheduler


def killed_mid_save(self, output_dir):
    if self.state.global_step == {kill_step}:
        os.kill(os.getpid(), signal.SIGKILL)  # the model files of checkpoint-{kill_step} are written, the rest not
    return real(self, output_dir)


Trainer._save_optimizer_and_scheduler = killed_mid_save
from hf_stackshape.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_sigkill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path, tiny_lm, tokenizer):
    import subprocess

    from test_qhead import good_bad_dataset

    tiny_lm.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    data = tmp_path / "rollouts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in good_bad_dataset(4, 2, seed=0).to_list()))
    head = tmp_path / "head"
    argv = ["train-qhead", "--calibration_dir", str(data), "--backbone", str(tmp_path / "backbone"),
            "--head_hidden_size", "8", "--output_dir", str(head), "--num_train_epochs", "1",
            "--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "1",
            "--validation_split", "0", "--report_to", "none", "--disable_tqdm", "true"]
    script = tmp_path / "killed.py"
    script.write_text(KILL_DURING_SAVE.format(kill_step=2))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (head / "checkpoint-1" / "trainer_state.json").is_file()
    assert (head / "checkpoint-2").is_dir() and not (head / "checkpoint-2" / "trainer_state.json").exists()

    from hf_stackshape.qhead.checkpoints import checkpoint_problem, last_complete_checkpoint

    assert "trainer_state.json" in checkpoint_problem(str(head / "checkpoint-2"))
    assert last_complete_checkpoint(str(head)) == str(head / "checkpoint-1")
    # The rerun resumes from checkpoint-1 (the half-written checkpoint-2 is removed) and finishes.
    assert cli.main(argv) == 0
    state = json.loads((head / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and checkpoint_problem(str(head / "checkpoint-2")) is None
    assert (head / "model.safetensors").is_file() or any(p.suffix == ".safetensors" for p in head.iterdir())
