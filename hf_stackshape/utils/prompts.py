"""Prompts to token ids (layer 0): chat formatting, the prompt budget, global prompt indices and batch encoding.

Every decoder and command turns prompt strings into the base model's input ids here, so truncation, padding
and the warnings about cut prompts follow one rule everywhere: left padding, left truncation to what fits
before the response (the end of a prompt, where the question usually is, survives).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence, Union

from transformers.utils import logging

from .dialogue import render_prompt

logger = logging.get_logger(__name__)

__all__ = ["format_prompts", "prompt_budget", "global_indices", "encode_prompts", "tokenizer_sides"]


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


@contextmanager
def tokenizer_sides(tokenizer, padding: Optional[str] = None, truncation: Optional[str] = None) -> Iterator:
    """Set the tokenizer's ``padding_side`` / ``truncation_side`` for a block; both come back as they were on
    leaving it, also when the block raises. ``None`` leaves a side as it is.

    Examples:

    ```python
    >>> with tokenizer_sides(tokenizer, padding="left", truncation="left"):  # doctest: +SKIP
    ...     batch = tokenizer(texts, padding=True, truncation=True, max_length=512)
    ```
    """
    wanted = {"padding_side": padding, "truncation_side": truncation}
    for name, side in wanted.items():
        if side not in (None, "left", "right"):
            raise ValueError(f"`{name.split('_')[0]}` must be 'left', 'right' or None, got {side!r}.")
    wanted = {name: side for name, side in wanted.items() if side is not None}
    old = {name: getattr(tokenizer, name, "right") for name in wanted}
    try:
        for name, side in wanted.items():
            setattr(tokenizer, name, side)
        yield tokenizer
    finally:
        for name, side in old.items():
            setattr(tokenizer, name, side)


def encode_prompts(
    tokenizer,
    texts: Sequence[str],
    budget: Optional[int],
    indices,
    *,
    add_special_tokens: Union[bool, Sequence[bool]] = False,
    on_truncate: Optional[Callable[[int, int, int], None]] = None,
):
    """Left-padded, left-truncated batch encoding of formatted prompts (a ``BatchEncoding`` of tensors).

    Args:
        tokenizer: the base model's tokenizer (it needs a pad token for a batch of different lengths).
        texts (`list[str]`): the base model's input texts (:func:`format_prompts`).
        budget (`int` or `None`): keep at most the last ``budget`` tokens of each prompt (:func:`prompt_budget`);
            ``None`` never truncates.
        indices (`int` or `list[int]`): the prompts' global indices (for the warning), or the index of the first one.
        add_special_tokens (`bool` or `list[bool]`, *optional*, defaults to `False`): add the tokenizer's special
            tokens (BOS...) to each prompt. ``False`` suits chat-templated text, whose template holds them; one flag
            per prompt mixes both, as the calibrator does (``not templated``: a plain-text prompt gets them). Special
            tokens count toward ``budget``; a cut prompt keeps its last ``budget`` tokens whatever they are.
        on_truncate (`Callable[[int, int, int], None]`, *optional*): called as ``on_truncate(row, index, length)``
            for each prompt longer than ``budget`` (``row``: its position in ``texts``); the default logs one
            warning per cut prompt.
    """
    texts = list(texts)
    if isinstance(indices, int):
        indices = range(indices, indices + len(texts))
    flags = [bool(add_special_tokens)] * len(texts) if isinstance(add_special_tokens, bool) else list(add_special_tokens)
    if len(flags) != len(texts):
        raise ValueError(f"`add_special_tokens` has {len(flags)} flags for {len(texts)} prompts; give one per prompt or a bool.")
    rows: List[dict] = [None] * len(texts)  # type: ignore[list-item]
    for special in (True, False):
        group = [i for i, flag in enumerate(flags) if flag is special]
        if group:
            encoded = tokenizer([texts[i] for i in group], add_special_tokens=special)
            for j, i in enumerate(group):
                rows[i] = {key: values[j] for key, values in encoded.items()}
    for i, row in enumerate(rows):
        length = len(row["input_ids"])
        if budget is not None and length > budget:
            if on_truncate is not None:
                on_truncate(i, indices[i], length)
            else:
                logger.warning(
                    "Prompt %d is %d tokens, more than the %d that fit before the response; its first %d tokens "
                    "are dropped (left truncation).", indices[i], length, budget, length - budget,
                )
            rows[i] = {key: values[-budget:] for key, values in row.items()}
    columns = {key: [row[key] for row in rows] for key in (rows[0] if rows else {"input_ids": []})}
    with tokenizer_sides(tokenizer, padding="left"):
        return tokenizer.pad(columns, padding=True, return_tensors="pt")
