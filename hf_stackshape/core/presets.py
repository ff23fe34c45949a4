"""Named presets: every setting that reproduces the authors' scripts in one place.

The ``paper`` preset is what Wang et al. (2026, arXiv 2602.02572) ran, read off their public research
scripts (ARGS after Khanov et al., 2024; CD after Mudgal et al., 2023). Each component takes it by name
(``ARGSLogitsProcessor.from_preset("paper", ...)``, ``CalibrationConfig.from_preset``, ``--preset paper`` on
the command line), so a reproduction never depends on remembering a dozen flags. Our own defaults may
differ where we have a reason; :data:`PAPER_VS_DEFAULTS` lists each difference and why (the README's table).

This module is plain data: no model, tokenizer or I/O, so every component can import it cheaply.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Iterable, List, Optional

__all__ = [
    "PRESETS",
    "PRESET_COMPONENTS",
    "get_preset",
    "preset_settings",
    "FromPresetMixin",
    "UnknownSettingsError",
    "PAPER_VS_DEFAULTS",
    "paper_vs_defaults_markdown",
]

#: Components a preset configures; each maps to keyword arguments of that component.
PRESET_COMPONENTS = ("args", "cd", "calibration", "qhead_model", "qhead_trainer", "generation", "metrics", "judge")

_PAPER: Dict[str, Dict[str, Any]] = {
    # ARGS (their new_argsearch_*.py + configs/args_soft_hh.jsonl): top-10, lambda 0.5, greedy, B = 12,
    # alpha = 1.5, per-step threshold over the k candidates weighted by softmax(top-k logits); the RM reads
    # the raw token ids prompt + response + candidate, no chat template.
    "args": {
        "k": 10,
        "weight": 0.5,
        "bound": 12.0,
        "alpha": 1.5,
        "safeguards": "args",
        "rm_input": "raw",
        "cap": None,
    },
    # CD decoding (their util_decoding): top-10 of the base log-probs at temperature 0.7, logp + 1.5 * V, greedy.
    "cd": {
        "k": 10,
        "weight": 1.5,
        "temperature": 0.7,
    },
    # Offline rollouts for m*(x) and for the value function: N = 10, temperature 0.7, top-p 0.9, top-k from the
    # model's generation_config (None = inherit), 128 new tokens, the chat template except on a prompt that
    # already holds "Human:"/"Assistant:" turns (HH-RLHF, fed as text), each rollout cut at the next "Human:" /
    # "User:" turn (their --stop_on_human, in their README command); B = 15, beta = 0.667 with CD safeguards
    # (exponent cap 2).
    "calibration": {
        "num_samples": 10,
        "max_new_tokens": 128,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": None,
        "beta": 0.667,
        "bound": 15.0,
        "safeguards": "cd",
        "chat_template": True,
        "dialogue_prompts_as_text": True,
        "stop_at_new_turn": True,
    },
    # Their value function: H -> 8192 -> H -> 1 MLP with tanh, orthogonal init (gain 1), on the frozen base
    # model's last hidden state.
    "qhead_model": {
        "head_type": "value",
        "head_hidden_size": 8192,
        "init": "orthogonal",
    },
    # Their train_value_function.py: MSE(V_last, shaped reward) + 1.0 * MSE(V_t, V_{t+1}); Adam, constant lr
    # 1e-4, batch 64, 15 epochs, grad-norm clip 1, early stopping on validation MSE with patience 5.
    "qhead_trainer": {
        "transform": "srs",
        "bound": 15.0,
        "alpha": 1.0,
        "beta": 0.667,
        "safeguards": "cd",
        "loss_type": "consistency",
        "consistency_weight": 1.0,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "weight_decay": 0.0,
        "per_device_train_batch_size": 64,
        "num_train_epochs": 15,
        "max_grad_norm": 1.0,
        "early_stopping_patience": 5,
        # Their data: 5% of the *samples* held out at random (random_split, seeded) for early stopping; the
        # value reads the full prompt and up to 128 response tokens; HH-format prompts as text, as rolled out.
        "validation_split": 0.05,
        "validation_split_by": "sample",
        "max_length": None,
        "max_response_length": 128,
        "dialogue_prompts_as_text": True,
        # apply_chat_template is not set: the head reads prompts as the calibration formatted them (the
        # paper's calibration uses the chat template), so the two cannot disagree.
    },
    # Generation length and decoding of every method's evaluation run; a prompt that already holds HH-RLHF turns
    # is fed as text (no chat template), as in their rollouts.
    "generation": {
        "max_new_tokens": 128,
        "do_sample": False,
        "dialogue_prompts_as_text": True,
    },
    # Their metrics.py: rep_n = 1 - |unique n-grams| / (|n-grams| + 1) on NLTK-style word tokens, responses cut at
    # "\n\nHuman:", diversity = prod_{n=2..4} (1 - rep_n) (scores.diversity_scores(definition=...)). Their coherence
    # embedder is SimCSE (SentenceEmbedder("simcse")), left out here because it needs the Hub.
    "metrics": {
        "diversity": "paper",
    },
    # Their gpt4-eval.py: 1-10 scores for both answers, order swapped at random, temperature 0; the prompt says
    # not to penalise a response cut at the length limit and to disregard earlier turns; an API error or a
    # parse failure counts as a tie. Their parser: the first line split on single spaces, any two floats (out of
    # range scores decide, NaN counts nowhere); answers stripped of blank space (their extract_answer).
    "judge": {
        "protocol": "paper",
        "temperature": 0.0,
        "max_tokens": 2048,
        "api_error": "tie",
        "score_parser": "paper",
        "strip_answers": True,
    },
}

PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {"paper": _PAPER}


def get_preset(name: str, component: str) -> Dict[str, Any]:
    """The keyword arguments preset ``name`` sets for ``component`` (a fresh copy, safe to modify).

    Args:
        name (`str`): a preset name; today ``"paper"`` (the authors' scripts).
        component (`str`): one of :data:`PRESET_COMPONENTS`.

    Raises:
        ValueError: on an unknown preset or component, naming the valid ones.
    """
    key = str(name).lower()
    if key not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    if component not in PRESET_COMPONENTS:
        raise ValueError(f"Unknown preset component {component!r}; choose one of {list(PRESET_COMPONENTS)}.")
    return copy.deepcopy(PRESETS[key].get(component, {}))


class UnknownSettingsError(ValueError, TypeError):
    """Settings a component does not take. A ``ValueError`` (bad input) that is also a ``TypeError``, what a
    constructor raises on an unexpected keyword, so code that caught either keeps working."""


def preset_settings(
    name: str,
    component: str,
    overrides: Optional[Dict[str, Any]] = None,
    accepted: Optional[Iterable[str]] = None,
    *,
    what: str = "",
    owner: str = "",
) -> Dict[str, Any]:
    """Preset ``name``'s keyword arguments for ``component`` with ``overrides`` on top: the one mechanism behind
    every ``from_preset`` (:class:`FromPresetMixin`).

    Args:
        name, component: as :func:`get_preset`.
        overrides (`dict`, *optional*): explicit settings; they win over the preset.
        accepted (*optional*): the setting names the component takes. When given, an override outside them is an
            :class:`UnknownSettingsError` naming every such key, and preset keys outside them are left out. When
            ``None`` (a constructor with ``**kwargs``, e.g. a ``PretrainedConfig``), the constructor checks.
        what, owner: how the error names the settings and where to look (``"Unknown {what} settings [...]; see
            {owner}."``).

    Examples:

    ```python
    >>> from hf_stackshape.core.presets import preset_settings
    >>> preset_settings("paper", "cd", {"k": 5})
    {'k': 5, 'weight': 1.5, 'temperature': 0.7}
    ```
    """
    overrides = dict(overrides or {})
    values = get_preset(name, component)
    if accepted is not None:
        accepted = set(accepted)
        unknown = sorted(set(overrides) - accepted)
        if unknown:
            raise UnknownSettingsError(f"Unknown {what or owner} settings {unknown}; see {owner or what}.")
        values = {key: value for key, value in values.items() if key in accepted}
    values.update(overrides)
    return values


class FromPresetMixin:
    """``from_preset(name, *args, **overrides)`` for a class configured by one preset component.

    A class sets ``_preset_component`` (a key of :data:`PRESET_COMPONENTS`) and, optionally,
    ``_preset_settings_name`` (how an unknown-settings error names its settings; default the class name).
    The settings it takes are its constructor's keyword parameters (a dataclass's fields); a constructor with
    ``**kwargs`` (a ``PretrainedConfig``) checks unknown keys itself.
    """

    _preset_component: str = ""
    _preset_settings_name: Optional[str] = None

    @classmethod
    def preset_setting_names(cls) -> Optional[frozenset]:
        """The names ``from_preset`` accepts as overrides (``None``: whatever the constructor accepts)."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return frozenset(p.name for p in parameters if p.kind in kinds)

    @classmethod
    def from_preset(cls, name: str = "paper", *args: Any, **overrides: Any):
        """An instance with preset ``name``'s settings (:func:`get_preset`; ``"paper"``: the authors' scripts,
        Wang et al., 2026), ``overrides`` on top. Positional ``args`` go to the constructor first (e.g. a
        processor's reward model or Q-head). An override the class does not take raises
        :class:`UnknownSettingsError` naming it."""
        if not cls._preset_component:
            raise TypeError(f"{cls.__name__} names no preset component (`_preset_component`).")
        renames = getattr(cls, "RENAMED_FIELDS", None)
        if renames:  # deprecated field names (utils.deprecation) mean their new ones
            from ..utils.deprecation import move_renamed

            move_renamed(overrides, renames, cls.__name__)
        kwargs = preset_settings(
            name, cls._preset_component, overrides, cls.preset_setting_names(),
            what=cls._preset_settings_name or cls.__name__, owner=cls.__name__,
        )
        return cls(*args, **kwargs)


#: "setting | paper (authors' scripts) | our default | why": the README's table, kept next to the preset.
PAPER_VS_DEFAULTS: List[Dict[str, str]] = [
    {
        "setting": "What the ARGS reward model reads",
        "paper": "raw token ids prompt + response + candidate",
        "ours": "the RM's chat template when it has one",
        "why": "chat RMs (Skywork, ...) are trained on their template; raw ids are out of distribution for them",
    },
    {
        "setting": "Stop at EOS (ARGS)",
        "paper": "ARGS: no, always 128 new tokens (their CD decoding and their rollouts stop at EOS)",
        "ours": "yes, for every method",
        "why": "text after EOS is not part of the answer; batching pads finished rows",
    },
    {
        "setting": "HH-format prompts (`Human:` / `Assistant:` turns as text)",
        "paper": "fed as text, no chat template (rollouts, value head, decoding); other prompts get the chat template",
        "ours": "the chat template on every prompt; the preset turns `dialogue_prompts_as_text` on",
        "why": "one rule for every dataset; turn it on (`--dialogue_prompts_as_text`) for HH-RLHF data",
    },
    {
        "setting": "Stop at a new user turn",
        "paper": "rollouts cut at the first new `Human:` / `User:` turn (`--stop_on_human`)",
        "ours": "off (`stop_at_new_turn`); on in the preset's calibration",
        "why": "with a chat template a turn ends at EOS; for HH-format text prompts turn it on "
               "(`--stop_at_new_turn`, also for generate and best-of-N)",
    },
    {
        "setting": "Value head validation split",
        "paper": "5% of the samples at random (`random_split`, seeded)",
        "ours": "10% of the prompts, all rollouts of a held-out prompt together (`validation_split_by=prompt`)",
        "why": "held-out prompts measure how the head generalises to prompts it has not seen, which is what CD meets; "
               "a sample split leaks each prompt's other rollouts into training",
    },
    {
        "setting": "Value head input length",
        "paper": "the full prompt + up to 128 response tokens",
        "ours": "512 prompt + response tokens, the prompt cut on the left (`max_length`)",
        "why": "bounds memory on long prompts; `--max_length` unset with `--max_response_length 128` gives theirs",
    },
    {
        "setting": "ARGS threshold solve",
        "paper": "bisection in float16 on GPU; it picked another token than the exact threshold in 9 of 3000 "
                 "float16 draws",
        "ours": "exact solve in the rewards' precision or better (half-precision rewards are up-cast to float32 first)",
        "why": "exact, so no draw depends on rounding; the float16 differences are rounding, not the method (kept in the preset too)",
    },
    {
        "setting": "CD head",
        "paper": "value MLP H -> 8192 -> H -> 1, one forward per candidate",
        "ours": "same MLP (width 8192 in the preset), all candidates of all rows in one cached forward",
        "why": "same function, k times fewer forwards",
    },
    {
        "setting": "Coherence embedder",
        "paper": "SimCSE sup-simcse-bert-base-uncased, pooler output (`SentenceEmbedder(\"simcse\")`)",
        "ours": "the bundled all-MiniLM-L6-v2, mean pooling",
        "why": "works offline with nothing to download; the cosine of prompt and response is the same metric",
    },
    {
        "setting": "Judge reply budget (max_tokens)",
        "paper": "2048",
        "ours": "256",
        "why": "the verdict is the reply's first line; the explanation after it is not used, so a short budget costs less",
    },
    {
        "setting": "Judge reply parsing",
        "paper": "first line split on single spaces, any two floats: `0 5`, `11 3`, `-1 4`, `inf 3` decide, `nan nan` "
                 "counts nowhere; `8, 7`, `**8 7**`, `8  7`, a leading blank line, a trailing space or a tab are ties",
        "ours": "two scores in 1-10 on the first non-empty line; commas, markdown and extra blank space allowed; "
                "anything else a tie (`--judge_score_parser ours`)",
        "why": "a score outside the range the prompt asks for is not a verdict, and formatting says nothing about the "
               "answers (the two differed on 11 of 24 sample replies)",
    },
    {
        "setting": "Judge answers",
        "paper": "blank space (and a copy of the prompt) stripped (`--judge_strip_answers`)",
        "ours": "as generated (`generate` already strips blank space)",
        "why": "the judge sees exactly what was scored by the other metrics",
    },
    {
        "setting": "Judge prompt wording",
        "paper": "their `gpt4-eval.py` system and user prompts, in the authors' repository",
        "ours": "our own wording of the same protocol (1-10 scores, cut-off answers and earlier turns not penalised)",
        "why": "we do not copy their text; pass it with `--judge_system_prompt_file` / `--judge_template_file`",
    },
]


def paper_vs_defaults_markdown() -> str:
    """:data:`PAPER_VS_DEFAULTS` as the README's markdown table (``tests/test_readme.py`` checks the README holds it)."""
    lines = ["| setting | paper (authors' scripts) | our default | why |", "|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['paper']} | {r['ours']} | {r['why']} |" for r in PAPER_VS_DEFAULTS]
    return "\n".join(lines) + "\n"
