"""Issue 16: one ``from_preset`` (core.presets.FromPresetMixin), the typed ``DecodingSettings`` and one name per knob."""

import pytest

from hf_stackshape.calibration import CalibrationConfig
from hf_stackshape.core.presets import FromPresetMixin, UnknownSettingsError, get_preset, preset_settings
from hf_stackshape.evaluation.judges.llm_judge import LLMJudge
from hf_stackshape.guidance.args import ARGSLogitsProcessor
from hf_stackshape.guidance.cd import CDLogitsProcessor
from hf_stackshape.qhead.configuration_qhead import QHeadConfig
from hf_stackshape.qhead.trainer import QHeadTrainerConfig

PRESET_CLASSES = [
    (CalibrationConfig, "calibration"),
    (QHeadConfig, "qhead_model"),
    (QHeadTrainerConfig, "qhead_trainer"),
    (LLMJudge, "judge"),
    (ARGSLogitsProcessor, "args"),
    (CDLogitsProcessor, "cd"),
]


@pytest.mark.parametrize("cls,component", PRESET_CLASSES, ids=lambda v: getattr(v, "__name__", v))
def test_every_from_preset_is_the_one_mechanism(cls, component):
    # One classmethod, inherited: none of the classes defines its own.
    assert issubclass(cls, FromPresetMixin)
    assert "from_preset" not in vars(cls)
    assert cls.from_preset.__func__ is FromPresetMixin.from_preset.__func__
    assert cls._preset_component == component


def test_preset_settings_applies_overrides_and_names_unknown_keys():
    assert preset_settings("paper", "cd", {"k": 5}) == {**get_preset("paper", "cd"), "k": 5}
    # Preset keys the component does not take are left out when the accepted names are known.
    assert preset_settings("paper", "cd", {}, accepted={"k"}) == {"k": 10}
    with pytest.raises(UnknownSettingsError, match=r"Unknown thing settings \['a', 'b'\]; see Owner\."):
        preset_settings("paper", "cd", {"a": 1, "b": 2, "k": 3}, accepted={"k"}, what="thing", owner="Owner")
    with pytest.raises(ValueError, match="Unknown preset"):
        preset_settings("nope", "cd")


def test_unknown_override_is_a_value_error_and_still_a_type_error(tmp_path):
    # Calibration keeps its message; the others name the class (and stay TypeErrors, as the constructor raised).
    with pytest.raises(ValueError, match=r"Unknown calibration settings \['bogus'\]; see CalibrationConfig"):
        CalibrationConfig.from_preset("paper", bogus=1)
    with pytest.raises(TypeError, match=r"Unknown QHeadTrainerConfig settings \['bogus'\]"):
        QHeadTrainerConfig.from_preset("paper", output_dir=str(tmp_path), report_to="none", bogus=1)
    with pytest.raises(ValueError, match=r"Unknown LLMJudge settings \['bogus', 'other'\]"):
        LLMJudge.from_preset("paper", bogus=1, other=2)


def test_from_preset_values_and_overrides(tmp_path):
    config = CalibrationConfig.from_preset("paper", num_samples=4)
    assert (config.num_samples, config.temperature, config.top_p, config.bound) == (4, 0.7, 0.9, 15.0)
    head = QHeadConfig.from_preset("paper", hidden_size=576)
    assert (head.head_hidden_size, head.init, head.hidden_size) == (8192, "orthogonal", 576)
    # A PretrainedConfig takes extra keyword arguments (its constructor checks them), as before.
    assert QHeadConfig.from_preset("paper", hidden_size=8, custom_note="x").custom_note == "x"
    trainer = QHeadTrainerConfig.from_preset("paper", output_dir=str(tmp_path), report_to="none", num_train_epochs=2)
    assert (trainer.loss_type, trainer.num_train_epochs, trainer.weight_decay) == ("consistency", 2, 0.0)
    judge = LLMJudge.from_preset("paper", base_url="http://127.0.0.1:9/v1", api_key="", max_tokens=7)
    assert (judge.score_parser, judge.max_tokens) == ("paper", 7)
    judge.close()
    with pytest.raises(ValueError, match="Unknown preset"):
        QHeadConfig.from_preset("nope")


# ------------------------------------------------------------------------------------------ DecodingSettings
import dataclasses  # noqa: E402
import warnings  # noqa: E402

from hf_stackshape.core.decoding import DECODER_FIELDS, DecodingSettings  # noqa: E402
from hf_stackshape.core.methods import DECODER_KEYS, decoder_settings  # noqa: E402

PROMPTS = ["Hi", "Tell me a joke.", "What is 2+2?"]


def test_decoding_settings_validate_with_messages_that_name_the_value():
    for name in ("batch_size", "max_new_tokens", "num_samples"):
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match=rf"`{name}` must be an integer >= 1, got {bad!r}"):
                DecodingSettings(**{name: bad})
    with pytest.raises(ValueError, match="`max_prompt_length` must be an integer >= 1"):
        DecodingSettings(max_prompt_length=0)
    with pytest.raises(ValueError, match="`temperature` must be a positive finite number"):
        DecodingSettings(do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match=r"`top_p` must be in \(0, 1\]"):
        DecodingSettings(do_sample=True, top_p=1.5)
    # Sampling knobs only matter (and are only checked) with do_sample, as check_generation always did.
    assert DecodingSettings(temperature=0.0, top_p=2.0).temperature == 0.0
    with pytest.raises(ValueError, match="`chat_template` must be True, False or None"):
        DecodingSettings(chat_template="yes")
    with pytest.raises(ValueError, match="`do_sample` must be True or False"):
        DecodingSettings(do_sample="no")


def test_every_decoder_keyword_is_a_settings_field():
    assert {key for keys in DECODER_KEYS.values() for key in keys} <= set(DECODER_FIELDS.values())
    names = {f.name for f in dataclasses.fields(DecodingSettings)}
    assert set(DECODER_FIELDS) <= names


@pytest.mark.parametrize("method", ["base", "args", "srs-args", "hard-args", "cd", "srs-cd", "bon", "soft-bon", "srs-bon"])
@pytest.mark.parametrize("preset", [None, "paper"])
def test_resolve_is_decoder_settings(method, preset):
    knobs = dict(weight=2.0, k=4, bound=9.0, alpha=2.5, beta=None)
    settings = DecodingSettings(preset=preset, cd_temperature=0.5, **knobs)
    assert settings.resolve(method) == decoder_settings(method, preset, temperature=0.5, **knobs)
    assert DecodingSettings(preset=preset).resolve(method) == decoder_settings(method, preset)


def test_merge_keywords_or_settings_but_not_both():
    assert DecodingSettings.merge(None, k=3, weight=None) == DecodingSettings(k=3)
    settings = DecodingSettings(k=3)
    assert DecodingSettings.merge(settings, weight=None) is settings
    with pytest.raises(ValueError, match=r"\['batch_size', 'weight'\] given both as keyword arguments and in `settings`"):
        DecodingSettings.merge(settings, weight=1.0, batch_size=2)
    with pytest.raises(TypeError, match="must be a DecodingSettings"):
        DecodingSettings.merge({"k": 3})
    assert settings.replace(weight=1.0) == DecodingSettings(k=3, weight=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        settings.replace(batch_size=0)


def test_from_options_reads_fields_of_the_same_names():
    from hf_stackshape.commands.generate import GenerateArguments
    from hf_stackshape.pipeline.sweep import SweepConfig

    args = GenerateArguments(weight=1.5, k=3, num_samples=2, cd_temperature=0.4, do_sample=True, temperature=0.9,
                             seed=7, preset="paper", stop_at_new_turn=True)
    assert args.decoding_settings() == DecodingSettings(
        weight=1.5, k=3, num_samples=2, cd_temperature=0.4, do_sample=True, temperature=0.9, seed=7, preset="paper",
        stop_at_new_turn=True,
    )
    config = SweepConfig(k=5, bound=3.0, num_samples=2, max_new_tokens=7, batch_size=3, seed=4)
    assert config.decoding_settings(0.5) == DecodingSettings(weight=0.5, k=5, bound=3.0, num_samples=2,
                                                             max_new_tokens=7, batch_size=3, seed=4)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        SweepConfig(batch_size=0)
    assert DecodingSettings.from_options({"k": 2, "other": 1}) == DecodingSettings(k=2)


def test_generate_responses_takes_settings_as_its_keywords(tiny_lm, tokenizer, reward):
    from hf_stackshape.pipeline.generation import check_generation, generate_responses

    for method, knobs in (("srs-args", dict(weight=2.0, k=3)), ("base", dict(do_sample=True, seed=3)),
                          ("srs-bon", dict(weight=1.0, num_samples=2, seed=1))):
        common = dict(max_new_tokens=3, batch_size=2, **knobs)
        by_keywords = generate_responses(tiny_lm, tokenizer, PROMPTS, method=method, reward=reward,
                                         show_progress=False, **common)
        by_settings = generate_responses(tiny_lm, tokenizer, PROMPTS, method=method, reward=reward,
                                         show_progress=False, settings=DecodingSettings(**common))
        assert by_settings == by_keywords, method
        check_generation(tiny_lm, tokenizer, method, reward=reward, settings=DecodingSettings(**common))
    with pytest.raises(ValueError, match="given both as keyword arguments and in `settings`"):
        generate_responses(tiny_lm, tokenizer, PROMPTS, k=3, settings=DecodingSettings(k=3), show_progress=False)
    with pytest.raises(ValueError, match="`k` must be a positive integer"):
        check_generation(tiny_lm, tokenizer, "srs-args", reward=reward, settings=DecodingSettings(k=0))


# ------------------------------------------------------------------------------------------ one name per knob
def _warns_renamed(old, new):
    return pytest.warns(FutureWarning, match=rf"`{old}`.* is deprecated .*use `{new}`")


def test_calibration_chat_template_alias(tmp_path):
    with _warns_renamed("use_chat_template", "chat_template"):
        config = CalibrationConfig(use_chat_template=False)
    assert config.chat_template is False and config.use_chat_template is None
    assert config == CalibrationConfig(chat_template=False)
    with pytest.raises(ValueError, match="Both `chat_template` and its deprecated alias `use_chat_template`"):
        CalibrationConfig(chat_template=True, use_chat_template=False)
    # Over a preset that sets chat_template, the old name is the explicit value (no conflict with the preset).
    with _warns_renamed("use_chat_template", "chat_template"):
        assert CalibrationConfig.from_preset("paper", use_chat_template=False).chat_template is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CalibrationConfig.from_preset("paper").chat_template is True
    # calibration_config.json keeps its key (and its place): the file format is unchanged.
    record = CalibrationConfig(chat_template=False).to_dict()
    assert "chat_template" not in record and record["use_chat_template"] is False
    assert list(record)[list(record).index("use_chat_template") - 1] == "safeguards"
    assert list(record)[-1] == "show_progress"


def test_qhead_trainer_chat_template_alias(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to="none")
    with _warns_renamed("apply_chat_template", "chat_template"):
        args = QHeadTrainerConfig(apply_chat_template=True, **common)
    assert args.chat_template is True and args.apply_chat_template is None
    with pytest.raises(ValueError, match="Both `chat_template` and its deprecated alias `apply_chat_template`"):
        QHeadTrainerConfig(apply_chat_template=True, chat_template=False, **common)
    with _warns_renamed("apply_chat_template", "chat_template"):
        assert QHeadTrainerConfig.from_preset("paper", apply_chat_template=False, **common).chat_template is False


def test_reward_model_chat_template_alias(tiny_rm_model, tokenizer):
    from hf_stackshape.rewards.adapters import HFRewardModel

    with _warns_renamed("use_chat_template", "chat_template"):
        old = HFRewardModel(tiny_rm_model, tokenizer, use_chat_template=False)
    new = HFRewardModel(tiny_rm_model, tokenizer, chat_template=False)
    assert old.use_chat_template is new.use_chat_template is False
    assert old.format("Q", "A") == new.format("Q", "A")
    with pytest.raises(ValueError, match="Both `chat_template` and its deprecated alias `use_chat_template`"):
        HFRewardModel(tiny_rm_model, tokenizer, chat_template=False, use_chat_template=False)


def test_guided_generate_chat_template_alias(tiny_lm, tokenizer, reward):
    from hf_stackshape.guidance.guided import guided_generate

    proc = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    options = dict(max_new_tokens=3, batch_size=2)
    new = guided_generate(tiny_lm, tokenizer, PROMPTS, proc, chat_template=False, **options)
    with _warns_renamed("apply_chat_template", "chat_template"):
        old = guided_generate(tiny_lm, tokenizer, PROMPTS, proc, apply_chat_template=False, **options)
    assert old == new
    assert new != guided_generate(tiny_lm, tokenizer, PROMPTS, proc, chat_template=True, **options)
    with pytest.raises(ValueError, match="Both `chat_template` and its deprecated alias `apply_chat_template`"):
        guided_generate(tiny_lm, tokenizer, PROMPTS, proc, chat_template=False, apply_chat_template=False)


def test_best_of_n_num_samples_alias(tiny_lm, tokenizer, reward):
    from hf_stackshape.bon import StackelbergBestOfN, best_of_n_grid

    options = dict(beta=0.5, max_new_tokens=3, seed=2, show_progress=False)
    with _warns_renamed("n", "num_samples"):
        old = StackelbergBestOfN(tiny_lm, tokenizer, reward, n=3, **options)
    new = StackelbergBestOfN(tiny_lm, tokenizer, reward, num_samples=3, **options)
    assert old.num_samples == 3
    with _warns_renamed("n", "num_samples"):
        assert new.n == 3
    assert old.generate(PROMPTS).responses == new.generate(PROMPTS).responses
    with pytest.raises(ValueError, match="Both `num_samples` and its deprecated alias `n`"):
        StackelbergBestOfN(tiny_lm, tokenizer, reward, n=3, num_samples=3)
    with _warns_renamed("n", "num_samples"):
        assert StackelbergBestOfN.from_method("srs-bon", tiny_lm, tokenizer, reward, weight=1.0, n=2).num_samples == 2
    with pytest.raises(ValueError, match="Both `num_samples` and its deprecated alias `n`"):
        best_of_n_grid(tiny_lm, tokenizer, reward, PROMPTS, ["srs-bon"], [1.0], n=2, num_samples=2)
    with pytest.raises(ValueError, match="`num_samples` \\(samples N per prompt; formerly `n`\\) must be an integer >= 1"):
        StackelbergBestOfN(tiny_lm, tokenizer, reward, num_samples=0)


def test_cli_old_flag_warns_and_means_the_new_one(tmp_path):
    import importlib
    import json

    from hf_stackshape import cli

    calibrate = importlib.import_module("hf_stackshape.commands.calibrate")
    base = ["--prompts", "p.txt", "--preset", "paper"]
    with _warns_renamed("--use_chat_template", "--chat_template"):
        _, config = cli.parse_command_args("calibrate", calibrate, base + ["--use_chat_template", "false"])
    assert config.chat_template is False and config.use_chat_template is None
    with _warns_renamed("--use_chat_template", "--chat_template"):
        _, config = cli.parse_command_args("calibrate", calibrate, base + ["--use-chat-template=false"])
    assert config.chat_template is False
    _, config = cli.parse_command_args("calibrate", calibrate, base)
    assert config.chat_template is True  # the preset's
    with pytest.raises(cli.CLIError, match="--use_chat_template is the deprecated name of --chat_template"):
        cli.parse_command_args("calibrate", calibrate, base + ["--chat_template", "true", "--use_chat_template", "false"])
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"prompts": "p.txt", "use_chat_template": False}))
    with _warns_renamed("use_chat_template", "chat_template"):
        _, config = cli.parse_command_args("calibrate", calibrate, ["--config", str(path)])
    assert config.chat_template is False
    path.write_text(json.dumps({"prompts": "p.txt", "use_chat_template": False, "chat_template": True}))
    with pytest.raises(cli.CLIError, match="use_chat_template is the deprecated name of chat_template"):
        cli.parse_command_args("calibrate", calibrate, ["--config", str(path)])
    train = importlib.import_module("hf_stackshape.commands.train_qhead")
    argv = ["--calibration_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--apply_chat_template", "false"]
    with _warns_renamed("--apply_chat_template", "--chat_template"):
        _, args = cli.parse_command_args("train-qhead", train, argv)
    assert args.chat_template is False
