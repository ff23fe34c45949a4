"""The command-line framework: --config files and --preset as defaults that flags override, readable help,
whole error messages, and reward names that resolve the same in the CLI, load_reward and from_pretrained."""

import json
import types

import pytest
import torch

from hf_stackshape import cli
from hf_stackshape.commands import generate as generate_command


def _parse(module, argv, command="generate"):
    return cli.parse_command_args(command, module, argv)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_values_are_defaults_and_flags_override_them(tmp_path, suffix):
    values = {"max_new_tokens": 7, "method": "args", "weight": 1.25, "k": 4}
    path = tmp_path / f"run{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    (args,) = _parse(generate_command, ["--config", str(path), "--method", "srs-args", "--k", "3"])
    assert (args.max_new_tokens, args.weight) == (7, 1.25)  # from the file
    assert (args.method, args.k) == ("srs-args", 3)  # the flags win
    # The old form, a config file as the only argument, still works.
    (alone,) = _parse(generate_command, [str(path)])
    assert (alone.method, alone.k) == ("args", 4)


def test_evaluate_preset_paper_sets_the_paper_metrics_and_judge():
    from hf_stackshape.commands import evaluate as evaluate_command

    (plain,) = _parse(evaluate_command, ["--generations", "g.jsonl", "--diversity", "ours"], command="evaluate")
    assert plain.diversity == "ours" and plain.judge_max_tokens == 256
    (paper,) = _parse(evaluate_command, ["--preset", "paper", "--generations", "g.jsonl"], command="evaluate")
    assert (paper.diversity, paper.judge_max_tokens, paper.judge_api_error) == ("paper", 2048, "tie")
    (flagged,) = _parse(
        evaluate_command, ["--preset", "paper", "--generations", "g.jsonl", "--diversity", "ours"], command="evaluate"
    )
    assert flagged.diversity == "ours"


def test_config_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_new_tokens: 7\nnot_an_option: 1\n")
    with pytest.raises(cli.CLIError, match=r"not_an_option"):
        _parse(generate_command, ["--config", str(bad)])
    with pytest.raises(cli.CLIError, match="no such file"):
        _parse(generate_command, ["--config", str(tmp_path / "missing.yaml")])
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(cli.CLIError, match="mapping"):
        _parse(generate_command, ["--config", str(listed)])


def test_preset_paper_sets_defaults_that_flags_and_config_override(tmp_path):
    from hf_stackshape.pipeline.generation import decoder_settings

    (args,) = _parse(generate_command, ["--preset", "paper"])
    assert (args.max_new_tokens, args.k, args.bound, args.alpha, args.cd_temperature) == (128, 10, 12.0, 1.5, 0.7)
    # ARGS and CD weights differ (0.5 vs 1.5): left to the method, through the preset name.
    assert args.weight is None and args.preset == "paper"
    assert args.temperature == 1.0  # the sampling temperature is not CD's temperature
    assert decoder_settings("srs-args", args.preset)["weight"] == 0.5
    assert decoder_settings("srs-args", args.preset)["rm_input"] == "raw"
    assert decoder_settings("srs-cd", args.preset)["weight"] == 1.5
    (flagged,) = _parse(generate_command, ["--preset", "paper", "--max_new_tokens", "5", "--bound", "3"])
    assert (flagged.max_new_tokens, flagged.bound) == (5, 3.0)
    config = tmp_path / "c.yaml"
    config.write_text("preset: paper\nk: 4\n")
    (from_file,) = _parse(generate_command, ["--config", str(config)])
    assert (from_file.preset, from_file.k, from_file.max_new_tokens) == ("paper", 4, 128)
    with pytest.raises(cli.CLIError, match="Unknown preset 'nope'"):
        _parse(generate_command, ["--preset", "nope"])


def test_preset_defaults_mapping():
    fields = ["k", "weight", "cd_temperature", "temperature", "max_new_tokens"]
    values = cli.preset_defaults("paper", ("args", "cd", "generation"), fields)
    assert values == {"k": 10, "cd_temperature": 0.7, "max_new_tokens": 128}  # weight conflicts: not mapped


def test_preset_reaches_trainer_config_fields():
    """A TrainingArguments-based config takes preset values too (the paper's Q-head training)."""
    from hf_stackshape.qhead.trainer import QHeadTrainerConfig

    module = types.SimpleNamespace(
        DATACLASSES=(QHeadTrainerConfig,), DESCRIPTION="test", PRESET_COMPONENTS=("qhead_trainer",)
    )
    (config,) = _parse(module, ["--preset", "paper", "--output_dir", "x", "--num_train_epochs", "2"], "train-qhead")
    assert (config.consistency_weight, config.learning_rate, config.per_device_train_batch_size) == (1.0, 1e-4, 64)
    assert (config.output_dir, config.num_train_epochs) == ("x", 2)


def test_short_help_lists_our_options_and_help_all_the_trainers(capsys):
    assert cli.main(["train-qhead", "--help"]) == 0
    short = capsys.readouterr().out
    for ours in ("--transform", "--bound", "--loss_type", "--apply_chat_template", "--output_dir", "--config", "--preset"):
        assert ours in short
    assert "--save_strategy" not in short and "--help-all" in short
    assert len(short.splitlines()) < 200
    # Our options come before the Trainer ones.
    assert short.index("--transform") < short.index("--output_dir")
    assert cli.main(["train-qhead", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--save_strategy" in full and len(full.splitlines()) > len(short.splitlines()) + 200


def _option_help(text, option):
    """The help paragraph of ``option`` in argparse's output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " ") or line.strip().startswith(option + ","))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if line.startswith("  -"):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def test_help_shows_each_default_once_and_negations_read_right(capsys):
    assert cli.main(["generate", "--help"]) == 0
    text = capsys.readouterr().out
    model = _option_help(text, "--model")
    assert model.lower().count("default") == 1 and "None" not in model
    assert _option_help(text, "--batch_size").count("(default: 8)") == 1
    assert "(default: 128)" in _option_help(text, "--max_new_tokens")
    assert cli.main(["train-qhead", "--help"]) == 0
    text = capsys.readouterr().out
    negated = _option_help(text, "--no_precompute_hidden_states")
    assert negated.split(" ", 2)[2].startswith(("Do not", "Turn --precompute_hidden_states off"))
    assert "default" not in negated
    # --preset changes the defaults the help shows (true defaults).
    assert cli.main(["generate", "--preset", "paper", "--help"]) == 0
    text = capsys.readouterr().out
    assert _option_help(text, "--k").endswith("(default: 10, from --preset paper)")
    assert _option_help(text, "--max_new_tokens").count("default") == 1


def test_negated_help_wording():
    assert cli._negated_help("Show a tqdm progress bar.", "show_progress") == "Do not show a tqdm progress bar."
    assert cli._negated_help("Whether to pad.", "pad") == "Do not pad."
    assert cli._negated_help("With a frozen backbone, reuse states.", "x").startswith("Turn --x off.")


def _fake_command(monkeypatch, error):
    module = types.SimpleNamespace(main=lambda argv: (_ for _ in ()).throw(error))
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: module)


def test_errors_keep_every_line(monkeypatch, capsys):
    _fake_command(monkeypatch, ValueError("first line of the problem\nsecond line: what to do"))
    assert cli.main(["generate"]) == 2
    err = capsys.readouterr().err
    assert "first line of the problem" in err and "second line: what to do" in err and "Traceback" not in err


def test_a_keyerror_is_a_bug_not_a_missing_key(monkeypatch, capsys):
    _fake_command(monkeypatch, KeyError("weight"))
    with pytest.raises(KeyError):
        cli.main(["generate"])
    assert "missing key" not in capsys.readouterr().err


def test_run_errors_are_user_facing(monkeypatch, capsys):
    from hf_stackshape.utils.runs import RunLockedError

    _fake_command(monkeypatch, RunLockedError("out.jsonl is in use by another run"))
    assert cli.main(["generate"]) == 2
    assert "in use by another run" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- reward names


PAIRS = (["Hi", "How are you?"], ["I love this, thank you!", "Terrible day."])


@pytest.mark.parametrize("name", ["vader", "length"])
def test_builtin_names_resolve_the_same_everywhere(name):
    from hf_stackshape.commands._common import load_reward_spec
    from hf_stackshape.rewards import CallableReward, HFRewardModel, load_reward

    scores = [r(*PAIRS) for r in (load_reward(name), HFRewardModel.from_pretrained(name), load_reward_spec(name, device="cpu"))]
    assert all(isinstance(r, CallableReward) for r in (load_reward(name), HFRewardModel.from_pretrained(name)))
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])
    assert len(set(scores[0].tolist())) == 2  # the two answers score differently


@pytest.mark.slow  # loads the bundled SmolLM2 reward model
def test_demo_name_loads_the_bundled_rm_everywhere_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from hf_stackshape.commands._common import load_reward_spec
    from hf_stackshape.assets.demo import load_demo_reward_model
    from hf_stackshape.rewards import HFRewardModel, load_reward

    expected = load_demo_reward_model()(*PAIRS)
    for reward in (load_reward("demo"), HFRewardModel.from_pretrained("demo"), load_reward_spec("demo", device="cpu")):
        assert isinstance(reward, HFRewardModel)
        torch.testing.assert_close(reward(*PAIRS), expected)


@pytest.mark.parametrize("name", ["vadr", "runs/rm-nope"])
def test_mistyped_reward_path_says_it_does_not_exist_and_lists_names(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    from hf_stackshape.rewards import HFRewardModel, load_reward

    for loader in (load_reward, HFRewardModel.from_pretrained):
        with pytest.raises(OSError) as info:
            loader(name)
        message = str(info.value)
        assert f"no local file or folder {tmp_path / name} exists" in message
        assert "HF_HUB_OFFLINE" in message
        for builtin in ("'demo'", "'vader'", "'length'"):
            assert builtin in message


def test_module_function_specs_need_trust_remote_code(capsys, tmp_path):
    from hf_stackshape.rewards import load_reward

    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_reward("builtins:len")
    assert load_reward("builtins:len", trust_remote_code=True)(["p"], ["abcd"]).tolist() == [4.0]
    rows = tmp_path / "g.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "response": "abc"}) + "\n")
    argv = ["evaluate", "--generations", str(rows), "--reward", "builtins:len", "--metrics", "reward"]
    assert cli.main(argv) == 2
    assert "--trust_remote_code" in capsys.readouterr().err
    assert cli.main(argv + ["--trust_remote_code", "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "g.metrics.json").read_text())
    assert report["methods"]["all"]["average_reward"] == 3.0




def test_a_command_ends_the_process_group_it_started(tmp_path, monkeypatch, capsys):
    """A torchrun rank that exits with its gloo group alive can abort at interpreter teardown (SIGABRT): the CLI
    destroys a group the command started, whether the command succeeded or failed; a group the caller set up
    before calling the CLI is left alone."""
    import torch.distributed as dist

    def command(error=None):
        def main(argv):
            dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store-{len(list(tmp_path.iterdir()))}",
                                    rank=0, world_size=1)
            if error is not None:
                raise error
            return 0

        monkeypatch.setattr(cli.importlib, "import_module", lambda name: types.SimpleNamespace(main=main))

    try:
        for error, code in ((None, 0), (ValueError("bad --weight"), 2)):
            command(error)
            assert cli.main(["generate"]) == code
            assert not dist.is_initialized()
        assert "bad --weight" in capsys.readouterr().err
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/caller", rank=0, world_size=1)
        assert cli.main(["calibrate", "--prompts", "p.jsonl"]) == 2  # fails before doing anything
        assert dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
