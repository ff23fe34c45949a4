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

from ..utils.deprecation import renamed_kwargs
from ..utils.prompts import encode_prompts, format_prompts, prompt_budget
from ._base import GuidanceProcessor

logger = logging.get_logger(__name__)

__all__ = ["guided_generate"]


def _prompt_budget(model, processor, generation_config, max_prompt_length: Optional[int]) -> Optional[int]:
    """Prompt tokens that leave room for ``max_new_tokens`` in the model's context and, for CD, in the Q-head
    backbone's (its value of ``prefix + candidate`` at the last step needs ``prompt + max_new_tokens`` positions)."""
    new = generation_config.max_new_tokens
    if new is None:  # generate counts max_length from the prompt's start: nothing to reserve
        return max_prompt_length
    budget = prompt_budget(model, new, max_prompt_length)
    head_context = getattr(processor, "_context", None)
    if max_prompt_length is None and head_context:
        if head_context - int(new) < 1:
            raise ValueError(
                f"max_new_tokens={new} leaves no room for the prompt in the Q-head backbone's context of "
                f"{head_context} tokens; lower max_new_tokens."
            )
        budget = head_context - int(new) if budget is None else min(budget, head_context - int(new))
    return budget


@renamed_kwargs(apply_chat_template="chat_template")
def guided_generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    processor: GuidanceProcessor,
    *,
    chat_template: Optional[bool] = None,
    thresholds: Optional[torch.Tensor] = None,
    max_prompt_length: Optional[int] = None,
    batch_size: Optional[int] = None,
    show_progress: bool = False,
    **generate_kwargs,
) -> List[str]:
    r"""Generate guided responses to raw prompts with an [`ARGSLogitsProcessor`] or a [`CDLogitsProcessor`].

    Formats every prompt as a user turn of the tokenizer's chat template (with the generation prompt), left-pads
    the batch, describes the call to the processor (ARGS: the raw prompts its reward model reads, per-prompt
    thresholds), checks that the decoding mode is greedy, sampling or beam search and that generate's sampling
    temperature does not rescale the guidance (a ``ValueError`` with the fix otherwise: pass ``temperature=1.0``
    and give the processor the temperature), runs
    ``model.generate`` and returns the decoded new tokens. The processor's caches are freed when it returns.

    Prompts longer than the context minus ``max_new_tokens`` (the base model's, and a CD head backbone's) keep
    their last tokens, with a warning, as in the [`ThresholdCalibrator`].

    Args:
        model (`PreTrainedModel`): the base causal LM.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (a pad token is required).
        prompts (`list[str]`): raw user prompts.
        processor ([`ARGSLogitsProcessor`] or [`CDLogitsProcessor`]): the guidance.
        chat_template (`bool`, *optional*; formerly ``apply_chat_template``, deprecated): format prompts with the chat template; defaults to whether the
            tokenizer has one. Without it the prompts are tokenized as they are.
        thresholds (`torch.Tensor` of shape `(len(prompts),)`, *optional*): per-prompt ``m*(x)`` for ARGS.
        max_prompt_length (`int`, *optional*): prompt token budget; defaults to the context minus
            ``max_new_tokens``.
        batch_size (`int`, *optional*): prompts per ``generate`` call; all at once by default.
        show_progress (`bool`, *optional*, defaults to `False`): a tqdm bar over batches.
        generate_kwargs: passed to ``model.generate`` (``max_new_tokens``, ``do_sample``, ``num_beams``,
            ``num_return_sequences``, a ``logits_processor`` list that runs before the guidance...).

    Returns:
        `list[str]`: the responses, ``len(prompts) * num_return_sequences`` of them, prompt-major. With
        ``return_dict_in_generate=True`` (keyword or ``generation_config``): what ``generate`` returns (a
        ``GenerateDecoderOnlyOutput``...; its ``sequences`` hold the left-padded prompts and the new tokens), or,
        with ``batch_size``, a list of them, one per batch.

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
        raise ValueError(
            f"`prompts` must hold strings; entry {bad[0]} is a {type(prompts[bad[0]]).__name__}."
        )
    if not isinstance(processor, GuidanceProcessor):
        raise ValueError(
            f"`processor` must be an ARGSLogitsProcessor or a CDLogitsProcessor, got {type(processor).__name__}; "
            "other processors go in `logits_processor=`."
        )
    is_args = hasattr(processor, "set_prompt")
    if thresholds is not None:
        if not is_args:
            raise ValueError(
                "`thresholds` (per-prompt m*(x)) are for ARGS; a CD head was trained on shaped rewards."
            )
        thresholds = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
        if len(thresholds) != len(prompts):
            raise ValueError(
                f"Got {len(thresholds)} thresholds for {len(prompts)} prompts; pass one per prompt."
            )
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if not prompts:
        return []
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token).")

    # What generate will use: the passed generation_config (else the model's) updated with the keyword arguments.
    generation_config = copy.deepcopy(generate_kwargs.get("generation_config") or model.generation_config)
    generation_config.update(
        **{k: v for k, v in generate_kwargs.items() if k not in ("logits_processor", "generation_config")}
    )
    as_dict = bool(generation_config.return_dict_in_generate)
    processor.check_generation_config(generation_config, generate_kwargs.get("assistant_model"))
    if generation_config.pad_token_id is None:
        generate_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    budget = _prompt_budget(model, processor, generation_config, max_prompt_length)
    texts = format_prompts(tokenizer, prompts, chat_template)
    before = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
    procs = LogitsProcessorList([*before, processor])
    size = len(prompts) if batch_size is None else int(batch_size)
    responses: List[str] = []
    outputs = []
    try:
        starts = range(0, len(prompts), size)
        for start in tqdm(starts, desc="guided_generate", disable=not show_progress):
            stop = start + size
            enc = encode_prompts(tokenizer, texts[start:stop], budget, start)  # left padding: generate continues the last column
            enc = {key: enc[key].to(model.device) for key in ("input_ids", "attention_mask")}
            if is_args:
                batch_thresholds = None if thresholds is None else thresholds[start:stop]
                processor.set_prompt(enc, prompts=prompts[start:stop], thresholds=batch_thresholds)
            else:
                processor.reset()
            out = model.generate(**enc, logits_processor=procs, **generate_kwargs)
            if as_dict:
                outputs.append(out)
            sequences = out.sequences if as_dict else out
            new = sequences[:, enc["input_ids"].shape[1] :]
            responses.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        if is_args:
            processor.set_prompt()  # unbind this call's inputs and free the reward model's cache
        else:
            processor.reset()
    if as_dict:  # what generate returns: one output per generate call
        return outputs[0] if batch_size is None else outputs
    return responses
