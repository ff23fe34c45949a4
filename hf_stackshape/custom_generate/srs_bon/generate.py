"""SRS best-of-N through ``model.generate(custom_generate=..., trust_remote_code=True)``.

Best-of-N with Stackelberg reward shaping (Wang et al., 2026, arXiv 2602.02572): sample ``n`` responses per prompt,
score them with a reward model, solve each prompt's threshold ``m*(x)`` on its samples, shape the rewards and pick
one response (``selection="soft"`` samples it from ``softmax(shaped / beta)``, ``"argmax"`` takes the best).
Exported by hf_stackshape (``stackshape export-generate --method srs-bon``); the sibling ``srs_*.py`` files are the
library's own modules.
"""

import copy
import math

import torch
from transformers import AutoTokenizer, GenerationMixin, LogitsProcessorList

from .srs_bon import BON_SAFEGUARDS, StackelbergBestOfN
from .srs_deprecation import move_renamed
from .srs_rewards import HFRewardModel, score_groups
from .srs_sampling import KeyedSampler, draw_key

#: generate's sampling knobs: they shape the keyed draws instead of generate's own sampler.
_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p")


def _tokenizer(model, tokenizer):
    if tokenizer is not None:
        return tokenizer
    name = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not name:
        raise ValueError("srs-bon needs the base model's tokenizer: pass tokenizer=... to generate.")
    return AutoTokenizer.from_pretrained(name)


def generate(
    model,
    *args,
    reward_model=None,
    num_samples=None,
    weight=None,
    beta=1.0,
    transform="srs",
    selection="soft",
    bound=15.0,
    alpha=1.0,
    safeguards=BON_SAFEGUARDS,
    prompts=None,
    seed=0,
    reward_model_kwargs=None,
    **kwargs,
):
    """Sample ``num_samples`` responses per prompt with ``model.generate`` and return the selected one per prompt, as
    token ids ``(batch, prompt + new tokens)`` padded with the pad token (see README.md for every argument).
    ``n`` is a deprecated alias of ``num_samples`` (``FutureWarning``)."""
    given = {"num_samples": num_samples} if num_samples is not None else {}
    if "n" in kwargs:
        given["n"] = kwargs.pop("n")
    num_samples = move_renamed(given, {"n": "num_samples"}, "srs-bon generate", stacklevel=3).get("num_samples", 16)
    if reward_model is None:
        raise ValueError("srs-bon needs reward_model=: a reward model's Hub id or folder, or a callable.")
    for key in ("num_return_sequences", "num_beams", "return_dict_in_generate"):
        if kwargs.get(key) not in (None, 1, False):
            raise ValueError(f"srs-bon sets {key} itself (one selected response per prompt); do not pass it.")
    if kwargs.get("do_sample") is False:
        raise ValueError("srs-bon needs sampled candidates: drop do_sample=False (greedy gives n copies).")
    tokenizer = _tokenizer(model, kwargs.get("tokenizer"))
    if isinstance(reward_model, (str, bytes)) or hasattr(reward_model, "__fspath__"):
        reward_model = HFRewardModel.from_pretrained(str(reward_model), device=model.device, **(reward_model_kwargs or {}))
    if weight is not None:
        beta = math.inf if weight == 0 else 1.0 / float(weight)
    bon = StackelbergBestOfN(
        model, tokenizer, reward_model, num_samples=num_samples, beta=beta, transform=transform, selection=selection, bound=bound,
        alpha=alpha, safeguards=safeguards, seed=seed, show_progress=False,
    )
    input_ids = kwargs.get("input_ids", args[0] if args else kwargs.get("inputs"))
    if input_ids is None:
        raise ValueError("srs-bon needs the prompt ids (input_ids=...).")
    attention_mask = kwargs.get("attention_mask")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if prompts is None:
        prompts = tokenizer.batch_decode(
            [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)], skip_special_tokens=True
        )
    if len(prompts) != input_ids.shape[0]:
        raise ValueError(f"Got {len(prompts)} prompts for {input_ids.shape[0]} input rows; pass one per row.")
    # Sample j of row i draws from its own generator keyed by (seed, i, j), as the library's best-of-N does
    # (hf_stackshape.utils.sampling): the batch a prompt shares never changes its samples.
    sampling = copy.deepcopy(kwargs.pop("generation_config", None) or model.generation_config)
    sampling.update(**{key: kwargs.pop(key) for key in _SAMPLING_KEYS if key in kwargs})
    keys = [draw_key(int(seed), i, j, "sample") for i in range(input_ids.shape[0]) for j in range(num_samples)]
    sampler = KeyedSampler.expand(keys, sampling)
    processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
    processors.append(sampler)
    kwargs.pop("inputs", None)
    kwargs.pop("do_sample", None)
    kwargs["input_ids"] = input_ids.repeat_interleave(num_samples, dim=0)
    kwargs["attention_mask"] = attention_mask.repeat_interleave(num_samples, dim=0)
    if kwargs.get("pad_token_id") is None and model.generation_config.pad_token_id is None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    greedy = copy.deepcopy(sampling)
    greedy.update(do_sample=False, num_beams=1, num_return_sequences=1, temperature=None, top_k=None, top_p=None,
                  min_p=None)
    out = GenerationMixin.generate(model, generation_config=greedy, logits_processor=processors, **kwargs)
    new = out[:, input_ids.shape[1] :]
    texts = [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    groups = [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]
    rewards = score_groups(bon.reward, list(prompts), groups)
    chosen = bon.select(rewards, indices=list(range(len(prompts))))["chosen_index"].to(out.device)
    rows = torch.arange(len(prompts), device=out.device) * num_samples + chosen
    return out[rows]
