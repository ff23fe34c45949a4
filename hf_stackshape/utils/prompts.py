"""Prompts to token ids (layer 0): chat formatting, the prompt budget, global prompt indices and batch encoding.

Every decoder and command turns prompt strings into the base model's input ids here, so truncation, padding
and the warnings about cut prompts follow one rule everywhere: left padding, left truncation to what fits
before the response (the end of a prompt, where the question usually is, survives).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from transformers.utils import logging

from .dialogue import render_prompt

logger = logging.get_logger(__name__)

__all__ = ["format_prompts", "prompt_budget", "global_indices", "encode_prompts"]


def format_prompts(
    tokenizer, prompts: Sequence[str], chat_template: Optional[bool] = None, dialogue_as_text: bool = False
) -> List[str]:
    """The base model's input text: the chat template with a generation prompt when the tokenizer has one.

    ``dialogue_as_text=True`` leaves a prompt that already holds ``Human:`` / ``Assistant:`` turns (HH-RLHF) as
    plain text, as the authors' scripts do (:func:`hf_stackshape.utils.dialogue.render_prompt`)."""
    use_chat = bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else chat_template
    if use_chat and not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the base tokenizer has no chat template.")
    return [render_prompt(tokenizer, p, bool(use_chat), dialogue_as_text)[0] for p in prompts]


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


def global_indices(prompts, first_index: int, indices) -> List[int]:
    """Each prompt's index in the whole job: ``indices`` as given (checked), else ``first_index, first_index + 1...``."""
    if indices is None:
        return list(range(int(first_index), int(first_index) + len(prompts)))
    indices = [int(i) for i in indices]
    if len(indices) != len(prompts):
        raise ValueError(f"`indices` has {len(indices)} entries for {len(prompts)} prompts; give one global index per prompt.")
    if first_index:
        raise ValueError("Pass either `indices` or `first_index`, not both.")
    return indices


def encode_prompts(tokenizer, texts: Sequence[str], budget: Optional[int], indices):
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
