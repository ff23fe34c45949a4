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
