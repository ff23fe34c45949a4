"""Score k candidate continuations of many prefixes in one decoder forward, reusing a KV cache.

Reward-guided decoding (ARGS, Khanov et al. 2024; Controlled Decoding, Mudgal et al. 2023; SRS, Wang et
al. 2026) asks a second model -- a reward model or a value head -- about ``k`` candidate next tokens of
every row at every step. The naive way re-encodes the ``k`` full sequences each step (the paper's ARGS
script) or copies the cache ``k`` times (the ARGS reference code). :class:`PrefixKVCache` does neither:

* it keeps ONE :class:`~transformers.DynamicCache` row per generation row, holding the accepted prefix;
* each call it feeds only the tokens that are new: the part of the prefix not cached yet (usually the one
  token generate appended) followed by ``k`` candidate *groups* of ``g`` tokens each (``[v]`` for a value
  head, ``[v, closing tokens...]`` for a chat-formatted reward model). A 4D additive attention mask lets
  every group see the cached prefix, the new prefix tokens and its own earlier tokens, never the other
  groups; position ids continue the prefix (``prefix length + offset in the group``). So all ``k`` groups
  share one copy of the prefix keys/values;
* after the forward the candidate tokens are cropped off the cache, which then holds the prefix only;
* rows are matched to cached rows by their token history before each call, so beam search reordering,
  ``num_return_sequences`` duplicates and rows that left the batch (finished sequences, which callers
  simply stop passing) become one ``reorder_cache`` (an ``index_select``); a row whose history matches
  no cached row triggers a full rebuild, so a stale prefix is never used.

Token masks: a prefix or candidate token marked ``False`` is carried through the model (it occupies a
column) but nobody attends to it and it does not advance the positions -- exactly as if it were absent.
Callers use that for left padding and for tokens the slow (text) path would drop, such as special tokens
removed by ``decode(skip_special_tokens=True)``.

Read-out: for each group, the hidden state of its last token that is kept and not in ``readout_skip_ids``
(sequence-classification heads pool the rightmost token that is not the pad token); a group without such
a token reads the prefix's own last hidden state (the group added nothing visible).

Requirements: a decoder whose backbone forward takes ``cache=`` and a custom 4D float mask (``eager`` or
``sdpa`` attention: Llama, Qwen2/3, Mistral, Gemma, SmolLM2...), full attention over the whole length.
:func:`prefix_cache_support` says why a model cannot be used.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from transformers import DynamicCache
from transformers.utils import logging

from .modeling import decoder_stack

logger = logging.get_logger(__name__)

__all__ = ["CandidateStates", "PrefixKVCache", "prefix_cache_support", "resolve_backbone"]

_MASKABLE_ATTENTION = ("eager", "sdpa")


@dataclass
class CandidateStates:
    """What :meth:`PrefixKVCache.score_candidates` returns (all on the model's device, model dtype).

    Attributes:
        hidden (`torch.Tensor` of shape `(n, k, H)`): read-out hidden state of each candidate group.
        group_hidden (`torch.Tensor` of shape `(n, k, g, H)`): last hidden state of every candidate token.
        prefix_hidden (`torch.Tensor` of shape `(n, H)`): read-out hidden state of the prefix alone.
    """

    hidden: torch.Tensor
    group_hidden: torch.Tensor
    prefix_hidden: torch.Tensor


#: The decoder stack of ``model`` (:func:`hf_stackshape.utils.modeling.decoder_stack`; the old name, kept).
resolve_backbone = decoder_stack


def prefix_cache_support(model: torch.nn.Module) -> Optional[str]:
    """``None`` when :class:`PrefixKVCache` can drive ``model``, else the reason it cannot (for a log line)."""
    backbone = decoder_stack(model)
    config = getattr(backbone, "config", None)
    if config is None:
        return f"{type(model).__name__} has no config"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    if not getattr(config, "is_causal", True):
        return "the model does not use causal attention"
    try:
        params = inspect.signature(backbone.forward).parameters
    except (TypeError, ValueError):
        return "cannot inspect the backbone's forward signature"
    if "cache" not in params:
        return f"{type(backbone).__name__}.forward takes no `cache=` argument"
    attn = getattr(config, "_attn_implementation", None) or "eager"
    if attn not in _MASKABLE_ATTENTION:
        return f"attention implementation {attn!r} does not take a custom 4D mask (use 'sdpa' or 'eager')"
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(text_config, "layer_types", None) or []
    if any("sliding" in str(t) or "linear" in str(t) or "chunk" in str(t) for t in layer_types):
        return "sliding-window / linear-attention layers are not supported"
    return None


class PrefixKVCache:
    """Keeps a decoder's KV cache over each row's accepted prefix; scores ``k`` candidate groups per row in
    one forward over the new tokens only (see the module docstring for the design).

    Args:
        model (`torch.nn.Module`):
            A decoder (``LlamaModel``) or a model wrapping one (``LlamaForCausalLM``,
            ``LlamaForSequenceClassification``, also under peft); the backbone is found by
            :func:`~hf_stackshape.utils.modeling.decoder_stack`.
        readout_skip_ids (`Iterable[int]`, *optional*):
            Token ids never used as the read-out position of a group (e.g. the pad token, which
            sequence-classification heads skip when pooling).

    Examples:

    ```python
    >>> cache = PrefixKVCache(reward_model.model, readout_skip_ids=[pad_id])  # doctest: +SKIP
    >>> states = cache.score_candidates(prefix_ids, prefix_mask, candidates)  # candidates: (n, k, g)
    >>> rewards = reward_model.model.score(states.hidden).squeeze(-1)  # (n, k)
    ```
    """

    def __init__(self, model: torch.nn.Module, readout_skip_ids: Optional[Iterable[int]] = None):
        reason = prefix_cache_support(model)
        if reason is not None:
            raise ValueError(f"PrefixKVCache cannot drive {type(model).__name__}: {reason}.")
        self.backbone = decoder_stack(model)
        self.readout_skip_ids = sorted({int(i) for i in (readout_skip_ids or [])})
        self.peak_nbytes = 0
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget every cached row (the next call encodes the prefixes from scratch)."""
        self.cache: Optional[DynamicCache] = None
        self._ids: Optional[torch.Tensor] = None  # (n_c, L_c) prefix token history per cached row
        self._mask: Optional[torch.Tensor] = None  # (n_c, L_c) kept tokens
        self._next_pos: Optional[torch.Tensor] = None  # (n_c,) position of the next kept token
        self._last_hidden: Optional[torch.Tensor] = None  # (n_c, H) read-out of the prefix alone
        # KV and hidden state of every group's first token from the last call: when the next call's new
        # column is one of those tokens (the usual step: the chosen candidate), its KV is appended from
        # here instead of being recomputed -- it saw exactly the prefix and itself at the same position.
        self._stash: Optional[dict] = None
        #: How many calls reused the cache, reordered it, or rebuilt it (for tests and logs).
        self.stats = {"reused": 0, "reordered": 0, "rebuilt": 0, "recycled": 0}

    @property
    def batch_size(self) -> int:
        """Rows held in the KV cache (never multiplied by the number of candidates)."""
        return 0 if self._ids is None else int(self._ids.shape[0])

    @property
    def seq_length(self) -> int:
        """Prefix columns held in the KV cache (candidate tokens are cropped after every call)."""
        return 0 if self.cache is None else int(self.cache.get_seq_length())

    @property
    def nbytes(self) -> int:
        """Bytes held now by the cached keys and values (all layers, all rows; the prefix only between calls)."""
        if self.cache is None:
            return 0
        return sum(
            t.numel() * t.element_size()
            for layer in self.cache.layers
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
            if isinstance(t, torch.Tensor)
        )

    @property
    def bytes_per_row(self) -> float:
        """:attr:`nbytes` per cached row: what one generation row costs at the current prefix length
        (:attr:`seq_length` columns; it grows by :meth:`bytes_per_token` with every accepted token)."""
        return self.nbytes / self.batch_size if self.batch_size else 0.0

    def bytes_per_token(self) -> int:
        """Bytes one cached column of one row takes: ``2 (K and V) x layers x kv heads x head dim x dtype size``."""
        config = self.backbone.config.get_text_config() if hasattr(self.backbone.config, "get_text_config") else self.backbone.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        size = torch.empty(0, dtype=self.dtype).element_size()
        return 2 * config.num_hidden_layers * heads * head_dim * size

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    def _match_rows(self, ids: torch.Tensor, mask: torch.Tensor) -> Optional[torch.Tensor]:
        """Cached row for each new row (its history equals the new row's first L_c columns), or ``None``.

        Returns ``arange`` when nothing moved; ``None`` when some row has no cached counterpart.
        """
        n, length = ids.shape
        n_c, cached_len = self._ids.shape
        if length < cached_len:
            return None
        head_ids, head_mask = ids[:, :cached_len], mask[:, :cached_len]
        if n == n_c:
            same = ((head_ids == self._ids) & (head_mask == self._mask)).all(-1)
            if bool(same.all()):
                return torch.arange(n, device=ids.device)
        # Beam search reorders rows, finished rows leave: match every row against every cached row.
        match = ((head_ids[:, None, :] == self._ids[None]) & (head_mask[:, None, :] == self._mask[None])).all(-1)
        if not bool(match.any(-1).all()):
            return None
        eye = torch.zeros_like(match)
        diag = min(n, n_c)
        eye[torch.arange(diag), torch.arange(diag)] = True
        # Prefer a row's own cached row (no copy), else the first cached row with the same history.
        own = (match & eye).any(-1)
        return torch.where(own, torch.arange(n, device=ids.device), match.float().argmax(-1))

    def _sync(self, ids: torch.Tensor, mask: torch.Tensor) -> int:
        """Align the cache with the new rows; return how many prefix columns are already cached."""
        if self.cache is None:
            return 0
        idx = self._match_rows(ids, mask)
        if idx is None:
            self.stats["rebuilt"] += 1
            self._drop_cache()
            return 0
        moved = idx.shape[0] != self._ids.shape[0] or not bool((idx == torch.arange(len(idx), device=idx.device)).all())
        if moved:
            self._stash = None
            self.cache.reorder_cache(idx.to(self.device))
            dev = idx.to(self._ids.device)
            self._ids, self._mask = self._ids[dev], self._mask[dev]
            self._next_pos = self._next_pos[dev]
            self._last_hidden = self._last_hidden[idx.to(self._last_hidden.device)]
            self.stats["reordered"] += 1
        else:
            self.stats["reused"] += 1
        return int(self._ids.shape[1])

    def _drop_cache(self) -> None:
        stats = self.stats
        self.reset()
        self.stats = stats

    # ------------------------------------------------------------------ forward

    @torch.no_grad()
    def score_candidates(
        self,
        prefix_ids: torch.Tensor,
        prefix_mask: Optional[torch.Tensor],
        candidates: torch.Tensor,
        candidate_mask: Optional[torch.Tensor] = None,
    ) -> CandidateStates:
        """Extend the cache to ``prefix_ids`` and return hidden states of the ``k`` candidate groups per row.

        Args:
            prefix_ids (`torch.LongTensor` of shape `(n, L)`):
                The whole accepted prefix of each row, column-aligned across calls (left padding first,
                then the tokens in order); a call with one more column than the last is the usual step.
            prefix_mask (`torch.BoolTensor` of shape `(n, L)`, *optional*):
                ``False`` for padding and dropped tokens; all ``True`` if omitted.
            candidates (`torch.LongTensor` of shape `(n, k, g)`):
                ``k`` groups of ``g`` tokens to append (each alone) to every row's prefix.
            candidate_mask (`torch.BoolTensor` of shape `(n, k, g)`, *optional*): ``False`` drops a token.

        Returns:
            [`CandidateStates`]: read-out and per-token hidden states; the cache keeps the prefix only.
        """
        device = self.device
        prefix_ids = prefix_ids.to(device)
        prefix_mask = (
            torch.ones_like(prefix_ids, dtype=torch.bool) if prefix_mask is None else prefix_mask.to(device).bool()
        )
        if candidates.ndim != 3 or candidates.shape[0] != prefix_ids.shape[0]:
            raise ValueError(
                f"`candidates` must have shape (n, k, g) with n={prefix_ids.shape[0]} rows, got {tuple(candidates.shape)}."
            )
        candidates = candidates.to(device)
        n, k, g = candidates.shape
        cand_mask = (
            torch.ones_like(candidates, dtype=torch.bool) if candidate_mask is None else candidate_mask.to(device).bool()
        )

        cached_len = self._sync(prefix_ids, prefix_mask)
        if self.cache is None:
            self.cache = DynamicCache()
            self._next_pos = torch.zeros(n, dtype=torch.long, device=device)
            self._last_hidden = None
        cached_len = self._recycle(prefix_ids, prefix_mask, cached_len)
        self._stash = None
        new_ids, new_mask = prefix_ids[:, cached_len:], prefix_mask[:, cached_len:]
        m, kg = new_ids.shape[1], k * g
        flat_cand, flat_cmask = candidates.reshape(n, kg), cand_mask.reshape(n, kg)

        # Positions: kept tokens count; dropped ones reuse the last position (they are invisible anyway).
        new_pos = self._next_pos[:, None] + new_mask.long().cumsum(-1) - 1
        after = self._next_pos + new_mask.long().sum(-1)
        cand_pos = after[:, None, None] + cand_mask.long().cumsum(-1) - 1
        positions = torch.cat([new_pos, cand_pos.reshape(n, kg)], dim=-1).clamp(min=0)

        allowed = self._attention(cached_len, new_mask, flat_cmask, k, g)
        dtype = self.dtype
        mask4d = torch.zeros(allowed.shape, dtype=dtype, device=device)
        mask4d.masked_fill_(~allowed, torch.finfo(dtype).min)

        tokens = torch.cat([new_ids, flat_cand], dim=-1)
        out = self.backbone(
            input_ids=tokens,
            attention_mask=mask4d[:, None],
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
        )
        # With device_map the last layer may sit on another device than the embeddings: states live on `device`.
        hidden = out.last_hidden_state.to(device)
        #: Largest :attr:`nbytes` seen right after a forward (prefix plus the k candidate groups), since the
        #: cache was built; kept across :meth:`reset` so a finished generation can still be read.
        self.peak_nbytes = max(self.peak_nbytes, self.nbytes)
        if kg:
            first = cached_len + m + torch.arange(k, device=device) * g
            self._stash = {
                "ids": candidates[:, :, 0],
                "kept": cand_mask[:, :, 0],
                "hidden": hidden[:, m + torch.arange(k, device=device) * g],
                "kv": [(layer.keys[:, :, first], layer.values[:, :, first]) for layer in self.cache.layers],
            }
            self.cache.crop(-kg)

        # Read-out of the prefix alone: its last kept, readable token (new one if any, else the stored one).
        readable_new = new_mask & ~self._skip(new_ids)
        if self._last_hidden is None:
            self._last_hidden = torch.zeros(n, hidden.shape[-1], dtype=hidden.dtype, device=device)
        if m:
            last_new = self._last_index(readable_new)
            has_new = readable_new.any(-1)
            picked = hidden[torch.arange(n, device=device), last_new]
            self._last_hidden = torch.where(has_new[:, None], picked, self._last_hidden)

        group_hidden = hidden[:, m:].reshape(n, k, g, -1)
        readable = cand_mask & ~self._skip(candidates)
        last = self._last_index(readable)  # (n, k)
        index = last[..., None, None].expand(n, k, 1, group_hidden.shape[-1])
        read = torch.gather(group_hidden, 2, index).squeeze(2)
        read = torch.where(readable.any(-1)[..., None], read, self._last_hidden[:, None, :])

        self._ids, self._mask, self._next_pos = prefix_ids.clone(), prefix_mask.clone(), after
        return CandidateStates(hidden=read, group_hidden=group_hidden, prefix_hidden=self._last_hidden)

    def _recycle(self, prefix_ids: torch.Tensor, prefix_mask: torch.Tensor, cached_len: int) -> int:
        """Append the new column's KV from the last call's candidates when every row took one of them."""
        stash = self._stash
        if stash is None or self.cache is None or prefix_ids.shape[1] != cached_len + 1:
            return cached_len
        if stash["ids"].shape[0] != prefix_ids.shape[0]:
            return cached_len
        new_ids, new_mask = prefix_ids[:, -1], prefix_mask[:, -1]
        hits = (stash["ids"] == new_ids[:, None]) & stash["kept"]
        if not bool((hits.any(-1) | ~new_mask).all()) or not bool(new_mask.all()):
            return cached_len
        choice = hits.float().argmax(-1)
        rows = torch.arange(prefix_ids.shape[0], device=choice.device)
        for layer, (keys, values) in zip(self.cache.layers, stash["kv"]):
            layer.keys = torch.cat([layer.keys, keys[rows, :, choice].unsqueeze(2)], dim=-2)
            layer.values = torch.cat([layer.values, values[rows, :, choice].unsqueeze(2)], dim=-2)
        readable = ~self._skip(new_ids)
        picked = stash["hidden"][rows, choice]
        self._last_hidden = torch.where(readable[:, None], picked, self._last_hidden)
        self._ids, self._mask = prefix_ids.clone(), prefix_mask.clone()
        self._next_pos = self._next_pos + 1
        self.stats["recycled"] += 1
        return cached_len + 1

    def _skip(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.readout_skip_ids:
            return torch.zeros_like(ids, dtype=torch.bool)
        return torch.isin(ids, torch.tensor(self.readout_skip_ids, device=ids.device))

    @staticmethod
    def _last_index(flags: torch.Tensor) -> torch.Tensor:
        """Index of the last ``True`` along the last dim (0 when none)."""
        positions = torch.arange(flags.shape[-1], device=flags.device)
        return (flags.long() * (positions + 1)).argmax(-1)

    def _attention(self, cached_len: int, new_mask, cand_mask, k: int, g: int) -> torch.Tensor:
        """Boolean (n, q, cached_len + q) mask: who sees whom among cached, new-prefix and candidate tokens."""
        n, m = new_mask.shape
        kg = k * g
        q = m + kg
        device = new_mask.device
        allowed = torch.zeros(n, q, cached_len + q, dtype=torch.bool, device=device)
        if cached_len:
            allowed[:, :, :cached_len] = self._mask[:, None, :]
        if m:
            causal = torch.ones(m, m, dtype=torch.bool, device=device).tril()
            allowed[:, :m, cached_len : cached_len + m] = causal[None] & new_mask[:, None, :]
            allowed[:, m:, cached_len : cached_len + m] = new_mask[:, None, :]
        if kg:
            group = torch.arange(kg, device=device) // g
            block = (group[:, None] == group[None, :]) & torch.ones(kg, kg, dtype=torch.bool, device=device).tril()
            allowed[:, m:, cached_len + m :] = block[None] & cand_mask[:, None, :]
        # Every token sees itself: dropped tokens and padding then never produce an all-masked row.
        diag = torch.arange(q, device=device)
        allowed[:, diag, cached_len + diag] = True
        return allowed
