"""The settings of one decoding run, typed: :class:`DecodingSettings` (layer 1, next to the method registry).

Every knob a guided generation takes lives here once: the decoder's (ARGS after Khanov et al., 2024; CD after
Mudgal et al., 2023; best-of-N; with the Stackelberg-shaped reward of Wang et al., 2026) and the generation's
(length, batching, sampling, prompt format). :func:`~hf_stackshape.pipeline.generation.generate_responses`,
``stackshape generate`` and :class:`~hf_stackshape.pipeline.sweep.SweepConfig` build one instead of listing the
knobs again; :meth:`DecodingSettings.resolve` gives what a method's decoder runs with (its class defaults, then the
preset, then the explicit values: :func:`~hf_stackshape.core.methods.decoder_settings`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..utils.checks import check_temperature
from .methods import Method, decoder_settings, parse_method

__all__ = ["DecodingSettings", "DECODER_FIELDS"]

#: The decoder knobs of :class:`DecodingSettings`, each with the keyword its decoder takes it as
#: (:data:`~hf_stackshape.core.methods.DECODER_KEYS`): CD's ``temperature`` is ``cd_temperature`` here, as on the
#: command line, since ``temperature`` is the sampling temperature.
DECODER_FIELDS = {
    "weight": "weight",
    "k": "k",
    "bound": "bound",
    "alpha": "alpha",
    "beta": "beta",
    "cd_temperature": "temperature",
    "safeguards": "safeguards",
    "cap": "cap",
    "rm_input": "rm_input",
}


def _positive_int(name: str, value: Any) -> None:
    """As :func:`~hf_stackshape.pipeline.generation.check_generation` always checked: a whole number >= 1."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


@dataclass(frozen=True)
class DecodingSettings:
    """How to decode: every setting of :func:`~hf_stackshape.pipeline.generation.generate_responses` that is not
    an input (model, prompts, reward, Q-heads, thresholds) or a callback.

    Decoder knobs left ``None`` take the ``preset``'s value for the method's decoder, then the decoder's own
    default (:meth:`resolve`); the decoder validates them when it is built (the ARGS / CD processor or the
    best-of-N, e.g. by :func:`~hf_stackshape.pipeline.generation.check_generation`), with its own messages. The
    generation knobs are validated here.

    Args:
        weight (`float`, *optional*): guidance weight ``lambda = 1/beta`` (ARGS default 0.5, CD 1.5; best-of-N's
            ``beta`` is ``1 / weight``, weight 0 a uniform choice).
        k (`int`, *optional*): candidates per step, top-k of the base model (ARGS, CD; default 10).
        bound, alpha, beta (`float`, *optional*): reward bound ``B``, SRS sigmoid sharpness and the KL strength of
            the threshold (ARGS; ``bound``, ``alpha`` also best-of-N). ARGS's ``beta`` defaults to ``1 / weight``.
        cd_temperature (`float`, *optional*): CD: temperature of the base log-probs it ranks (default 0.7).
        safeguards, cap, rm_input (*optional*): ARGS: numerical safeguards, the reward cap and what the reward
            model reads (see :class:`~hf_stackshape.guidance.args.ARGSLogitsProcessor`).
        preset (`str`, *optional*): e.g. ``"paper"``: the authors' decoder settings where none are given.
        num_samples (`int`, defaults to 8): ``N`` of best-of-N methods.
        max_new_tokens (`int`, defaults to 128): tokens per response (the authors' ARGS length).
        max_prompt_length (`int`, *optional*): prompt token budget (default: the model's context minus
            ``max_new_tokens``).
        batch_size (`int`, defaults to 8): prompts per ``generate`` call.
        do_sample, temperature, top_p, seed: sampling (greedy by default); ``temperature`` and ``top_p`` are
            checked only with ``do_sample=True``, where they apply.
        chat_template (`bool`, *optional*): wrap prompts in the tokenizer's chat template (default: when it has one).
        dialogue_prompts_as_text (`bool`, defaults to `False`): no chat template on a prompt that already holds
            ``Human:`` / ``Assistant:`` turns (the paper preset).
        stop_at_new_turn (`bool`, defaults to `False`): cut a response where a new user turn begins.

    Examples:

    ```python
    >>> from hf_stackshape.core.decoding import DecodingSettings
    >>> settings = DecodingSettings(weight=2.0, max_new_tokens=32)
    >>> settings.resolve("srs-args")["beta"], settings.resolve("cd")["weight"]
    (0.5, 2.0)
    >>> DecodingSettings(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: `batch_size` must be an integer >= 1, got 0.

    ```
    """

    # The decoder's knobs (None: the preset's, then the decoder's default).
    weight: Optional[float] = field(default=None, metadata={"help": "Guidance weight lambda = 1/beta."})
    k: Optional[int] = field(default=None, metadata={"help": "Candidates per step (top-k of the base model)."})
    bound: Optional[float] = field(default=None, metadata={"help": "Reward bound B of shaped transforms."})
    alpha: Optional[float] = field(default=None, metadata={"help": "SRS sigmoid sharpness."})
    beta: Optional[float] = field(default=None, metadata={"help": "KL strength in the threshold (ARGS: 1/weight)."})
    cd_temperature: Optional[float] = field(default=None, metadata={"help": "CD: temperature of the base log-probs."})
    safeguards: Optional[str] = field(default=None, metadata={"help": "ARGS: numerical safeguards."})
    cap: Optional[float] = field(default=None, metadata={"help": "ARGS: reward cap."})
    rm_input: Optional[str] = field(default=None, metadata={"help": "ARGS: what the reward model reads."})
    preset: Optional[str] = field(default=None, metadata={"help": "Named decoder settings, e.g. 'paper'."})
    # The generation's.
    num_samples: int = field(default=8, metadata={"help": "Best-of-N: samples N per prompt."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens to generate per response."})
    max_prompt_length: Optional[int] = field(default=None, metadata={"help": "Prompt tokens kept."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling top-p (with do_sample)."})
    seed: int = field(default=0, metadata={"help": "Seed of every keyed random draw."})
    chat_template: Optional[bool] = field(default=None, metadata={"help": "Wrap prompts in the chat template."})
    dialogue_prompts_as_text: bool = field(default=False, metadata={"help": "HH-format prompts as plain text."})
    stop_at_new_turn: bool = field(default=False, metadata={"help": "Cut a response at a new user turn."})

    def __post_init__(self):
        for name in ("batch_size", "max_new_tokens", "num_samples"):
            _positive_int(name, getattr(self, name))
        if self.max_prompt_length is not None:
            _positive_int("max_prompt_length", self.max_prompt_length)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, float)) or int(self.seed) != self.seed:
            raise ValueError(f"`seed` must be an integer, got {self.seed!r}.")
        if self.do_sample:
            check_temperature(self.temperature)
            if not (0.0 < float(self.top_p) <= 1.0):
                raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p!r}.")
        for name in ("do_sample", "dialogue_prompts_as_text", "stop_at_new_turn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        if self.chat_template is not None and not isinstance(self.chat_template, bool):
            raise ValueError(
                f"`chat_template` must be True, False or None (when the tokenizer has one), got {self.chat_template!r}."
            )

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_options(cls, options: Any, **overrides: Any) -> "DecodingSettings":
        """The settings named in ``options`` (an object with attributes of the same names, e.g. the CLI's
        ``GenerateArguments``, or a dict); attributes it lacks keep their defaults; ``overrides`` win."""
        get = options.get if isinstance(options, dict) else (lambda name, default: getattr(options, name, default))
        missing = object()
        values = {}
        for f in dataclasses.fields(cls):
            value = get(f.name, missing)
            if value is not missing:
                values[f.name] = value
        values.update(overrides)
        return cls(**values)

    @classmethod
    def merge(cls, settings: Optional["DecodingSettings"] = None, **keywords: Any) -> "DecodingSettings":
        """``settings``, or settings made from ``keywords`` (the old keyword arguments; ``None`` = not given).

        Giving a knob both ways is an error naming it: which value should win would be a guess."""
        given = {name: value for name, value in keywords.items() if value is not None}
        if settings is None:
            return cls(**given)
        if not isinstance(settings, DecodingSettings):
            raise TypeError(f"`settings` must be a DecodingSettings, got {type(settings).__name__}.")
        if given:
            raise ValueError(
                f"{sorted(given)} given both as keyword arguments and in `settings`; set them in one place, e.g. "
                f"`settings=settings.replace({', '.join(f'{k}=...' for k in sorted(given))})`."
            )
        return settings

    def replace(self, **changes: Any) -> "DecodingSettings":
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------------------------------ resolving
    def decoder_kwargs(self) -> Dict[str, Any]:
        """The decoder knobs that are set, by the keyword their decoder takes (``cd_temperature`` ->
        ``temperature``)."""
        return {key: getattr(self, name) for name, key in DECODER_FIELDS.items() if getattr(self, name) is not None}

    def resolve(self, method) -> Dict[str, Any]:
        """What ``method``'s decoder runs with: its class defaults, then ``preset``, then the knobs set here
        (:func:`~hf_stackshape.core.methods.decoder_settings`; always holds the ``weight`` actually used)."""
        method = method if isinstance(method, Method) else parse_method(method)
        return decoder_settings(method, self.preset, **self.decoder_kwargs())

