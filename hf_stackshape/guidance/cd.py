"""Controlled Decoding (CD, Mudgal et al., 2023) as a `LogitsProcessor`, with value / Q heads trained on
Stackelberg-shaped rewards (SRS-CD, Wang et al., 2026, arXiv 2602.02572, section 3).

Each step keeps the top-k next tokens of the base model (log-probs at a base temperature) and adds
``lambda * value`` of each candidate: ``fused = logp + lambda * V``; every other token gets ``-inf``. Greedy
decoding then is CD-greedy, sampling is CD-stochastic.

Two kinds of heads (see [`QHeadModel`]):

* ``q``: ``Q(x, y_<t, v)`` for the whole vocabulary from the hidden state of the prefix, so one backbone
  forward per step (none at all when the head's backbone is the base model: its last hidden state is captured
  from the base model's own forward by a hook);
* ``value``: ``V(x, y_<t, v)`` for each of the k candidates, scored in **one** forward of the backbone against
  a KV cache of the accepted prefix (a 4D mask lets each candidate see the prefix and itself only), where the
  paper's script runs k forwards per step.
"""

from __future__ import annotations

import math
import weakref
from typing import Optional

import torch
from transformers.utils import logging

from ..qhead.modeling_qhead import QHeadModel
from ..utils.checks import (
    check_k_and_weight,
    check_k_fits,
    check_temperature,
    same_vocabulary,
    vocabulary_digest,
)
from ..utils.kv_cache import PrefixKVCache
from ..utils.modeling import decoder_stack, last_hidden_state_module
from ._base import GuidanceProcessor

logger = logging.get_logger(__name__)

__all__ = ["CDLogitsProcessor"]


class CDLogitsProcessor(GuidanceProcessor):
    r"""Controlled Decoding (Mudgal et al., 2023) guided by a value or Q head, e.g. one trained on Stackelberg
    shaped rewards (SRS-CD, Wang et al., 2026).

    At each step the top-``k`` tokens of ``log_softmax(scores / temperature)`` get
    ``fused = logp + weight * value`` and every other token ``-inf``; with ``do_sample=False`` this is CD-greedy,
    with ``do_sample=True`` CD-stochastic (sampling from ``softmax(fused)``). Works with batches (left padding),
    finished (EOS) rows, ``num_return_sequences``, beam search and repeated ``generate`` calls.

    The base temperature is this processor's ``temperature``. generate's sampling warpers run *after* it, so a
    generate ``temperature=T`` (which many instruct models ship in their ``generation_config``) would divide
    the fused score by ``T`` once more: the base temperature would become ``temperature * T`` and the weight
    ``weight / T``. Sample with ``temperature=1.0`` in generate ([`guided_generate`] refuses anything else and
    the processor warns when ``base_model.generation_config`` samples at another temperature).

    The processor holds forward hooks on ``base_model`` and a KV cache of the head's backbone: free them
    deterministically with ``close()`` or a ``with CDLogitsProcessor(...) as cd:`` block (a dropped processor
    also removes its hooks when it is garbage collected). Continuous batching (``generate_batch``) is not
    supported (``supports_continuous_batching = False``). An input longer than the head backbone's context
    raises a ``ValueError`` (its cached prefix cannot be truncated); [`guided_generate`] truncates prompts from
    the left to fit.

    Args:
        qhead ([`QHeadModel`]): a ``q`` head (one value per next token) or a ``value`` head (one value per prefix).
        k (`int`, *optional*, defaults to 10): number of base candidates scored per step.
        weight (`float`, *optional*, defaults to 1.5): the guidance weight ``lambda = 1 / beta`` (paper: 1.5).
        temperature (`float`, *optional*, defaults to 0.7): base temperature of the top-k log-probs (paper: 0.7).
        base_model (`PreTrainedModel`, *optional*): the model that generates. Lets the processor read the exact
            attention mask of each step (without it, leading ``pad_token_id`` tokens are taken as left padding) and,
            when it is the head's backbone, reuse its last hidden state instead of a second backbone pass.
        share_hidden_states (`bool`, *optional*): reuse ``base_model``'s last hidden state for a ``q`` head.
            Defaults to ``True`` when the head's backbone is ``base_model``.
        pad_token_id (`int`, *optional*): padding id used to infer the mask when ``base_model`` is not given.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): the base tokenizer, checked against the head's vocabulary.
        head_tokenizer (`PreTrainedTokenizerBase`, *optional*): the tokenizer the head was trained with; must map
            every token to the same id as ``tokenizer`` (checked against ``qhead.config.vocab_digest`` too, when the
            head records one).

    Examples:

    ```python
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
    >>> from hf_stackshape import CDLogitsProcessor, QHeadModel
    >>> base = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")  # doctest: +SKIP
    >>> tok = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct", padding_side="left")  # doctest: +SKIP
    >>> qhead = QHeadModel.from_pretrained("runs/qhead", backbone=base)  # doctest: +SKIP
    >>> cd = CDLogitsProcessor(qhead, k=10, weight=1.5, temperature=0.7, base_model=base)  # doctest: +SKIP
    >>> inputs = tok(["Hi!", "How do I bake bread?"], return_tensors="pt", padding=True)  # doctest: +SKIP
    >>> out = base.generate(**inputs, logits_processor=LogitsProcessorList([cd]), do_sample=False)  # doctest: +SKIP
    >>> cd.close()  # removes the hooks on `base`; or `with CDLogitsProcessor(...) as cd:`  # doctest: +SKIP
    >>> paper = CDLogitsProcessor.from_preset("paper", qhead, base_model=base)  # k=10, weight 1.5, T=0.7  # doctest: +SKIP
    ```
    """

    _preset_component = "cd"

    def __init__(
        self,
        qhead: QHeadModel,
        k: int = 10,
        weight: float = 1.5,
        temperature: float = 0.7,
        base_model=None,
        share_hidden_states: Optional[bool] = None,
        pad_token_id: Optional[int] = None,
        tokenizer=None,
        head_tokenizer=None,
    ):
        if not isinstance(qhead, QHeadModel):
            raise ValueError(f"`qhead` must be a QHeadModel, got {type(qhead).__name__}; load one with QHeadModel.from_pretrained.")
        weight = check_k_and_weight(k, weight)
        temperature = check_temperature(temperature)
        vocab = qhead.config.vocab_size
        check_k_fits(k, vocab, "tokens in the Q-head's vocabulary")
        if tokenizer is not None:
            check_k_fits(k, len(tokenizer), "tokens in the base tokenizer")
        if tokenizer is not None and vocab is not None and len(tokenizer) > vocab:
            raise ValueError(
                f"The Q-head's vocabulary ({vocab} tokens) does not cover the base tokenizer ({len(tokenizer)} tokens); "
                "train the head on a backbone that shares the base model's tokenizer."
            )
        self._check_tokenizers(qhead, tokenizer, head_tokenizer)
        if base_model is not None:
            base_vocab = getattr(base_model.config.get_text_config(), "vocab_size", None)
            if vocab is not None and base_vocab is not None and base_vocab != vocab:
                raise ValueError(
                    f"The Q-head's vocabulary ({vocab}) does not match the base model's ({base_vocab}); the head must "
                    "be trained on a backbone with the base model's tokenizer."
                )
        if share_hidden_states is None:
            share_hidden_states = base_model is not None and qhead.backbone is base_model and qhead.config.head_type == "q"
        if share_hidden_states:
            if base_model is None:
                raise ValueError("`share_hidden_states=True` needs `base_model=` (the model whose hidden states are reused).")
            if qhead.config.head_type != "q":
                raise ValueError("`share_hidden_states=True` needs a q head; a value head scores candidates itself.")
        elif qhead.backbone is None:
            raise ValueError(
                "The Q-head has no backbone: load it with QHeadModel.from_pretrained(path, backbone=model) or pass "
                "base_model= with share_hidden_states=True when its backbone is the base model."
            )
        self.qhead = qhead.eval()
        self.k = k
        self.weight = weight
        self.temperature = temperature
        self.share_hidden_states = bool(share_hidden_states)
        if pad_token_id is None and base_model is not None:
            pad_token_id = base_model.generation_config.pad_token_id
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id
        self.pad_token_id = pad_token_id
        # KV cache of the head's own backbone over the accepted prefixes (shared with ARGS' reward scoring).
        self._state = None if self.share_hidden_states else PrefixKVCache(decoder_stack(qhead.backbone))
        self._context = self._backbone_context(qhead.backbone if qhead.backbone is not None else base_model)
        self._mask: Optional[torch.Tensor] = None
        self._hidden: Optional[torch.Tensor] = None
        self._hooks = []
        if base_model is not None:
            # Hooks hold a weak reference, so a dropped processor is collected and its hooks removed.
            ref = weakref.ref(self)

            def capture_mask(module, args, kwargs):
                obj = ref()
                if obj is not None:
                    obj._capture_mask(module, args, kwargs)

            def capture_hidden(module, args, output):
                obj = ref()
                if obj is not None:
                    obj._capture_hidden(module, args, output)

            self._hooks.append(base_model.register_forward_pre_hook(capture_mask, with_kwargs=True))
            if self.share_hidden_states:
                self._hooks.append(last_hidden_state_module(base_model).register_forward_hook(capture_hidden))
            self._warn_model_temperature(base_model)

    @staticmethod
    def _check_tokenizers(qhead: QHeadModel, tokenizer, head_tokenizer) -> None:
        """The head must number tokens as the base tokenizer does: same mapping, not only the same size."""
        if head_tokenizer is not None and tokenizer is not None and not same_vocabulary(tokenizer, head_tokenizer):
            raise ValueError(
                "The Q-head's tokenizer (`head_tokenizer`, "
                f"{len(head_tokenizer)} tokens) maps tokens to other ids than the base tokenizer ({len(tokenizer)} "
                "tokens); the same size is not enough. Use a head trained with the base model's tokenizer."
            )
        recorded = getattr(qhead.config, "vocab_digest", None)
        for name, tok in (("tokenizer", tokenizer), ("head_tokenizer", head_tokenizer)):
            if recorded and tok is not None and vocabulary_digest(tok) != recorded:
                raise ValueError(
                    f"`{name}` does not match the vocabulary the Q-head was trained with (its config records "
                    f"vocab_digest={recorded[:12]}..., this tokenizer has {vocabulary_digest(tok)[:12]}...); use the "
                    "head's own tokenizer or a head trained with this one."
                )

    @staticmethod
    def _backbone_context(model) -> Optional[int]:
        config = getattr(model, "config", None)
        if config is None:
            return None
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        return getattr(text, "max_position_embeddings", None)

    # ---------------------------------------------------------------------------------------------- hooks

    def _capture_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    def _capture_hidden(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self._hidden = hidden[:, -1].detach()

    @property
    def num_hooks(self) -> int:
        """Hooks this processor holds on ``base_model`` (0 after :meth:`close`)."""
        return len(self._hooks)

    def remove_hooks(self) -> None:
        """Detach the hooks placed on ``base_model``. A processor that reused the base model's hidden states
        (``share_hidden_states``) cannot score without them: it then raises until rebuilt."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._mask = None

    def reset(self) -> None:
        """Free the head backbone's KV cache and the captured tensors (the next call starts from scratch)."""
        if self._state is not None:
            self._state.reset()
        self._mask = None
        self._hidden = None

    def close(self) -> None:
        """Remove the hooks on ``base_model`` and free every cache (also what leaving a ``with`` block does)."""
        self.remove_hooks()
        self.reset()

    def __del__(self):
        for hook in getattr(self, "_hooks", []):
            hook.remove()

    # ---------------------------------------------------------------------------------------------- step

    def _attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = self._mask
        if mask is not None and mask.shape == input_ids.shape:
            return mask.to(input_ids.device)
        if self.pad_token_id is None:
            return torch.ones_like(input_ids)
        # Left padding only: leading pad tokens (later pads are finished rows, which no longer matter).
        return (input_ids != self.pad_token_id).long().cummax(dim=-1).values

    def _check_vocab(self, scores: torch.Tensor) -> None:
        vocab = self.qhead.config.vocab_size
        if self.qhead.config.head_type == "q" and vocab is not None and scores.shape[-1] != vocab:
            raise ValueError(
                f"The Q-head scores {vocab} tokens but the base model's logits have {scores.shape[-1]}; use a head "
                "trained on a backbone with the base model's vocabulary."
            )

    @torch.no_grad()
    def candidate_values(self, input_ids: torch.LongTensor, candidates: torch.LongTensor) -> torch.Tensor:
        """The head's value of each candidate next token, ``(batch, k)`` (``Q(x, y_<t, v)`` or ``V(x, y_<t, v)``)."""
        qhead = self.qhead
        if qhead.config.head_type == "q":
            if self.share_hidden_states:
                hidden = self._hidden
                if not self._hooks:
                    raise ValueError(
                        "This CDLogitsProcessor was closed: it reused `base_model`'s hidden states through hooks that "
                        "close() removed. Build a new processor for another generation."
                    )
                if hidden is None or hidden.shape[0] != input_ids.shape[0]:
                    raise ValueError(
                        "CDLogitsProcessor(share_hidden_states=True) saw no hidden state from `base_model` for this "
                        "step: pass the model that generates as `base_model=`."
                    )
                self._hidden = None
            else:
                # No candidate tokens needed: one dropped (masked) placeholder, read the prefix's own state.
                placeholder = torch.zeros(input_ids.shape[0], 1, 1, dtype=torch.long, device=input_ids.device)
                states = self._state.score_candidates(
                    input_ids, self._attention_mask(input_ids).bool(), placeholder, torch.zeros_like(placeholder).bool()
                )
                hidden = states.prefix_hidden
            hidden = hidden.to(device=qhead.head_device, dtype=qhead.head_dtype)
            actions = candidates.to(hidden.device)
            return qhead.head.gather(hidden.unsqueeze(1).expand(-1, actions.shape[1], -1), actions).float()
        states = self._state.score_candidates(input_ids, self._attention_mask(input_ids).bool(), candidates.unsqueeze(-1))
        return qhead.head(states.hidden.to(device=qhead.head_device, dtype=qhead.head_dtype)).float()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._check_vocab(scores)
        check_k_fits(self.k, scores.shape[-1], "scores")
        self._check_decoding_loop()
        # A value head reads prefix + candidate: one position more than the prefix.
        needed = input_ids.shape[1] + (self.qhead.config.head_type == "value")
        if self._context is not None and needed > self._context:
            raise ValueError(
                f"CDLogitsProcessor: prompt + generated tokens ({input_ids.shape[1]}) exceed the Q-head backbone's "
                f"context ({self._context} positions). Shorten the prompts or lower max_new_tokens; guided_generate "
                "truncates prompts from the left to fit."
            )
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        top_logp, top_ids = logp.topk(self.k, dim=-1)
        values = self.candidate_values(input_ids, top_ids).to(logp.device)
        fused = top_logp + self.weight * values
        out = torch.full_like(scores, -math.inf)
        return out.scatter(-1, top_ids, fused.to(scores.dtype))
