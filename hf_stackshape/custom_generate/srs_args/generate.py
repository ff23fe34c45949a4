"""SRS-ARGS through ``model.generate(custom_generate=..., trust_remote_code=True)``.

ARGS (Khanov et al., 2024) with Stackelberg reward shaping (Wang et al., 2026, arXiv 2602.02572): at every step the
top-k next tokens are scored by a reward model, the k rewards are shaped (``transform="srs"``) and the model decodes
``logit / temperature + weight * shaped_reward`` over them. Exported by hf_stackshape (``stackshape export-generate
--method srs-args``); the sibling ``srs_*.py`` files are the library's own modules.
"""

import copy

from transformers import AutoTokenizer, GenerationMixin, LogitsProcessorList

from .srs_args import ARGSLogitsProcessor
from .srs_rewards import HFRewardModel, RewardFunction


def _tokenizer(model, tokenizer):
    if tokenizer is not None:
        return tokenizer
    name = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not name:
        raise ValueError("srs-args needs the base model's tokenizer: pass tokenizer=... to generate.")
    return AutoTokenizer.from_pretrained(name)


def generate(
    model,
    *args,
    reward_model=None,
    k=10,
    weight=0.5,
    transform="srs",
    bound=12.0,
    alpha=1.5,
    beta=None,
    safeguards="args",
    rm_input="chat",
    guidance_temperature=1.0,
    prompts=None,
    thresholds=None,
    reward_model_kwargs=None,
    **kwargs,
):
    """``model.generate`` with an SRS-ARGS ``LogitsProcessor`` appended (see README.md for every argument)."""
    if reward_model is None:
        raise ValueError(
            "srs-args needs reward_model=: a Hub id or folder of a sequence-classification reward model, a "
            "(model, tokenizer) pair, or a callable (prompts, responses) -> rewards."
        )
    tokenizer = _tokenizer(model, kwargs.get("tokenizer"))
    if isinstance(reward_model, (str, bytes)) or hasattr(reward_model, "__fspath__"):
        reward_model = HFRewardModel.from_pretrained(str(reward_model), device=model.device, **(reward_model_kwargs or {}))
    processor = ARGSLogitsProcessor(
        reward_model,
        k=k,
        weight=weight,
        transform=transform,
        bound=bound,
        alpha=alpha,
        beta=beta,
        safeguards=safeguards,
        rm_input=rm_input,
        temperature=guidance_temperature,
        tokenizer=tokenizer,
        prompts=prompts,
        thresholds=thresholds,
        attention_mask=kwargs.get("attention_mask"),
    )
    config = copy.deepcopy(kwargs.get("generation_config") or model.generation_config)
    config.update(**{key: value for key, value in kwargs.items() if hasattr(config, key)})
    processor.check_generation_config(config, kwargs.get("assistant_model"))
    kwargs["logits_processor"] = LogitsProcessorList([*(kwargs.get("logits_processor") or []), processor])
    try:
        return GenerationMixin.generate(model, *args, **kwargs)
    finally:
        processor.close()
