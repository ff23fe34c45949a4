"""``guided_generate``: reward-guided decoding of chat prompts in one call.

Using [`ARGSLogitsProcessor`] (ARGS, Khanov et al., 2024) or [`CDLogitsProcessor`] (CD, Mudgal et al., 2023;
both with Stackelberg shaping, Wang et al., 2026) by hand takes several steps that are easy to get wrong: format
each prompt with the chat template, left-pad, tell ARGS the raw prompts (:meth:`~ARGSLogitsProcessor.set_prompt`;
without it the reward model reads the decoded template), keep generate's temperature at 1 (see
:mod:`hf_stackshape.guidance._base`), keep prompts within the context, decode only the new tokens and free the
processor's caches afterwards. :func:`guided_generate` does all of it.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessorList
from transformers.utils import logging

from ._base import GuidanceProcessor

logger = logging.get_logger(__name__)

__all__ = ["guided_generate"]


def _context(model) -> Optional[int]:
    config = getattr(model, "config", None)
    text = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


def _prompt_budget(model, processor, generation_config, max_prompt_length: Optional[int]) -> Optional[int]:
    """Prompt tokens that leave room for ``max_new_tokens`` in the model's (and a CD head backbone's) context."""
    if max_prompt_length is not None:
        if int(max_prompt_length) < 1:
            raise ValueError(f"`max_prompt_length` must be a positive integer, got {max_prompt_length!r}.")
        return int(max_prompt_length)
    new = generation_config.max_new_tokens
    if new is None:
        return None  # generate counts max_length from the prompt's start: nothing to reserve
    contexts = [c for c in (_context(model), getattr(processor, "_context", None)) if c]
    if not contexts:
        return None
    # A CD value head reads prefix + candidate: one position more than the model.
    extra = 1 if getattr(getattr(getattr(processor, "qhead", None), "config", None), "head_type", None) == "value" else 0
    budget = min(contexts) - int(new) - extra
    if budget < 1:
        raise ValueError(
            f"max_new_tokens={new} leaves no room for the prompt in a context of {min(contexts)} tokens; lower "
            "max_new_tokens."
        )
    return budget


def _encode(tokenizer, texts: Sequence[str], special: bool, budget: Optional[int], first: int):
    """Left-padded ``input_ids`` / ``attention_mask``; a prompt over ``budget`` keeps its last tokens (warns)."""
    ids = tokenizer(list(texts), add_special_tokens=special)["input_ids"]
    for i, seq in enumerate(ids):
        if budget is not None and len(seq) > budget:
            logger.warning(
                "guided_generate: prompt %d has %d tokens, more than the %d the context leaves after max_new_tokens; "
                "keeping its last %d tokens.",
                first + i, len(seq), budget, budget,
            )
            ids[i] = seq[-budget:]
    width = max(len(seq) for seq in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in ids], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in ids], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask}


def guided_generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    processor: GuidanceProcessor,
    *,
    apply_chat_template: Optional[bool] = None,
    thresholds: Optional[torch.Tensor] = None,
    max_prompt_length: Optional[int] = None,
    batch_size: Optional[int] = None,
    show_progress: bool = False,
    **generate_kwargs,
) -> List[str]:
    r"""Generate guided responses to raw prompts with an [`ARGSLogitsProcessor`] or a [`CDLogitsProcessor`].

    Formats every prompt as a user turn of the tokenizer's chat template (with the generation prompt), left-pads
    the batch, describes the call to the processor (ARGS: the raw prompts its reward model reads, per-prompt
    thresholds), checks that generate's sampling temperature does not rescale the guidance (a ``ValueError``
    with the fix otherwise: pass ``temperature=1.0`` and give the processor the temperature), runs
    ``model.generate`` and returns the decoded new tokens. The processor's caches are freed when it returns.

    Prompts longer than the context minus ``max_new_tokens`` (the base model's, and a CD head backbone's) keep
    their last tokens, with a warning, as in the [`ThresholdCalibrator`].

    Args:
        model (`PreTrainedModel`): the base causal LM.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (a pad token is required).
        prompts (`list[str]`): raw user prompts.
        processor ([`ARGSLogitsProcessor`] or [`CDLogitsProcessor`]): the guidance.
        apply_chat_template (`bool`, *optional*): format prompts with the chat template; defaults to whether the
            tokenizer has one. Without it the prompts are tokenized as they are (with special tokens).
        thresholds (`torch.Tensor` of shape `(len(prompts),)`, *optional*): per-prompt ``m*(x)`` for ARGS.
        max_prompt_length (`int`, *optional*): prompt token budget; defaults to the context minus
            ``max_new_tokens``.
        batch_size (`int`, *optional*): prompts per ``generate`` call; all at once by default.
        show_progress (`bool`, *optional*, defaults to `False`): a tqdm bar over batches.
        generate_kwargs: passed to ``model.generate`` (``max_new_tokens``, ``do_sample``, ``num_beams``,
            ``num_return_sequences``, a ``logits_processor`` list that runs before the guidance...).

    Returns:
        `list[str]`: the responses, ``len(prompts) * num_return_sequences`` of them, prompt-major.

    Examples:

    ```python
    >>> from hf_stackshape import ARGSLogitsProcessor, HFRewardModel, guided_generate, load_smollm2
    >>> model, tok = load_smollm2()  # doctest: +SKIP
    >>> rm = HFRewardModel.from_pretrained("Skywork/Skywork-Reward-V2-Qwen3-0.6B")  # doctest: +SKIP
    >>> with ARGSLogitsProcessor(rm, tokenizer=tok, k=10, weight=0.5) as args:  # doctest: +SKIP
    ...     answers = guided_generate(model, tok, ["How do I bake bread?"], args, max_new_tokens=128)
    ```
    """
    if isinstance(prompts, str):
        raise ValueError("`prompts` must be a list of strings (wrap a single prompt as [prompt]).")
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"`prompts` must hold strings; entry {bad[0]} is a {type(prompts[bad[0]]).__name__}.")
    if not isinstance(processor, GuidanceProcessor):
        raise ValueError(
            f"`processor` must be an ARGSLogitsProcessor or a CDLogitsProcessor, got {type(processor).__name__}; "
            "other processors go in `logits_processor=`."
        )
    is_args = hasattr(processor, "set_prompt")
    if thresholds is not None:
        if not is_args:
            raise ValueError("`thresholds` (per-prompt m*(x)) are for ARGS; a CD head was trained on shaped rewards.")
        thresholds = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        if len(thresholds) != len(prompts):
            raise ValueError(f"Got {len(thresholds)} thresholds for {len(prompts)} prompts; pass one per prompt.")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if not prompts:
        return []
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token).")

    generation_config = copy.deepcopy(model.generation_config)
    generation_config.update(**{k: v for k, v in generate_kwargs.items() if k != "logits_processor"})
    processor.check_generation_config(generation_config)
    if generation_config.pad_token_id is None:
        generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    budget = _prompt_budget(model, processor, generation_config, max_prompt_length)
    chat = bool(getattr(tokenizer, "chat_template", None)) if apply_chat_template is None else bool(apply_chat_template)
    if chat:
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    else:
        texts = prompts
    before = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
    procs = LogitsProcessorList([*before, processor])
    size = len(prompts) if batch_size is None else int(batch_size)
    responses: List[str] = []
    try:
        starts = range(0, len(prompts), size)
        for start in tqdm(starts, desc="guided_generate", disable=not show_progress):
            stop = start + size
            enc = _encode(tokenizer, texts[start:stop], not chat, budget, start)
            enc = {key: value.to(model.device) for key, value in enc.items()}
            if is_args:
                batch_thresholds = None if thresholds is None else thresholds[start:stop]
                processor.set_prompt(enc, prompts=prompts[start:stop], thresholds=batch_thresholds)
            else:
                processor.reset()
            out = model.generate(**enc, logits_processor=procs, **generate_kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            responses.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        if is_args:
            processor.set_prompt()  # unbind this call's inputs and free the reward model's cache
        else:
            processor.reset()
    return responses
