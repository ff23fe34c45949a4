"""Batched guided generation by method name: the glue that ``stackshape generate``, sweeps and the demo share.

A *method* names a decoder and a reward transform, as in the paper's tables (Wang et al., 2026):

* ``base``: the base policy alone (greedy or sampling);
* ``args`` / ``vanilla-args``: ARGS (Khanov et al., 2024) on the raw reward;
* ``srs-args``: ARGS on the Stackelberg-shaped reward; ``minmax-args``, ``meanstd-args``, ``meansoft-args``,
  ``hard-args``: the paper's baselines;
* ``cd`` / ``vanilla-cd``: Controlled Decoding (Mudgal et al., 2023) with a Q-head trained on raw rewards;
* ``srs-cd`` (and ``<transform>-cd``): CD with a Q-head trained on shaped rewards.

Everything here is a thin adapter over :class:`~hf_stackshape.guidance.args.ARGSLogitsProcessor`,
:class:`~hf_stackshape.guidance.cd.CDLogitsProcessor` and ``model.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList
from transformers.utils import logging

from .shaping import TRANSFORMS, get_transform

logger = logging.get_logger(__name__)

__all__ = ["Method", "parse_method", "METHOD_EXAMPLES", "format_prompts", "generate_responses"]

DECODERS = ("args", "cd")
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
)


@dataclass(frozen=True)
class Method:
    """A decoding method: ``decoder`` in ``{None, "args", "cd"}`` and the reward ``transform`` it uses."""

    name: str
    decoder: Optional[str]
    transform: str = "raw"

    @property
    def label(self) -> str:
        if self.decoder is None:
            return "base"
        prefix = "vanilla" if self.transform == "raw" else self.transform
        return f"{prefix}-{self.decoder}"


def parse_method(name: str) -> Method:
    """Parse ``"srs-args"``, ``"args"``, ``"vanilla-cd"``, ``"base"``... into a :class:`Method`."""
    text = str(name).strip().lower()
    if text in ("base", "greedy", "none", "sample"):
        return Method(text, None, "raw")
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
                return Method(text, decoder, canonical)
    raise ValueError(
        f"Unknown method {name!r}. Use 'base', '<decoder>' or '<transform>-<decoder>' with decoder in "
        f"{list(DECODERS)} and transform in {sorted(TRANSFORMS) + ['vanilla']} (e.g. {', '.join(METHOD_EXAMPLES)})."
    )


def format_prompts(tokenizer, prompts: Sequence[str], chat_template: Optional[bool] = None) -> List[str]:
    """The base model's input text: the chat template with a generation prompt when the tokenizer has one."""
    use_chat = bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else chat_template
    if use_chat and not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the base tokenizer has no chat template.")
    if not use_chat:
        return list(prompts)
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]


def _build_processor(method: Method, *, reward, qheads, tokenizer, model, weight, k, bound, alpha, beta, temperature):
    if method.decoder == "args":
        from .guidance.args import ARGSLogitsProcessor

        if reward is None:
            raise ValueError(f"Method {method.name!r} needs a reward model (--reward_model).")
        kwargs = dict(k=k, transform=method.transform, tokenizer=tokenizer)
        for key, value in (("weight", weight), ("bound", bound), ("alpha", alpha), ("beta", beta)):
            if value is not None:
                kwargs[key] = value
        return ARGSLogitsProcessor(reward, **kwargs)
    if method.decoder == "cd":
        from .guidance.cd import CDLogitsProcessor

        qhead = (qheads or {}).get(method.transform)
        if qhead is None:
            raise ValueError(
                f"Method {method.name!r} needs a Q-head trained on the {method.transform!r} transform; "
                f"have {sorted(qheads or {})}. Train one with `stackshape train-qhead --transform {method.transform}`."
            )
        kwargs = dict(k=k, base_model=model, tokenizer=tokenizer)
        if weight is not None:
            kwargs["weight"] = weight
        if temperature is not None:
            kwargs["temperature"] = temperature
        return CDLogitsProcessor(qhead, **kwargs)
    return None


@torch.no_grad()
def generate_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    method="base",
    reward=None,
    qheads: Optional[Mapping[str, object]] = None,
    weight: Optional[float] = None,
    k: int = 10,
    bound: Optional[float] = None,
    alpha: Optional[float] = None,
    beta: Optional[float] = None,
    cd_temperature: Optional[float] = None,
    thresholds: Optional[torch.Tensor] = None,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat_template: Optional[bool] = None,
    show_progress: bool = True,
    on_batch=None,
) -> List[str]:
    """Generate one response per prompt with ``method``, in batches (left padding), and decode them.

    Args:
        model, tokenizer: the base policy (a causal LM) and its tokenizer.
        prompts (`list[str]`): raw user prompts (the chat template is applied here when the tokenizer has one).
        method (`str` or [`Method`]): see :func:`parse_method`.
        reward: the guiding reward for ARGS methods (any :mod:`hf_stackshape.rewards` adapter).
        qheads (`dict[str, QHeadModel]`): Q-heads for CD methods, keyed by the transform they were trained on.
        weight (`float`, *optional*): guidance weight ``lambda = 1/beta`` (ARGS default 0.5, CD default 1.5).
        thresholds (`torch.Tensor`, *optional*): per-prompt ``m*(x)`` for ARGS SRS with calibrated thresholds.
        on_batch (`Callable[[int, list[str]], None]`, *optional*): called after each batch with the index of its
            first prompt and its responses (used to write results as they come, for resumable runs).

    Returns:
        `list[str]`: the decoded responses (special tokens skipped), in prompt order.
    """
    method = method if isinstance(method, Method) else parse_method(method)
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
    if int(max_new_tokens) < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens!r}.")
    processor = _build_processor(
        method,
        reward=reward,
        qheads=qheads,
        tokenizer=tokenizer,
        model=model,
        weight=weight,
        k=k,
        bound=bound,
        alpha=alpha,
        beta=beta,
        temperature=cd_temperature,
    )
    texts = format_prompts(tokenizer, prompts, chat_template)
    device = next(model.parameters()).device
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs: List[str] = []
    try:
        starts = range(0, len(texts), int(batch_size))
        for start in tqdm(starts, desc=f"generate {method.label}", disable=not show_progress, leave=False):
            batch_prompts = list(prompts[start : start + int(batch_size)])
            enc = tokenizer(
                texts[start : start + int(batch_size)], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
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
            )
            if do_sample:
                gen_kwargs.update(temperature=temperature, top_p=top_p)
                torch.manual_seed(int(seed) + start)
            else:
                gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(**enc, **gen_kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            batch_out = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            outputs.extend(batch_out)
            if on_batch is not None:
                on_batch(start, batch_out)
    finally:
        tokenizer.padding_side = old_side
    return outputs


def method_settings(method: Method, **settings) -> Dict[str, object]:
    """A flat record describing a method run (for result tables)."""
    return {"method": method.label, "decoder": method.decoder or "none", "transform": method.transform, **settings}
