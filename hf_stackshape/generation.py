"""Batched guided generation by method name: the glue that ``stackshape generate``, sweeps and the demo share.

A *method* names a decoder and a reward transform, as in the paper's tables (Wang et al., 2026):

* ``base``: the base policy alone (greedy or sampling);
* ``args`` / ``vanilla-args``: ARGS (Khanov et al., 2024) on the raw reward;
* ``srs-args``: ARGS on the Stackelberg-shaped reward; ``minmax-args``, ``meanstd-args``, ``meansoft-args``,
  ``hard-args``: the paper's baselines;
* ``cd`` / ``vanilla-cd``: Controlled Decoding (Mudgal et al., 2023) with a Q-head trained on raw rewards;
* ``srs-cd`` (and ``<transform>-cd``): CD with a Q-head trained on shaped rewards;
* ``bon``: classic best-of-N on the raw reward; ``soft-bon``: sample one of N from ``softmax(r / beta)``;
  ``srs-bon`` (and ``<transform>-bon``): the same on the shaped reward (:class:`~hf_stackshape.bon.StackelbergBestOfN`).

Everything here is a thin adapter over :class:`~hf_stackshape.guidance.args.ARGSLogitsProcessor`,
:class:`~hf_stackshape.guidance.cd.CDLogitsProcessor` and ``model.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList
from transformers.utils import logging

from .dialogue import cut_all_at_new_turn, stop_strings_kwargs
from .shaping import TRANSFORMS, get_transform

logger = logging.get_logger(__name__)

__all__ = [
    "Method",
    "parse_method",
    "METHOD_EXAMPLES",
    "format_prompts",
    "decoder_settings",
    "prompt_budget",
    "generate_responses",
    "check_generation",
]

DECODERS = ("args", "cd", "bon")
METHOD_EXAMPLES = (
    "base",
    "args",
    "srs-args",
    "minmax-args",
    "meanstd-args",
    "meansoft-args",
    "hard-args",
    "cd",
    "srs-cd",
    "bon",
    "soft-bon",
    "srs-bon",
)


@dataclass(frozen=True)
class Method:
    """A decoding method: ``decoder`` in ``{None, "args", "cd", "bon"}``, the reward ``transform`` it uses and,
    for best-of-N, the ``selection`` (``"soft"`` or ``"argmax"``)."""

    name: str
    decoder: Optional[str]
    transform: str = "raw"
    selection: Optional[str] = None

    @property
    def label(self) -> str:
        if self.decoder is None:
            return "base"
        if self.decoder == "bon":
            if self.transform == "raw":
                return "bon" if self.selection == "argmax" else "soft-bon"
            return f"{self.transform}-bon"
        prefix = "vanilla" if self.transform == "raw" else self.transform
        return f"{prefix}-{self.decoder}"

    @property
    def vanilla(self) -> str:
        """The method this one is compared with: the same decoder (and selection) on the raw reward."""
        return "soft-bon" if self.decoder == "bon" and self.selection == "soft" else str(self.decoder)


def parse_method(name: str) -> Method:
    """Parse ``"srs-args"``, ``"args"``, ``"vanilla-cd"``, ``"base"``... into a :class:`Method`."""
    text = str(name).strip().lower()
    if text in ("base", "greedy", "none", "sample"):
        return Method(text, None, "raw")
    if text in ("bon", "soft-bon"):
        return Method(text, "bon", "raw", "argmax" if text == "bon" else "soft")
    if text in DECODERS:
        return Method(text, text, "raw")
    if "-" in text:
        transform, decoder = text.rsplit("-", 1)
        if decoder in DECODERS:
            try:
                canonical = get_transform(transform).name
            except ValueError:
                canonical = None
            if canonical is not None:
                return Method(text, decoder, canonical, "soft" if decoder == "bon" else None)
    raise ValueError(
        f"Unknown method {name!r}. Use 'base', '<decoder>' or '<transform>-<decoder>' with decoder in "
        f"{list(DECODERS)} and transform in {sorted(TRANSFORMS) + ['vanilla']} (e.g. {', '.join(METHOD_EXAMPLES)})."
    )


def format_prompts(
    tokenizer, prompts: Sequence[str], chat_template: Optional[bool] = None, dialogue_as_text: bool = False
) -> List[str]:
    """The base model's input text: the chat template with a generation prompt when the tokenizer has one.

    ``dialogue_as_text=True`` leaves a prompt that already holds ``Human:`` / ``Assistant:`` turns (HH-RLHF) as
    plain text, as the authors' scripts do (:func:`hf_stackshape.dialogue.render_prompt`)."""
    from .dialogue import render_prompt

    use_chat = bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else chat_template
    if use_chat and not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the base tokenizer has no chat template.")
    return [render_prompt(tokenizer, p, bool(use_chat), dialogue_as_text)[0] for p in prompts]


#: Keyword arguments of each decoder that a method run records and a preset may set (``presets.get_preset``).
_DECODER_KEYS = {
    "args": ("k", "weight", "bound", "alpha", "beta", "safeguards", "cap", "rm_input"),
    "cd": ("k", "weight", "temperature"),
    "bon": ("beta", "bound", "alpha"),
}


def _decoder_class(decoder: str):
    if decoder == "args":
        from .guidance.args import ARGSLogitsProcessor

        return ARGSLogitsProcessor
    if decoder == "cd":
        from .guidance.cd import CDLogitsProcessor

        return CDLogitsProcessor
    from .bon import StackelbergBestOfN

    return StackelbergBestOfN


def decoder_settings(method, preset: Optional[str] = None, **explicit) -> Dict[str, Any]:
    """The settings ``method``'s decoder runs with: its class defaults, then ``preset``, then ``explicit``.

    ``explicit`` values that are ``None`` mean "not given". The result always holds ``weight``, the guidance
    weight ``lambda = 1/beta`` actually used (``0.0`` for the base policy; ``1/beta`` for best-of-N), so a
    record never says ``null`` where a default applied. ARGS's ``beta`` defaults to ``1 / weight`` (the
    authors' script), and is recorded resolved.

    Args:
        method (`str` or [`Method`]): see :func:`parse_method`.
        preset (`str`, *optional*): a preset of :mod:`hf_stackshape.presets` (e.g. ``"paper"``); its component
            named after the decoder (``args``, ``cd``) fills what ``explicit`` leaves unset.
        explicit: ``k``, ``weight``, ``bound``, ``alpha``, ``beta``, ``temperature`` (CD), ...

    Examples:

    ```python
    >>> from hf_stackshape.generation import decoder_settings
    >>> decoder_settings("srs-args")["weight"], decoder_settings("cd")["weight"]
    (0.5, 1.5)
    >>> decoder_settings("srs-args", preset="paper", weight=2.0)["rm_input"]
    'raw'
    ```
    """
    import inspect

    method = method if isinstance(method, Method) else parse_method(method)
    if method.decoder is None:
        return {"weight": 0.0}
    keys = _DECODER_KEYS[method.decoder]
    parameters = inspect.signature(_decoder_class(method.decoder).__init__).parameters
    settings = {key: parameters[key].default for key in keys if key in parameters}
    if preset is not None:
        from .presets import get_preset

        component = get_preset(preset, method.decoder) if method.decoder in ("args", "cd") else {}
        settings.update({key: value for key, value in component.items() if key in keys})
    weight = explicit.pop("weight", None)
    settings.update({key: value for key, value in explicit.items() if value is not None and key in keys})
    if method.decoder == "bon":
        if weight is not None:
            settings["beta"] = float("inf") if weight == 0 else 1.0 / float(weight)
        beta = settings["beta"]
        settings["weight"] = 0.0 if beta == float("inf") else 1.0 / float(beta)
        return settings
    if weight is not None:
        settings["weight"] = float(weight)
    if method.decoder == "args" and settings.get("beta") is None and settings["weight"] > 0:
        settings["beta"] = 1.0 / settings["weight"]
    return settings


def _build_processor(method: Method, settings: Dict[str, Any], *, reward, qheads, tokenizer, model, temperature):
    settings = {key: value for key, value in settings.items() if key in _DECODER_KEYS.get(method.decoder, ())}
    if method.decoder == "args":
        from .guidance.args import ARGSLogitsProcessor

        if reward is None:
            raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
        # With sampling, the processor owns the temperature (generate's would also divide the guidance term).
        return ARGSLogitsProcessor(reward, transform=method.transform, tokenizer=tokenizer, temperature=temperature, **settings)
    if method.decoder == "cd":
        from .guidance.cd import CDLogitsProcessor

        qhead = (qheads or {}).get(method.transform)
        if qhead is None:
            raise ValueError(
                f"Method {method.name!r} needs a Q-head trained on the {method.transform!r} transform; "
                f"have {sorted(qheads or {})}. Train one with `stackshape train-qhead --transform {method.transform}`."
            )
        return CDLogitsProcessor(qhead, base_model=model, tokenizer=tokenizer, **settings)
    return None


def prompt_budget(model, max_new_tokens: int, max_prompt_length: Optional[int] = None) -> Optional[int]:
    """Prompt tokens that fit: ``max_prompt_length`` or the model's context minus ``max_new_tokens``.

    Longer prompts are truncated from the left (the end of the prompt, where the question usually is,
    survives), with a warning: the calibrator's policy. Raises when no room is left for a prompt.
    """
    if max_prompt_length is not None:
        if int(max_prompt_length) < 1:
            raise ValueError(f"`max_prompt_length` must be >= 1, got {max_prompt_length!r}.")
        return int(max_prompt_length)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    context = getattr(config, "max_position_embeddings", None)
    if not context:
        return None
    budget = int(context) - int(max_new_tokens)
    if budget < 1:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's context of {context} "
            "tokens; lower max_new_tokens."
        )
    return budget


def _global_indices(prompts, first_index: int, indices) -> List[int]:
    """Each prompt's index in the whole job: ``indices`` as given (checked), else ``first_index, first_index + 1...``."""
    if indices is None:
        return list(range(int(first_index), int(first_index) + len(prompts)))
    indices = [int(i) for i in indices]
    if len(indices) != len(prompts):
        raise ValueError(f"`indices` has {len(indices)} entries for {len(prompts)} prompts; give one global index per prompt.")
    if first_index:
        raise ValueError("Pass either `indices` or `first_index`, not both.")
    return indices


def _encode_prompts(tokenizer, texts: Sequence[str], budget: Optional[int], indices):
    """Left-padded, left-truncated batch encoding; warns once per prompt that was cut. ``indices``: the prompts'
    global indices (for the warning), or the index of the first one."""
    if isinstance(indices, int):
        indices = range(indices, indices + len(texts))
    if budget is not None:
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        for i, n in enumerate(lengths):
            if n > budget:
                logger.warning(
                    "Prompt %d is %d tokens, more than the %d that fit before the response; its first %d tokens "
                    "are dropped (left truncation).", indices[i], n, budget, n - budget,
                )
    old = getattr(tokenizer, "truncation_side", "right")
    tokenizer.truncation_side = "left"
    try:
        return tokenizer(
            list(texts), return_tensors="pt", padding=True, add_special_tokens=False,
            truncation=budget is not None, max_length=budget,
        )
    finally:
        tokenizer.truncation_side = old


@torch.no_grad()
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    method="base",
    reward=None,
    qheads: Optional[Mapping[str, object]] = None,
    weight: Optional[float] = None,
    k: Optional[int] = None,
    bound: Optional[float] = None,
    alpha: Optional[float] = None,
    beta: Optional[float] = None,
    cd_temperature: Optional[float] = None,
    thresholds: Optional[torch.Tensor] = None,
    num_samples: int = 8,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat_template: Optional[bool] = None,
    show_progress: bool = True,
    on_batch=None,
    preset: Optional[str] = None,
    max_prompt_length: Optional[int] = None,
    first_index: int = 0,
    indices: Optional[Sequence[int]] = None,
    dialogue_prompts_as_text: bool = False,
    stop_at_new_turn: bool = False,
) -> List[str]:
    """Generate one response per prompt with ``method``, in batches (left padding), and decode them.

    Args:
        model, tokenizer: the base policy (a causal LM) and its tokenizer.
        prompts (`list[str]`): raw user prompts (the chat template is applied here when the tokenizer has one).
        method (`str` or [`Method`]): see :func:`parse_method`.
        reward: the guiding reward for ARGS methods (any :mod:`hf_stackshape.rewards` adapter).
        qheads (`dict[str, QHeadModel]`): Q-heads for CD methods, keyed by the transform they were trained on.
        weight (`float`, *optional*): guidance weight ``lambda = 1/beta`` (ARGS default 0.5, CD default 1.5).
        k, bound, alpha, beta, cd_temperature (*optional*): decoder settings; unset ones come from ``preset``,
            then from the decoder's defaults (see :func:`decoder_settings`).
        thresholds (`torch.Tensor`, *optional*): per-prompt ``m*(x)`` for ARGS SRS with calibrated thresholds.
        num_samples (`int`, *optional*, defaults to 8): ``N`` for best-of-N methods, whose ``beta`` is
            ``1 / weight`` (weight 0: uniform choice) and whose samples follow the model's ``generation_config``
            (``temperature`` / ``top_p`` override it only with ``do_sample=True``).
        max_new_tokens (`int`, *optional*, defaults to 128): the authors' ARGS length.
        do_sample, temperature, top_p, seed: sampling (greedy by default). With ARGS the temperature goes to the
            processor (``score / T + weight * reward``) instead of ``generate``, which would also divide the
            guidance term; CD applies its own ``cd_temperature`` and samples at generate's temperature 1.
        on_batch (`Callable[[int, list[str]], None]`, *optional*): called after each batch with the index of its
            first prompt and its responses (used to write results as they come, for resumable runs).
        preset (`str`, *optional*): e.g. ``"paper"``: the authors' decoder settings where none are given.
        max_prompt_length (`int`, *optional*): prompt token budget (default: the model's context minus
            ``max_new_tokens``); longer prompts lose their start, with a warning.
        first_index (`int`, *optional*, defaults to 0): index of ``prompts[0]`` in the whole job (the prompts
            are then ``first_index, first_index + 1, ...``).
        indices (`list[int]`, *optional*): the global index of each prompt in the whole job (instead of
            ``first_index``), e.g. one rank's share of a multi-process run. Every random draw of a prompt
            (sampling, best-of-N's samples and selection) comes from a generator keyed by ``(seed, its index)``
            (:mod:`hf_stackshape.sampling`), so results do not depend on the batch size, on a resume point or on
            the world size.
        dialogue_prompts_as_text (`bool`, *optional*, defaults to `False`): no chat template on a prompt that
            already holds ``Human:`` / ``Assistant:`` turns (:mod:`hf_stackshape.dialogue`; the paper preset).
        stop_at_new_turn (`bool`, *optional*, defaults to `False`): stop a response where a new ``Human:`` /
            ``User:`` turn begins and cut that turn off (a base model continuing an HH dialogue writes one).

    Returns:
        `list[str]`: the decoded responses (special tokens skipped), in prompt order.
    """
    method = method if isinstance(method, Method) else parse_method(method)
    indices = _global_indices(prompts, first_index, indices)
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
    if int(max_new_tokens) < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens!r}.")
    if method.decoder == "bon":
        settings = decoder_settings(method, preset, weight=weight, beta=beta, bound=bound, alpha=alpha)
        return _best_of_n(model, tokenizer, prompts, method, reward, settings, num_samples, max_new_tokens,
                          batch_size, do_sample, temperature, top_p, seed, chat_template, show_progress, on_batch,
                          indices, dialogue_prompts_as_text, stop_at_new_turn)
    settings = decoder_settings(
        method, preset, weight=weight, k=k, bound=bound, alpha=alpha, beta=beta, temperature=cd_temperature
    )
    processor = _build_processor(
        method,
        settings,
        reward=reward,
        qheads=qheads,
        tokenizer=tokenizer,
        model=model,
        temperature=float(temperature) if do_sample else 1.0,
    )
    budget = prompt_budget(model, max_new_tokens, max_prompt_length)
    texts = format_prompts(tokenizer, prompts, chat_template, dialogue_as_text=dialogue_prompts_as_text)
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: List[str] = []
    try:
        starts = range(0, len(texts), int(batch_size))
        for start in tqdm(starts, desc=f"generate {method.label}", disable=not show_progress, leave=False):
            batch_prompts = list(prompts[start : start + int(batch_size)])
            batch_indices = indices[start : start + len(batch_prompts)]
            enc = _encode_prompts(tokenizer, texts[start : start + int(batch_size)], budget, batch_indices)
            enc = enc.to(device)
            processors = LogitsProcessorList()
            if processor is not None:
                if method.decoder == "args":
                    batch_thresholds = None if thresholds is None else thresholds[start : start + len(batch_prompts)]
                    processor.set_prompt(enc, prompts=batch_prompts, thresholds=batch_thresholds)
                elif hasattr(processor, "set_prompt"):
                    processor.set_prompt(enc)
                processors.append(processor)
            gen_kwargs = dict(
                max_new_tokens=int(max_new_tokens),
                do_sample=bool(do_sample),
                pad_token_id=tokenizer.pad_token_id,
                logits_processor=processors,
                **stop_strings_kwargs(tokenizer, stop_at_new_turn),
            )
            if do_sample:
                # Each prompt draws from its own generator (keyed by its global index), as the last processor of
                # a greedy generate; a guided decoder owns the temperature (see the docstring).
                from .sampling import KeyedSampler, draw_key

                processors.append(KeyedSampler.expand(
                    [draw_key(seed, i, 0, "sample") for i in batch_indices], model.generation_config,
                    temperature=1.0 if processor is not None else temperature, top_p=top_p,
                ))
                gen_kwargs["do_sample"] = False
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(**enc, **gen_kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            decoded = cut_all_at_new_turn(tokenizer.batch_decode(new, skip_special_tokens=True), stop_at_new_turn)
            batch_out = [t.strip() for t in decoded]
            outputs.extend(batch_out)
            if on_batch is not None:
                on_batch(start, batch_out)
    finally:
        tokenizer.padding_side = old_side
        if processor is not None:
            processor.close()  # frees the reward model's cache and removes CD's hooks on the base model
    return outputs


def _best_of_n(model, tokenizer, prompts, method, reward, settings, num_samples, max_new_tokens, batch_size,
               do_sample, temperature, top_p, seed, chat_template, show_progress, on_batch, indices,
               dialogue_prompts_as_text=False, stop_at_new_turn=False) -> List[str]:
    """Best-of-N methods through :class:`~hf_stackshape.bon.StackelbergBestOfN` (``beta = 1 / weight``)."""
    from .bon import StackelbergBestOfN

    if reward is None:
        raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
    options = {key: settings[key] for key in ("beta", "bound", "alpha")}
    if do_sample:
        options.update(temperature=temperature, top_p=top_p)
    bon = StackelbergBestOfN.from_method(
        method, model, tokenizer, reward, n=int(num_samples), max_new_tokens=int(max_new_tokens),
        batch_size=int(batch_size), seed=int(seed), chat_template=chat_template, show_progress=show_progress,
        dialogue_prompts_as_text=dialogue_prompts_as_text, stop_at_new_turn=stop_at_new_turn, **options,
    )
    return bon.generate(list(prompts), on_batch=on_batch, indices=indices).responses


def check_generation(
    model,
    tokenizer,
    method="base",
    reward=None,
    qheads: Optional[Mapping[str, object]] = None,
    weight: Optional[float] = None,
    k: Optional[int] = None,
    bound: Optional[float] = None,
    alpha: Optional[float] = None,
    beta: Optional[float] = None,
    cd_temperature: Optional[float] = None,
    num_samples: int = 8,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    preset: Optional[str] = None,
    max_prompt_length: Optional[int] = None,
) -> None:
    """Validate the settings of :func:`generate_responses` without generating anything: build the method's
    decoder (the ARGS / CD logits processor, or the best-of-N) with them, then release it.

    A resumable command calls it before it opens its run (:func:`hf_stackshape.runs.open_run`), so that a bad
    value (``--weight -1``, ``--weight nan``, ``--k 0``...) fails before any manifest or result is written and
    the corrected command starts cleanly. Raises the decoder's own ``ValueError`` naming the value.
    """
    from .guidance._checks import check_temperature

    method = method if isinstance(method, Method) else parse_method(method)
    for name, value in (("batch_size", batch_size), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    if do_sample:
        check_temperature(temperature)
        if not (0.0 < float(top_p) <= 1.0):
            raise ValueError(f"`top_p` must be in (0, 1], got {top_p!r}.")
    prompt_budget(model, max_new_tokens, max_prompt_length)
    if method.decoder == "bon":
        from .bon import StackelbergBestOfN

        if reward is None:
            raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
        settings = decoder_settings(method, preset, weight=weight, beta=beta, bound=bound, alpha=alpha)
        options = {key: settings[key] for key in ("beta", "bound", "alpha")}
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        StackelbergBestOfN.from_method(
            method, model, tokenizer, reward, n=int(num_samples), max_new_tokens=int(max_new_tokens),
            batch_size=int(batch_size), seed=int(seed), show_progress=False, **options,
        )
        return
    settings = decoder_settings(
        method, preset, weight=weight, k=k, bound=bound, alpha=alpha, beta=beta, temperature=cd_temperature
    )
    processor = _build_processor(
        method, settings, reward=reward, qheads=qheads, tokenizer=tokenizer, model=model,
        temperature=float(temperature) if do_sample else 1.0,
    )
    if processor is not None:
        processor.close()
