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

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList
from transformers.utils import logging

from ..core.decoding import DecodingSettings
from ..core.methods import DECODER_KEYS, METHOD_EXAMPLES, Method, decoder_settings, parse_method
from ..utils.dialogue import cut_all_at_new_turn, stop_strings_kwargs
from ..utils.prompts import encode_prompts, format_prompts, global_indices, prompt_budget

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
    "DecodingSettings",
    "GenerationPlan",
    # re-exported from the method registry and the prompt encoder, where they live
    "DECODER_KEYS",
    "encode_prompts",
    "global_indices",
]


def _build_processor(method: Method, settings: Dict[str, Any], *, reward, qheads, tokenizer, model, temperature):
    settings = {key: value for key, value in settings.items() if key in DECODER_KEYS.get(method.decoder, ())}
    if method.decoder == "args":
        from ..guidance.args import ARGSLogitsProcessor

        if reward is None:
            raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
        # With sampling, the processor owns the temperature (generate's would also divide the guidance term).
        return ARGSLogitsProcessor(reward, transform=method.transform, tokenizer=tokenizer, temperature=temperature, **settings)
    if method.decoder == "cd":
        from ..guidance.cd import CDLogitsProcessor

        qhead = (qheads or {}).get(method.transform)
        if qhead is None:
            raise ValueError(
                f"Method {method.name!r} needs a Q-head trained on the {method.transform!r} transform; "
                f"have {sorted(qheads or {})}. Train one with `stackshape train-qhead --transform {method.transform}`."
            )
        return CDLogitsProcessor(qhead, base_model=model, tokenizer=tokenizer, **settings)
    return None


#: The keyword arguments of :func:`generate_responses` that are :class:`DecodingSettings` fields.
_SETTING_KEYWORDS = tuple(f.name for f in dataclasses.fields(DecodingSettings))


@dataclass
class GenerationPlan:
    """A method's decoder, built with its settings: the ARGS / CD ``processor`` (``None`` for the base policy)
    or the best-of-N ``bon``, and ``decoder``, the settings it resolved to (:meth:`DecodingSettings.resolve`)."""

    model: Any
    tokenizer: Any
    method: Method
    settings: DecodingSettings
    decoder: Dict[str, Any]
    processor: Any = None
    bon: Any = None

    def close(self) -> None:
        """Free the processor's caches and hooks (the reward model's cache, CD's hooks on the base model)."""
        if self.processor is not None:
            self.processor.close()


def _plan(model, tokenizer, method, settings: DecodingSettings, *, reward=None, qheads=None) -> GenerationPlan:
    """Build ``method``'s decoder with ``settings``; raises the decoder's own ``ValueError`` on a bad value."""
    method = method if isinstance(method, Method) else parse_method(method)
    decoder = settings.resolve(method)
    plan = GenerationPlan(model, tokenizer, method, settings, decoder)
    if method.decoder == "bon":
        plan.bon = _build_best_of_n(method, decoder, settings, reward=reward, model=model, tokenizer=tokenizer)
    else:
        plan.processor = _build_processor(
            method, decoder, reward=reward, qheads=qheads, tokenizer=tokenizer, model=model,
            temperature=float(settings.temperature) if settings.do_sample else 1.0,
        )
    return plan


def _build_best_of_n(method: Method, decoder: Dict[str, Any], settings: DecodingSettings, *, reward, model, tokenizer,
                     show_progress: bool = True):
    """Best-of-N methods through :class:`~hf_stackshape.bon.StackelbergBestOfN` (``beta = 1 / weight``)."""
    from ..bon import StackelbergBestOfN

    if reward is None:
        raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
    options = {key: decoder[key] for key in ("beta", "bound", "alpha")}
    if settings.do_sample:
        options.update(temperature=settings.temperature, top_p=settings.top_p)
    return StackelbergBestOfN.from_method(
        method, model, tokenizer, reward, num_samples=int(settings.num_samples),
        max_new_tokens=int(settings.max_new_tokens), batch_size=int(settings.batch_size), seed=int(settings.seed), chat_template=settings.chat_template,
        show_progress=show_progress, dialogue_prompts_as_text=settings.dialogue_prompts_as_text,
        stop_at_new_turn=settings.stop_at_new_turn, **options,
    )


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
    num_samples: Optional[int] = None,
    max_new_tokens: Optional[int] = None,
    batch_size: Optional[int] = None,
    do_sample: Optional[bool] = None,
    temperature: Optional[float] = None,
    top_p: Optional[float] = None,
    seed: Optional[int] = None,
    chat_template: Optional[bool] = None,
    show_progress: bool = True,
    on_batch=None,
    preset: Optional[str] = None,
    max_prompt_length: Optional[int] = None,
    first_index: int = 0,
    indices: Optional[Sequence[int]] = None,
    dialogue_prompts_as_text: Optional[bool] = None,
    stop_at_new_turn: Optional[bool] = None,
    settings: Optional[DecodingSettings] = None,
) -> List[str]:
    """Generate one response per prompt with ``method``, in batches (left padding), and decode them.

    Every setting is a field of ``settings`` (:class:`~hf_stackshape.core.decoding.DecodingSettings`); the keyword
    arguments of the same names still work (``None``: not given, the settings' default), but not together with
    ``settings``. The work is two steps: the method's decoder is built once with the settings (:func:`_plan`,
    which :func:`check_generation` also runs), then run over the prompts in batches (:func:`_run`).

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
            (:mod:`hf_stackshape.utils.sampling`), so results do not depend on the batch size, on a resume point or on
            the world size.
        dialogue_prompts_as_text (`bool`, *optional*, defaults to `False`): no chat template on a prompt that
            already holds ``Human:`` / ``Assistant:`` turns (:mod:`hf_stackshape.utils.dialogue`; the paper preset).
        stop_at_new_turn (`bool`, *optional*, defaults to `False`): stop a response where a new ``Human:`` /
            ``User:`` turn begins and cut that turn off (a base model continuing an HH dialogue writes one).
        chat_template (`bool`, *optional*): wrap prompts in the tokenizer's chat template (default: when it has one).
        settings ([`DecodingSettings`], *optional*): all of the settings above in one typed object.

    Returns:
        `list[str]`: the decoded responses (special tokens skipped), in prompt order.
    """
    method = method if isinstance(method, Method) else parse_method(method)
    indices = global_indices(prompts, first_index, indices)
    keywords = {name: value for name, value in locals().items() if name in _SETTING_KEYWORDS}
    settings = DecodingSettings.merge(settings, **keywords)
    plan = _plan(model, tokenizer, method, settings, reward=reward, qheads=qheads)
    return _run(plan, prompts, indices, thresholds=thresholds, on_batch=on_batch, show_progress=show_progress)


def _run(plan: GenerationPlan, prompts: Sequence[str], indices: List[int], *, thresholds=None, on_batch=None,
         show_progress: bool = True) -> List[str]:
    """Run a plan over ``prompts`` (global ``indices``) in batches, calling ``on_batch`` after each; closes the
    plan's processor at the end."""
    if plan.bon is not None:
        plan.bon.show_progress = show_progress
        return plan.bon.generate(list(prompts), on_batch=on_batch, indices=indices).responses
    model, tokenizer, method, processor = plan.model, plan.tokenizer, plan.method, plan.processor
    s = plan.settings
    batch_size, max_new_tokens, max_prompt_length, seed = s.batch_size, s.max_new_tokens, s.max_prompt_length, s.seed
    do_sample, temperature, top_p, chat_template = s.do_sample, s.temperature, s.top_p, s.chat_template
    dialogue_prompts_as_text, stop_at_new_turn = s.dialogue_prompts_as_text, s.stop_at_new_turn
    budget = prompt_budget(model, max_new_tokens, max_prompt_length)
    texts = format_prompts(tokenizer, prompts, chat_template, dialogue_as_text=dialogue_prompts_as_text)
    device = next(model.parameters()).device
    outputs: List[str] = []
    try:
        starts = range(0, len(texts), int(batch_size))
        for start in tqdm(starts, desc=f"generate {method.label}", disable=not show_progress, leave=False):
            batch_prompts = list(prompts[start : start + int(batch_size)])
            batch_indices = indices[start : start + len(batch_prompts)]
            enc = encode_prompts(tokenizer, texts[start : start + int(batch_size)], budget, batch_indices)
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
                from ..utils.sampling import KeyedSampler, draw_key

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
        if processor is not None:
            processor.close()  # frees the reward model's cache and removes CD's hooks on the base model
    return outputs


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
    num_samples: Optional[int] = None,
    max_new_tokens: Optional[int] = None,
    batch_size: Optional[int] = None,
    do_sample: Optional[bool] = None,
    temperature: Optional[float] = None,
    top_p: Optional[float] = None,
    seed: Optional[int] = None,
    preset: Optional[str] = None,
    max_prompt_length: Optional[int] = None,
    settings: Optional[DecodingSettings] = None,
) -> None:
    """Validate the settings of :func:`generate_responses` without generating anything: build the method's
    decoder (the ARGS / CD logits processor, or the best-of-N) with them, then release it.

    A resumable command calls it before it opens its run (:func:`hf_stackshape.utils.runs.open_run`), so that a bad
    value (``--weight -1``, ``--weight nan``, ``--k 0``...) fails before any manifest or result is written and
    the corrected command starts cleanly. Raises the decoder's own ``ValueError`` naming the value. Takes the
    settings as ``settings`` or as the keyword arguments of :func:`generate_responses`.
    """
    method = method if isinstance(method, Method) else parse_method(method)
    keywords = {name: value for name, value in locals().items() if name in _SETTING_KEYWORDS}
    settings = DecodingSettings.merge(settings, **keywords)
    prompt_budget(model, settings.max_new_tokens, settings.max_prompt_length)
    _plan(model, tokenizer, method, settings, reward=reward, qheads=qheads).close()
