"""ARGS and SRS-ARGS as a ``LogitsProcessor`` for ``model.generate``.

ARGS (Khanov et al., 2024, "ARGS: Alignment as Reward-Guided Search") scores the top-k next tokens of every
step with a reward model and decodes with ``logit(v) + lambda * reward(x, y_<t + v)``. SRS-ARGS (Wang et al.,
2026, arXiv 2602.02572, section 3) feeds the Stackelberg-shaped reward instead: the per-step threshold
``m*`` over the k candidates weighted by ``softmax(top-k logits)``, then ``B_eff * sigmoid(alpha (r - m*))``
(all from :mod:`hf_stackshape.core.shaping`).

Two ways to get the k rewards per row, chosen once per generation:

* **fast path** (an [`HFRewardModel`] whose model is a decoder with a ``score`` head and whose tokenizer has
  the base tokenizer's vocabulary): the reward model's text for (prompt, partial response) is
  ``head(prompt) + response + tail`` where ``head``/``tail`` come from the RM's own formatting (its chat
  template: for SmolLM2 ``tail = "<|im_end|>\\n"``). The RM's KV cache holds ``head ids + accepted
  response ids`` per row (:class:`~hf_stackshape.utils.kv_cache.PrefixKVCache`); each step one
  forward runs the newly accepted token plus k groups ``[v, tail ids...]`` that attend to the shared
  prefix through a 4D mask, and the reward is ``model.score`` of each group's last hidden state -- the
  same number the RM's own forward gives on the full sequence. Special tokens (EOS...) are dropped from
  the RM's view, exactly as ``decode(skip_special_tokens=True)`` drops them on the text path;
* **text path** (any other reward: different tokenizer, [`CallableReward`], a template that rewrites the
  response, ...): decode every candidate continuation and call ``reward_model.score(prompts, texts)``
  on all ``rows x k`` pairs at once. Correct for any reward, slower; logged once.

The fast path reads the generated token ids as they are; the text path re-tokenizes the decoded text.
Both agree whenever that round trip is the identity (the usual case for natural text); the fast path is
checked against the RM's own formatting (a tokenization probe) before it is used.

With ``rm_input="raw"`` (the authors' ARGS script; the ``paper`` preset) there is no formatting at all: the
reward model reads the base model's own prompt ids (padding removed), the response ids and the candidate,
special tokens included -- on the fast path ``head`` is the prompt ids and ``tail`` is empty; without the cache
the same ids go through the RM's forward (:meth:`HFRewardModel.score_ids`).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
from transformers.utils import logging

from ..core.shaping import RewardTransform, get_transform
from ..rewards.adapters import HFRewardModel, RewardFunction, as_reward_function
from ..utils.checks import check_k_and_weight, check_k_fits, check_temperature, same_vocabulary
from ..utils.kv_cache import PrefixKVCache, prefix_cache_support
from ._base import GuidanceProcessor

logger = logging.get_logger(__name__)

__all__ = ["ARGSLogitsProcessor"]

_SENTINELS = ("ARGSRESPONSESLOTALPHA", "ARGSRESPONSESLOTBETA")
# Responses whose tokenization must survive the head/response/tail split for the fast path to be exact.
_PROBES = ("Hello world.", " Sure! Here are 3 ideas:\n- one")
#: What the reward model reads: its own formatting of (prompt, response), or the raw token ids.
RM_INPUTS = ("chat", "raw")


class _CachedRewardScorer:
    """Fast path: rewards of k candidates per row from one cached forward of the reward model."""

    def __init__(self, reward_model: HFRewardModel, drop_ids: torch.Tensor):
        self.rm = reward_model
        self.head = reward_model.model.score
        pad = getattr(reward_model.model.config.get_text_config(), "pad_token_id", None)
        self.cache = PrefixKVCache(reward_model.model, readout_skip_ids=[] if pad is None else [pad])
        self.special_ids = drop_ids
        self.drop_ids = drop_ids
        self.head_ids: Optional[torch.Tensor] = None
        self.head_mask: Optional[torch.Tensor] = None
        self.tail_ids: Optional[torch.Tensor] = None

    @staticmethod
    def unsupported(reward_model: RewardFunction, tokenizer) -> Optional[str]:
        if not isinstance(reward_model, HFRewardModel):
            return f"{type(reward_model).__name__} is scored on text"
        if not isinstance(getattr(reward_model.model, "score", None), torch.nn.Module):
            return f"{type(reward_model.model).__name__} has no `score` head"
        reason = prefix_cache_support(reward_model.model)
        if reason is not None:
            return reason
        if not same_vocabulary(tokenizer, reward_model.tokenizer):
            return "the reward model's tokenizer differs from the base tokenizer"
        return None

    def _encode(self, text: str, special: bool) -> List[int]:
        return self.rm.tokenizer(text, add_special_tokens=special)["input_ids"]

    def prepare(self, prompts: Sequence[str]) -> Optional[str]:
        """Tokenize ``head(prompt)`` per prompt and the shared ``tail``; return why not, if impossible."""
        special = not self.rm.use_chat_template  # as HFRewardModel.encode
        heads, tail_ids = [], None
        for prompt in prompts:
            text = self.rm.format(prompt, _SENTINELS[0])
            if text.count(_SENTINELS[0]) != 1:
                return "the reward model's template does not contain the response verbatim"
            head, tail = text.split(_SENTINELS[0])
            for probe in (_SENTINELS[1],) + _PROBES:
                if self.rm.format(prompt, probe) != head + probe + tail:
                    return "the reward model's template rewrites the response (e.g. strips whitespace)"
            head_ids, tail_i = self._encode(head, special), self._encode(tail, False)
            for probe in _PROBES:
                if self._encode(head + probe + tail, special) != head_ids + self._encode(probe, False) + tail_i:
                    return "the reward model's text does not tokenize as head + response + tail"
            if tail_ids is not None and tail_i != tail_ids:
                return "the closing tokens of the reward model's template depend on the prompt"
            heads.append(head_ids)
            tail_ids = tail_i
        self._set_heads(heads, tail_ids, self.special_ids)
        return None

    def prepare_raw(self, prompt_ids: Sequence[Sequence[int]]) -> None:
        """Raw input: the RM reads the base prompt ids, the response ids and the candidate, nothing dropped."""
        self._set_heads([list(ids) for ids in prompt_ids], [], torch.zeros(0, dtype=torch.long))

    def _set_heads(self, heads, tail_ids, drop_ids) -> None:
        width = max(len(h) for h in heads)
        pad = self.rm.tokenizer.pad_token_id
        self.head_ids = torch.tensor([[pad] * (width - len(h)) + h for h in heads], dtype=torch.long)
        self.head_mask = torch.tensor([[False] * (width - len(h)) + [True] * len(h) for h in heads])
        self.tail_ids = torch.tensor(tail_ids, dtype=torch.long)
        self.drop_ids = drop_ids
        self.cache.reset()

    def fits(self, response_len: int) -> bool:
        """Whether the full RM input fits ``max_length`` (the text path would truncate it)."""
        return self.head_ids.shape[1] + response_len + 1 + len(self.tail_ids) <= self.rm.max_length

    def rewards(self, prompt_idx, responses, candidates) -> torch.Tensor:
        """Rewards (a, k) of ``responses[i] + [candidates[i, j]]`` for prompt ``prompt_idx[i]``."""
        device = self.rm.device
        responses, candidates, prompt_idx = responses.to(device), candidates.to(device), prompt_idx.to(device)
        drop = self.drop_ids.to(device)
        head_ids, head_mask = self.head_ids.to(device)[prompt_idx], self.head_mask.to(device)[prompt_idx]
        prefix = torch.cat([head_ids, responses], dim=-1)
        mask = torch.cat([head_mask, ~torch.isin(responses, drop)], dim=-1)
        a, k = candidates.shape
        tail = self.tail_ids.to(device)
        groups = torch.cat([candidates[..., None], tail.expand(a, k, len(tail))], dim=-1)
        keep = torch.ones_like(groups, dtype=torch.bool)
        keep[..., 0] = ~torch.isin(candidates, drop)
        states = self.cache.score_candidates(prefix, mask, groups, keep)
        return self.head(states.hidden)[..., 0].float()


def _template_tokens(tokenizer, prompt_ids: torch.Tensor, mask: torch.Tensor) -> List[str]:
    """The special tokens (chat-template markers such as ``<|im_start|>``) in the prompt ids, apart from
    padding and one leading BOS: their presence means the decoded prompt is template text, not the user's."""
    special = set(tokenizer.all_special_ids)
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    found = set()
    for ids, m in zip(prompt_ids.tolist(), mask.tolist()):
        kept = [t for t, keep in zip(ids, m) if keep]
        if kept and kept[0] == tokenizer.bos_token_id and kept.count(kept[0]) == 1:
            kept = kept[1:]
        found.update(t for t in kept if t in special)  # padding is outside the mask
    return sorted({tokenizer.convert_ids_to_tokens(t) for t in found})


class ARGSLogitsProcessor(GuidanceProcessor):
    r"""[`LogitsProcessor`] for reward-guided decoding: ARGS (Khanov et al., 2024) and its Stackelberg-shaped
    variant SRS-ARGS (Wang et al., 2026, arXiv 2602.02572).

    At every step it takes the top-``k`` tokens of the scores it receives, scores each continuation
    ``prompt + response so far + v`` with the reward model, shapes the k rewards with ``transform`` and
    returns ``score(v) / temperature + weight * shaped_reward(v)`` on the k candidates and ``-inf`` elsewhere.
    Greedy decoding (``do_sample=False``) is ARGS-greedy; ``do_sample=True`` samples from the softmax of the
    fused scores over the k candidates (ARGS-stochastic); beam search works too.

    The processor uses the scores it is given: processors placed before it in ``logits_processor`` (and
    generate's own ``min_new_tokens``, ``repetition_penalty``...) have already changed them, and tokens they set
    to ``-inf`` are never candidates. generate's sampling warpers (``temperature``, ``top_k``, ``top_p``) run
    *after* it, on the fused scores: a generate ``temperature=T`` would divide the fused score by ``T`` and turn
    ``weight`` into ``weight / T``. To sample at a base temperature, give it here (``temperature=T``) and
    leave generate's at 1.0 ([`guided_generate`] refuses the other way; see
    [`~GuidanceProcessor.check_generation_config`]). For SRS the per-step threshold uses
    ``softmax(top-k scores / temperature)`` as the candidate weights.

    What the reward model reads (``rm_input``): ``"chat"`` (our default) gives it its own formatting of the
    pair, the chat template's user and assistant turns when its tokenizer has one, so a chat RM (Skywork...)
    sees what it was trained on; ``"raw"`` (the authors' ARGS script, the ``paper`` preset) gives it the raw
    token ids ``prompt + response + candidate`` -- the very ids the base model reads, without padding and
    without any template, special tokens included -- which needs an RM with the base tokenizer's vocabulary.
    For a Python callable reward both modes pass the same strings.

    Rows that have finished (an EOS or pad token in their response) are not scored: they keep only the pad
    token. The reward model's KV cache (fast path, see the module docstring) holds one row per unfinished
    sequence, whatever ``k`` is; beam-search reordering is detected from the token histories.

    Args:
        reward_model ([`HFRewardModel`], [`RewardFunction`], `(model, tokenizer)` or `Callable`):
            The utility ``r_U``. A sequence-classification model must have exactly one output.
        k (`int`, *optional*, defaults to 10): candidates per step (the paper's default).
        weight (`float`, *optional*, defaults to 0.5): guidance weight ``lambda >= 0`` (the paper's default).
        transform (`str` or [`RewardTransform`], *optional*, defaults to `"srs"`):
            ``"srs"`` (Stackelberg shaping), ``"raw"`` (vanilla ARGS), ``"minmax"``, ``"meanstd"``,
            ``"meansoft"``, ``"hard"``, or a transform instance (then ``bound``/``alpha``/``beta`` are unused).
        bound (`float`, *optional*, defaults to 12.0): reward bound ``B``.
        alpha (`float`, *optional*, defaults to 1.5): sigmoid sharpness of SRS.
        beta (`float`, *optional*): KL strength in ``gamma = exp(B / beta)``; defaults to ``1 / weight`` as in
            the paper's script.
        safeguards (`str`, *optional*, defaults to `"args"`): numerical safeguards of the threshold solver.
        cap (`float`, *optional*): upper clip of the ``"cap"`` transform (the authors' cap baseline).
        rm_input (`str`, *optional*, defaults to `"chat"`):
            ``"chat"`` (the reward model's own formatting) or ``"raw"`` (raw token ids, as the authors' script).
        temperature (`float`, *optional*, defaults to 1.0):
            Base temperature: the fused score is ``score / temperature + weight * shaped``. Use it instead of
            generate's ``temperature`` (which would also divide the guidance term).
        thresholds (`torch.Tensor` of shape `(num_prompts,)`, *optional*):
            Per-prompt thresholds ``m*(x)`` from the [`ThresholdCalibrator`], used instead of the per-step
            threshold. One value per prompt; rows expanded by ``num_return_sequences`` or ``num_beams`` are
            mapped back to their prompt.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            The base model's tokenizer (to decode candidates and prompts). Defaults to the reward model's
            tokenizer for an [`HFRewardModel`]; required otherwise.
        prompts (`list[str]`, *optional*):
            The raw prompts as the reward model should read them, one per prompt row. Pass them when the base
            input is chat-formatted; otherwise the prompt ids are decoded (special tokens skipped). With
            ``rm_input="raw"`` a reward model with the base vocabulary reads the prompt ids instead.
        attention_mask (`torch.Tensor` of shape `(num_prompts, prompt_len)`, *optional*):
            The prompt attention mask, to tell left padding apart when ``prompts`` are not given. Without it,
            the leading run of ``pad_token_id`` in each row is taken as padding.
        pad_token_id (`int`, *optional*): the base pad token (defaults to the tokenizer's).
        eos_token_id (`int` or `list[int]`, *optional*): tokens that end a row (defaults to the tokenizer's EOS).
        use_cache (`bool`, *optional*):
            ``None`` (default) picks the cached fast path when possible; ``False`` forces the text path; ``True``
            requires the fast path (``ValueError`` if the reward model cannot use it).

    ``prompts``, ``attention_mask`` and ``thresholds`` describe the inputs of one ``generate`` call: set them
    again with [`~ARGSLogitsProcessor.set_prompt`] before a call with other inputs (a clear ``ValueError``
    says so). Without them, the processor needs nothing per call: it detects every new generation from the
    input length and prompt ids, and resets itself. [`guided_generate`] does all of this in one call.

    The reward model's KV cache is freed by [`~ARGSLogitsProcessor.reset`], ``set_prompt``, ``close()`` and when
    the processor is used as a context manager (``with ARGSLogitsProcessor(...) as args:``). An input longer
    than the reward model's ``max_length`` is truncated from the left (the end of the response is what the
    reward is about), with a warning. Continuous batching (``generate_batch``) is not supported
    (``supports_continuous_batching = False``).

    Examples:

    ```python
    >>> from transformers import LogitsProcessorList
    >>> from hf_stackshape import ARGSLogitsProcessor, load_smollm2
    >>> from hf_stackshape.assets.demo import load_demo_reward_model
    >>> model, tok = load_smollm2()  # the bundled SmolLM2-135M-Instruct
    >>> rm = load_demo_reward_model()  # bundled; or HFRewardModel.from_pretrained("Skywork/Skywork-Reward-V2-Qwen3-0.6B")
    >>> args = ARGSLogitsProcessor(rm, tokenizer=tok, k=10, weight=0.5, transform="srs")
    >>> inputs = tok(["How do I bake bread?", "Tell me a joke."], return_tensors="pt", padding=True)
    >>> out = model.generate(**inputs, logits_processor=LogitsProcessorList([args]), max_new_tokens=4, do_sample=False)
    >>> out.shape[0], args.uses_fast_path  # the reward model reads its cached prefix (the fast path)
    (2, True)
    >>> paper = ARGSLogitsProcessor.from_preset("paper", rm, tokenizer=tok)  # the authors' settings
    ```
    """

    _preset_component = "args"

    def __init__(
        self,
        reward_model,
        k: int = 10,
        weight: float = 0.5,
        transform: Union[str, RewardTransform] = "srs",
        bound: float = 12.0,
        alpha: float = 1.5,
        beta: Optional[float] = None,
        safeguards="args",
        cap: Optional[float] = None,
        rm_input: str = "chat",
        temperature: float = 1.0,
        thresholds: Optional[torch.Tensor] = None,
        tokenizer=None,
        prompts: Optional[Sequence[str]] = None,
        attention_mask: Optional[torch.Tensor] = None,
        pad_token_id: Optional[int] = None,
        eos_token_id: Optional[Union[int, Sequence[int]]] = None,
        use_cache: Optional[bool] = None,
    ):
        weight = check_k_and_weight(k, weight)
        if rm_input not in RM_INPUTS:
            raise ValueError(f"`rm_input` must be one of {RM_INPUTS}, got {rm_input!r}.")
        self.temperature = check_temperature(temperature)
        self.reward_model = as_reward_function(reward_model)
        if tokenizer is None:
            if not isinstance(self.reward_model, HFRewardModel):
                raise ValueError(
                    f"Pass `tokenizer=` (the base model's tokenizer): ARGS must decode candidates for "
                    f"{self.reward_model.name_or_path!r}."
                )
            tokenizer = self.reward_model.tokenizer
        check_k_fits(k, len(tokenizer), "tokens")
        self.k = k
        self.weight = weight
        self.tokenizer = tokenizer
        if beta is None:
            beta = 1.0 / weight if weight > 0 else 1.0  # weight 0 never uses the shaped reward
        self.transform = get_transform(transform, bound=bound, alpha=alpha, beta=beta, safeguards=safeguards, cap=cap)
        self.pad_token_id = pad_token_id if pad_token_id is not None else tokenizer.pad_token_id
        if eos_token_id is None:
            eos_token_id = tokenizer.eos_token_id
        eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
        stops = set(eos + ([self.pad_token_id] if self.pad_token_id is not None else []))
        self._stop_ids = torch.tensor(sorted(stops), dtype=torch.long)
        # What decode(skip_special_tokens=True) drops: the fast path hides the same tokens from the RM.
        self._drop_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

        self.rm_input = rm_input
        # Raw ids go straight into the reward model: it must number tokens as the base tokenizer does.
        self._raw_ids = rm_input == "raw" and isinstance(self.reward_model, HFRewardModel)
        if self._raw_ids and not same_vocabulary(tokenizer, self.reward_model.tokenizer):
            raise ValueError(
                f"rm_input='raw' feeds the base model's token ids to the reward model {self.reward_model.name_or_path!r}, "
                "but its tokenizer maps tokens to other ids than the base tokenizer; use rm_input='chat' (the reward "
                "model reads text in its own format)."
            )
        reason = _CachedRewardScorer.unsupported(self.reward_model, tokenizer)
        if use_cache and reason is not None:
            raise ValueError(f"use_cache=True but the reward model cannot use the cached fast path: {reason}.")
        self.use_cache = use_cache
        fast = reason is None and use_cache is not False
        self._scorer = _CachedRewardScorer(self.reward_model, self._drop_ids) if fast else None
        self._fallback_reason = reason if use_cache is not False else "use_cache=False"
        self.set_prompt(attention_mask=attention_mask, prompts=prompts, thresholds=thresholds)

    # ------------------------------------------------------------------ per-call inputs

    def set_prompt(
        self,
        inputs=None,
        *,
        attention_mask: Optional[torch.Tensor] = None,
        prompts: Optional[Sequence[str]] = None,
        thresholds: Optional[torch.Tensor] = None,
    ) -> "ARGSLogitsProcessor":
        """Describe the inputs of the next ``generate`` call and reset the state. Returns ``self``.

        Args:
            inputs (`BatchEncoding`, `dict` or `torch.Tensor`, *optional*):
                The tokenizer output passed to ``generate`` (its ``attention_mask`` is used), or the mask itself.
            attention_mask (`torch.Tensor`, *optional*): the prompt attention mask.
            prompts (`list[str]`, *optional*): the raw prompts for the reward model.
            thresholds (`torch.Tensor`, *optional*): per-prompt ``m*(x)``.
        """
        if inputs is not None:
            if isinstance(inputs, torch.Tensor):
                attention_mask = inputs if attention_mask is None else attention_mask
            elif hasattr(inputs, "get"):
                attention_mask = inputs.get("attention_mask") if attention_mask is None else attention_mask
            else:
                raise ValueError(
                    f"`inputs` must be the tokenizer output (with an attention_mask) or a tensor, got {type(inputs).__name__}."
                )
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask)
            if attention_mask.ndim != 2:
                raise ValueError(f"`attention_mask` must be 2D (prompts, length), got shape {tuple(attention_mask.shape)}.")
        if prompts is not None:
            if isinstance(prompts, str):
                raise ValueError("`prompts` must be a list of strings (wrap a single prompt as [prompt]).")
            prompts = list(prompts)
        if thresholds is not None:
            thresholds = torch.as_tensor(thresholds, dtype=torch.float64).flatten()
            if not torch.isfinite(thresholds).all():
                raise ValueError("`thresholds` must be finite; recompute m*(x) with the ThresholdCalibrator.")
        sizes = {
            name: n
            for name, n in (
                ("prompts", None if prompts is None else len(prompts)),
                ("thresholds", None if thresholds is None else len(thresholds)),
            )
            if n is not None
        }
        if len(set(sizes.values())) > 1:
            raise ValueError(f"`prompts` and `thresholds` must have one entry per prompt, got sizes {sizes}.")
        self._given = {"attention_mask": attention_mask, "prompts": prompts, "thresholds": thresholds}
        self._warned_template = False
        self._bound_ids: Optional[torch.Tensor] = None
        self.reset()
        return self

    def reset(self) -> None:
        """Forget the current generation and free the reward model's KV cache (the next call starts anew)."""
        self._gen = None
        if self._scorer is not None:
            self._scorer.cache.reset()

    @property
    def prefix_cache(self) -> Optional[PrefixKVCache]:
        """The reward model's :class:`PrefixKVCache` on the fast path (``None`` on the text path)."""
        return None if self._scorer is None else self._scorer.cache

    @property
    def uses_fast_path(self) -> Optional[bool]:
        """Whether the current generation scores candidates through the reward model's KV cache (the cached fast
        path) rather than as text; ``None`` before its first step (``use_cache`` asks for a path, this reports the
        one taken: a prompt the cache cannot hold, or an input past ``max_length``, falls back to the text path)."""
        return None if self._gen is None else self._gen["fast"]

    @property
    def prompt_length(self) -> Optional[int]:
        """Length of the current generation's prompt ids (padding included: where the response starts in
        ``input_ids``); ``None`` before its first step."""
        return None if self._gen is None else self._gen["prompt_len"]

    @property
    def steps(self) -> int:
        """Decoding steps this processor has guided in the current generation (``0`` before its first step)."""
        return 0 if self._gen is None else self._gen["steps"]

    def _prompt_mask(self, prompt_ids: torch.Tensor, expand: int) -> torch.Tensor:
        mask = self._given["attention_mask"]
        if mask is not None:
            mask = mask.to(prompt_ids.device).bool()
            if mask.shape[0] * expand == prompt_ids.shape[0] and expand > 1:
                mask = mask.repeat_interleave(expand, dim=0)
            if mask.shape != prompt_ids.shape:
                raise ValueError(
                    f"The attention_mask given to ARGSLogitsProcessor has shape {tuple(mask.shape)} but generate's "
                    f"prompt ids have {tuple(prompt_ids.shape)}; call proc.set_prompt(inputs) with this call's inputs."
                )
            return mask
        if self.pad_token_id is None:
            return torch.ones_like(prompt_ids, dtype=torch.bool)
        # Left padding: the leading run of pad tokens.
        return (prompt_ids != self.pad_token_id).long().cummax(dim=-1).values.bool()

    def _start(self, input_ids: torch.Tensor) -> None:
        """Set up a new generation whose prompts are ``input_ids``."""
        n_rows, prompt_len = input_ids.shape
        given = self._given
        explicit = any(value is not None for value in given.values())
        if explicit:
            if self._bound_ids is not None and not (
                self._bound_ids.shape == input_ids.shape and torch.equal(self._bound_ids, input_ids.cpu())
            ):
                raise ValueError(
                    "This ARGSLogitsProcessor was given prompts/attention_mask/thresholds for other inputs; call "
                    "proc.set_prompt(inputs, prompts=..., thresholds=...) before each generate call with new inputs."
                )
            self._bound_ids = input_ids.cpu().clone()
        n_prompts = n_rows
        for value in (given["prompts"], given["thresholds"], given["attention_mask"]):
            if value is not None:
                n_prompts = len(value)
                break
        if n_prompts < 1 or n_rows % n_prompts:
            raise ValueError(
                f"generate has {n_rows} rows but {n_prompts} prompts were given; the rows must be the prompts "
                "repeated num_return_sequences / num_beams times."
            )
        expand = n_rows // n_prompts
        row_prompt = torch.arange(n_rows, device=input_ids.device) // expand
        raw_ids = None
        if self._raw_ids:
            mask = self._prompt_mask(input_ids, expand)
            raw_ids = [ids[m].tolist() for ids, m in zip(input_ids[::expand], mask[::expand])]
        if given["prompts"] is not None:
            prompts = given["prompts"]
        else:
            mask = self._prompt_mask(input_ids, expand)
            firsts = input_ids[::expand]
            prompts = self.tokenizer.batch_decode(
                [ids[m].tolist() for ids, m in zip(firsts, mask[::expand])], skip_special_tokens=True
            )
            if raw_ids is None and not self._warned_template:
                found = _template_tokens(self.tokenizer, firsts, mask[::expand])
                if found:
                    self._warned_template = True
                    logger.warning(
                        f"ARGSLogitsProcessor: the prompt ids hold special tokens ({', '.join(found)}: a chat "
                        "template?) and no raw prompts were given, so the reward model reads the decoded template "
                        f"text ({prompts[0][:60]!r}...) as the prompt. Pass the raw prompts with `prompts=` (or "
                        "proc.set_prompt(inputs, prompts=...)) for a faithful reward."
                    )
        if raw_ids is None:
            prompts = self._clipped_prompts(prompts)
        thresholds = given["thresholds"]
        if thresholds is not None:
            thresholds = thresholds.to(input_ids.device)[row_prompt]
        fast = self._scorer is not None and self.weight > 0
        if fast:
            reason = self._scorer.prepare_raw(raw_ids) if raw_ids is not None else self._scorer.prepare(prompts)
            if reason is not None:
                if self.use_cache:
                    raise ValueError(f"use_cache=True but the cached fast path cannot be used: {reason}.")
                fast = False
                self._fallback_reason = reason
        if not fast and self.weight > 0 and raw_ids is None:
            logger.warning_once(
                f"ARGSLogitsProcessor scores candidates as text through {self.reward_model.name_or_path!r} "
                f"({self._fallback_reason}): correct but slower than the cached path."
            )
        self._gen = {
            "rows": n_rows,
            "prompt_len": prompt_len,
            "prompt_ids": input_ids.clone(),
            "steps": 0,
            "row_prompt": row_prompt,
            "prompts": prompts,
            "raw_ids": raw_ids,
            "thresholds": thresholds,
            "fast": fast,
        }

    def _clipped_prompts(self, prompts: List[str]) -> List[str]:
        """The prompts as the reward model can read them: each cut once to its last ``max_length`` tokens
        (``reward_model.clip_prompt``), with a warning, so a huge prompt is not re-tokenized ``k`` times a step."""
        clip = getattr(self.reward_model, "clip_prompt", None)
        if not callable(clip):
            return list(prompts)
        out = [clip(p) for p in prompts]
        cut = [i for i, (a, b) in enumerate(zip(prompts, out)) if a is not b]
        if cut:
            logger.warning(
                f"ARGSLogitsProcessor: prompt(s) {cut[:5]} are longer than the reward model's max_length "
                f"({self.reward_model.max_length} tokens); it reads their last {self.reward_model.max_length} tokens "
                "(left truncation, as for any longer input)."
            )
        return out

    def _is_continuation(self, input_ids: torch.Tensor) -> bool:
        gen = self._gen
        if gen is None or input_ids.shape[0] != gen["rows"]:
            return False
        if input_ids.shape[1] != gen["prompt_len"] + gen["steps"]:
            return False
        return torch.equal(input_ids[:, : gen["prompt_len"]], gen["prompt_ids"])

    # ------------------------------------------------------------------ scoring

    def _text_rewards(self, prompt_idx, responses, candidates) -> torch.Tensor:
        prompts = self._gen["prompts"]
        a, k = candidates.shape
        seqs = [
            resp + [cand]
            for resp, cands in zip(responses.tolist(), candidates.tolist())
            for cand in cands
        ]
        texts = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
        pairs = [prompts[p] for p in prompt_idx.tolist() for _ in range(k)]
        return self.reward_model.score(pairs, texts).view(a, k)

    def _raw_rewards(self, prompt_idx, responses, candidates) -> torch.Tensor:
        """Rewards of the raw ids ``prompt + response + candidate`` through the RM's own forward (no cache)."""
        rm, raw = self.reward_model, self._gen["raw_ids"]
        seqs = [
            raw[p] + resp + [cand]
            for p, resp, cands in zip(prompt_idx.tolist(), responses.tolist(), candidates.tolist())
            for cand in cands
        ]
        if max(len(seq) for seq in seqs) > rm.max_length:
            logger.warning_once(
                f"ARGSLogitsProcessor: prompt + response is longer than the reward model's max_length "
                f"({rm.max_length}); it reads the last {rm.max_length} tokens (left truncation)."
            )
            seqs = [seq[-rm.max_length :] for seq in seqs]
        pad = rm.tokenizer.pad_token_id
        out = []
        for start in range(0, len(seqs), rm.batch_size):
            batch = seqs[start : start + rm.batch_size]
            width = max(len(seq) for seq in batch)
            left = rm.padding_side == "left"
            ids = [([pad] * (width - len(q)) + q) if left else (q + [pad] * (width - len(q))) for q in batch]
            mask = [([0] * (width - len(q)) + [1] * len(q)) if left else ([1] * len(q) + [0] * (width - len(q))) for q in batch]
            out.append(rm.score_ids(torch.tensor(ids), torch.tensor(mask)))
        return torch.cat(out).view(candidates.shape)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.ndim != 2 or scores.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"ARGSLogitsProcessor expects scores (batch, vocab) matching input_ids rows, got {tuple(scores.shape)}."
            )
        vocab = scores.shape[-1]
        check_k_fits(self.k, vocab, "scores")
        self._check_decoding_loop()
        # A new generate call (its own LogitsProcessorList) starts afresh even on the last call's output.
        if self._new_generate_call() or not self._is_continuation(input_ids):
            self._start(input_ids)
        gen = self._gen
        gen["steps"] += 1
        responses = input_ids[:, gen["prompt_len"] :]

        limited = scores
        if vocab > len(self.tokenizer):  # padded embedding rows are not tokens
            limited = scores.clone()
            limited[:, len(self.tokenizer) :] = -math.inf
        top_scores, top_ids = limited.topk(self.k, dim=-1)
        valid = torch.isfinite(top_scores)
        stop = self._stop_ids.to(input_ids.device)
        finished = torch.isin(responses, stop).any(-1) if responses.shape[1] else torch.zeros_like(valid[:, 0])
        active = ~finished & valid.any(-1)

        out = torch.full_like(scores, -math.inf)
        if self.pad_token_id is not None:
            out[finished, self.pad_token_id] = 0.0
        else:
            out[finished] = scores[finished]
        stuck = ~finished & ~active  # every token already at -inf: leave the row as it came
        out[stuck] = scores[stuck]
        rows = torch.nonzero(active).flatten()
        if rows.numel() == 0:
            if self._scorer is not None:  # every row has ended: the RM's KV cache will not be read again
                self._scorer.cache.reset()
            return out

        top_scores, top_ids, valid = top_scores[rows], top_ids[rows], valid[rows]
        fused = top_scores
        if self.weight > 0:
            prompt_idx = gen["row_prompt"][rows]
            resp = responses[rows]
            if gen["fast"] and not self._scorer.fits(resp.shape[1]):
                logger.warning_once(
                    "ARGSLogitsProcessor: the reward model input exceeds its max_length; scoring the rest without "
                    "the cache, truncated from the left."
                )
                gen["fast"] = False
                self._scorer.cache.reset()  # never used again in this generation
            if gen["fast"]:
                rewards = self._scorer.rewards(prompt_idx, resp, top_ids)
            elif gen["raw_ids"] is not None:
                rewards = self._raw_rewards(prompt_idx, resp, top_ids)
            else:
                rewards = self._text_rewards(prompt_idx, resp, top_ids)
            # The threshold is solved in the rewards' precision or better, never below float32: a half-precision
            # reward (a float16 / bfloat16 RM or reward function) is up-cast first. (The authors' bisection runs in
            # float16 on GPU; ours solves exactly, see hf_stackshape.core.shaping.solve_threshold.)
            rewards = rewards.to(device=scores.device, dtype=torch.promote_types(rewards.dtype, torch.float32))
            base = top_scores / self.temperature if self.temperature != 1.0 else top_scores
            weights = torch.softmax(base.float(), dim=-1)
            threshold = None if gen["thresholds"] is None else gen["thresholds"][rows]
            shaped = self.transform(rewards, weights=weights, mask=valid, threshold=threshold)
            fused = base + self.weight * shaped.to(scores.dtype)
        elif self.temperature != 1.0:
            fused = top_scores / self.temperature
        fused = torch.where(valid, fused, torch.full_like(fused, -math.inf))
        out[rows] = torch.full_like(out[rows], -math.inf).scatter(1, top_ids, fused)
        return out
