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
from transformers import LogitsProcessor
from transformers.utils import logging

from ..qhead.modeling_qhead import QHeadModel, backbone_decoder, last_hidden_state_module
from ._checks import check_k_and_weight
from ._prefix_cache import PrefixKVCache

logger = logging.get_logger(__name__)

__all__ = ["CDLogitsProcessor"]


class CDLogitsProcessor(LogitsProcessor):
    r"""Controlled Decoding (Mudgal et al., 2023) guided by a value or Q head, e.g. one trained on Stackelberg
    shaped rewards (SRS-CD, Wang et al., 2026).

    At each step the top-``k`` tokens of ``log_softmax(scores / temperature)`` get
    ``fused = logp + weight * value`` and every other token ``-inf``; with ``do_sample=False`` this is CD-greedy,
    with ``do_sample=True`` CD-stochastic (sampling from ``softmax(fused)``). Works with batches (left padding),
    finished (EOS) rows, ``num_return_sequences``, beam search and repeated ``generate`` calls.

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
    ```
    """

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
    ):
        if not isinstance(qhead, QHeadModel):
            raise ValueError(f"`qhead` must be a QHeadModel, got {type(qhead).__name__}; load one with QHeadModel.from_pretrained.")
        weight = check_k_and_weight(k, weight)
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"`temperature` must be a positive finite number, got {temperature!r}.")
        vocab = qhead.config.vocab_size
        if tokenizer is not None and vocab is not None and len(tokenizer) > vocab:
            raise ValueError(
                f"The Q-head's vocabulary ({vocab} tokens) does not cover the base tokenizer ({len(tokenizer)} tokens); "
                "train the head on a backbone that shares the base model's tokenizer."
            )
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
        self.temperature = float(temperature)
        self.share_hidden_states = bool(share_hidden_states)
        if pad_token_id is None and base_model is not None:
            pad_token_id = base_model.generation_config.pad_token_id
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id
        self.pad_token_id = pad_token_id
        # KV cache of the head's own backbone over the accepted prefixes (shared with ARGS' reward scoring).
        self._state = None if self.share_hidden_states else PrefixKVCache(backbone_decoder(qhead.backbone))
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

    # ---------------------------------------------------------------------------------------------- hooks

    def _capture_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    def _capture_hidden(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self._hidden = hidden[:, -1].detach()

    def remove_hooks(self) -> None:
        """Detach the hooks placed on ``base_model`` (the processor then needs its own backbone pass)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self.share_hidden_states = False

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
            hidden = hidden.to(qhead.head_dtype)
            actions = candidates.to(hidden.device)
            return qhead.head.gather(hidden.unsqueeze(1).expand(-1, actions.shape[1], -1), actions).float()
        states = self._state.score_candidates(input_ids, self._attention_mask(input_ids).bool(), candidates.unsqueeze(-1))
        return qhead.head(states.hidden.to(qhead.head_dtype)).float()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._check_vocab(scores)
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        k = min(self.k, scores.shape[-1])
        top_logp, top_ids = logp.topk(k, dim=-1)
        values = self.candidate_values(input_ids, top_ids).to(logp.device)
        fused = top_logp + self.weight * values
        out = torch.full_like(scores, -math.inf)
        return out.scatter(-1, top_ids, fused.to(scores.dtype))
