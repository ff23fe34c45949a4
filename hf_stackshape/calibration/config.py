"""The settings of a calibration run: :class:`CalibrationConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..core.presets import FromPresetMixin
from ..core.shaping import check_positive, get_safeguards
from ..utils.deprecation import deprecated_field, resolve_renamed_fields

__all__ = ["CalibrationConfig"]


@dataclass
class CalibrationConfig(FromPresetMixin):
    """Settings of a :class:`~hf_stackshape.calibration.ThresholdCalibrator` run (``HfArgumentParser``-friendly,
    TRL style).

    The sampling fields (everything but ``beta``, ``bound``, ``safeguards``, ``output_dir``, ``overwrite`` and
    ``show_progress``) identify the cached samples: with one of them changed, an existing ``output_dir`` is
    refused (or, with ``overwrite=True``, removed whole). ``beta``, ``bound`` and ``safeguards`` only enter the
    threshold, which is re-solved from the stored rewards on every run.

    Sampling inherits the model's ``generation_config`` like the authors' scripts (Wang et al., 2026), which
    call ``generate`` with only the temperature and top-p: ``top_k=None`` keeps the model's own top-k (e.g. 20
    for Qwen3, transformers' 50 when the model sets none), ``0`` disables it.

    ``CalibrationConfig.from_preset("paper", **overrides)`` (:class:`~hf_stackshape.core.presets.FromPresetMixin`)
    gives the authors' rollouts for SRS-CD (N = 10, temperature 0.7, top-p 0.9, the model's top-k, 128 new tokens,
    the chat template except on prompts that already hold HH-RLHF turns, each rollout cut at the next "Human:"
    turn; B = 15, beta = 0.667, CD safeguards); an unknown override is an error naming it.

    Examples:

    ```python
    >>> from hf_stackshape.calibration import CalibrationConfig
    >>> config = CalibrationConfig.from_preset("paper", num_samples=4)
    >>> config.num_samples, config.temperature, config.top_p, config.top_k, config.bound
    (4, 0.7, 0.9, None, 15.0)
    ```
    """

    _preset_component = "calibration"
    #: Deprecated field names (``utils.deprecation``): the old name warns and means the new one.
    RENAMED_FIELDS = {"use_chat_template": "chat_template"}
    _preset_settings_name = "calibration"

    num_samples: int = field(default=10, metadata={"help": "Responses N sampled per prompt."})
    max_new_tokens: int = field(default=128, metadata={"help": "New tokens per sampled response."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the base policy."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling top-p (1.0 disables it)."})
    top_k: Optional[int] = field(
        default=None,
        metadata={"help": "Top-k sampling; unset keeps the model's generation_config top-k, 0 disables it."},
    )
    beta: float = field(default=0.667, metadata={"help": "KL strength beta (1/lambda) of the threshold."})
    bound: float = field(default=15.0, metadata={"help": "Reward bound B of the shaped reward, > 0."})
    safeguards: str = field(
        default="cd", metadata={"help": "Numerical safeguards of the threshold: 'cd', 'args' or 'none'."}
    )
    chat_template: Optional[bool] = field(
        default=None,
        metadata={"help": "Wrap prompts in the tokenizer's chat template (unset: when it has one)."},
    )
    dialogue_prompts_as_text: bool = field(
        default=False,
        metadata={"help": "Feed a prompt that already holds 'Human:'/'Assistant:' turns (HH-RLHF) as plain text, "
                  "without the chat template (the paper preset, as the authors' rollouts)."},
    )
    stop_at_new_turn: bool = field(
        default=False,
        metadata={"help": "Cut each response at the first new 'Human:'/'User:' turn (the authors' --stop_on_human; "
                  "on in the paper preset)."},
    )
    max_prompt_length: Optional[int] = field(
        default=None,
        metadata={"help": "Prompt token budget; longer prompts keep their end (unset: context - new tokens)."},
    )
    chunk_size: int = field(default=8, metadata={"help": "Prompts per generate call, per cached shard and per seed."})
    seed: int = field(default=0, metadata={"help": "Base seed; the samples of chunk k depend on (seed, k) only."})
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "Folder of the resumable cache and final dataset; rerun = resume."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Remove the whole old run in output_dir and start fresh instead of refusing changed settings."},
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm progress bar."})
    #: Deprecated alias of ``chat_template`` (warns; ``None`` once moved there).
    use_chat_template: Optional[bool] = deprecated_field("chat_template")

    def __post_init__(self):
        resolve_renamed_fields(self)
        check_positive("beta", self.beta)
        check_positive("bound", self.bound)
        check_positive("temperature", self.temperature)
        for name in ("num_samples", "max_new_tokens", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if not (0.0 < float(self.top_p) <= 1.0):
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p!r}.")
        if self.top_k is not None and (isinstance(self.top_k, bool) or int(self.top_k) != self.top_k or self.top_k < 0):
            raise ValueError(
                f"`top_k` must be None (the model's generation_config), 0 (disabled) or a positive integer, "
                f"got {self.top_k!r}."
            )
        if self.max_prompt_length is not None and int(self.max_prompt_length) < 1:
            raise ValueError(f"`max_prompt_length` must be >= 1, got {self.max_prompt_length!r}.")
        if not isinstance(self.safeguards, str):
            raise ValueError(f"`safeguards` must be 'cd', 'args' or 'none', got {self.safeguards!r}.")
        get_safeguards(self.safeguards)
        for name in ("dialogue_prompts_as_text", "stop_at_new_turn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")

    def to_dict(self) -> Dict[str, Any]:
        """The settings as recorded in ``calibration_config.json``: every field, ``chat_template`` under the key
        the file has always used (``use_chat_template``), in the same place."""
        record = {}
        for f in dataclasses.fields(self):
            if f.name not in self.RENAMED_FIELDS:
                record["use_chat_template" if f.name == "chat_template" else f.name] = getattr(self, f.name)
        return record

    def sampling_settings(self) -> Dict[str, Any]:
        """The fields that determine the samples (part of the run's fingerprint). The dialogue switches
        (``dialogue_prompts_as_text``, ``stop_at_new_turn``) are listed only when on, so runs made before they
        existed keep their fingerprint."""
        keys = ("num_samples", "max_new_tokens", "temperature", "top_p", "top_k", "chunk_size", "seed")
        out = {k: getattr(self, k) for k in keys}
        for key in ("dialogue_prompts_as_text", "stop_at_new_turn"):
            if getattr(self, key):
                out[key] = True
        return out
