"""Keyed sampling: every random draw of a prompt comes from its own generator, keyed by its global index.

``model.generate(do_sample=True)`` draws from the global RNG for the whole batch at once, so a prompt's
sample depends on which prompts share its batch, on the batch size, and (in a multi-process run) on the
world size. The draws here do not: prompt ``i``'s ``j``-th sample uses a ``torch.Generator`` seeded with
:func:`draw_key` ``(seed, i, j, stream)``, so the same prompt gets the same tokens whatever the batch, the
resume point or the number of ranks (Wang et al., 2026's experiment runs one seed per prompt and method).

* :func:`draw_key`: a 63-bit seed from ``(seed, global index, sample index, stream)`` (SHA-256);
* :func:`keyed_uniform`: one uniform per key (best-of-N's soft selection);
* :class:`KeyedSampler`: a last ``LogitsProcessor`` that applies the sampling warpers (temperature, top-k,
  top-p, min-p) and draws the next token by the Gumbel-max trick with each row's own generator; ``generate``
  then runs greedy (``do_sample=False``) and takes the drawn token. ``argmax(log p + G)`` with ``G`` standard
  Gumbel is a sample of ``p``, so the distribution is the one ``do_sample=True`` samples from.
"""

from __future__ import annotations

import hashlib
import math
from typing import List, Optional, Sequence

import torch
from transformers import LogitsProcessor

__all__ = ["draw_key", "keyed_uniform", "KeyedSampler", "sampling_settings"]


def draw_key(seed: int, index: int, sample: int = 0, stream: str = "sample") -> int:
    """A 63-bit generator seed for draw ``sample`` of prompt ``index`` (its index in the whole job) in ``stream``.

    Examples:

    ```python
    >>> from hf_stackshape.utils.sampling import draw_key
    >>> draw_key(0, 3) == draw_key(0, 3) != draw_key(0, 4)
    True

    ```
    """
    text = f"hf_stackshape:{int(seed)}:{int(index)}:{int(sample)}:{stream}".encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def keyed_uniform(seed: int, indices: Sequence[int], stream: str = "select") -> torch.Tensor:
    """One float64 uniform in ``[0, 1)`` per global prompt index (independent of which others are drawn)."""
    return torch.tensor(
        [torch.rand(1, generator=torch.Generator().manual_seed(draw_key(seed, i, 0, stream)), dtype=torch.float64).item()
         for i in indices],
        dtype=torch.float64,
    )


def sampling_settings(generation_config=None, **overrides) -> dict:
    """``temperature``, ``top_k``, ``top_p``, ``min_p`` as ``generate(do_sample=True)`` would use them: the
    overrides (where not ``None``), then ``generation_config``, then transformers' global defaults."""
    from transformers import GenerationConfig

    defaults = GenerationConfig._get_default_generation_params()
    out = {}
    for key in ("temperature", "top_k", "top_p", "min_p"):
        value = overrides.get(key)
        if value is None and generation_config is not None:
            value = getattr(generation_config, key, None)
        if value is None:
            value = defaults.get(key)
        out[key] = value
    for key in ("typical_p", "epsilon_cutoff", "eta_cutoff"):
        value = getattr(generation_config, key, None) if generation_config is not None else None
        if value not in (None, defaults.get(key)):
            raise ValueError(
                f"generation_config.{key}={value!r} is not supported by keyed sampling (temperature, top_k, top_p "
                f"and min_p are); unset it (generation_config.{key} = None)."
            )
    return out


class KeyedSampler(LogitsProcessor):
    """Draw each row's next token with its own ``torch.Generator``: the last processor of a greedy ``generate``.

    Args:
        keys (`list[int]`): one generator seed per row of the batch (see :func:`draw_key`); rows keep their
            generator across steps, so a row's draws depend on its key alone.
        temperature, top_k, top_p, min_p: the sampling warpers, as in ``generate(do_sample=True)`` (transformers'
            own warper classes, applied in its order); ``None`` / neutral values skip a warper.

    The returned scores are ``0`` at the drawn token and ``-inf`` elsewhere, so greedy decoding picks it.
    """

    def __init__(self, keys: Sequence[int], temperature: Optional[float] = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, min_p: Optional[float] = None):
        from transformers.generation.logits_process import (
            MinPLogitsWarper,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        if not keys:
            raise ValueError("KeyedSampler needs one key per batch row, got none.")
        if temperature is not None and not (float(temperature) > 0 and math.isfinite(float(temperature))):
            raise ValueError(f"`temperature` must be a finite number > 0 to sample, got {temperature!r}.")
        self.keys = [int(k) for k in keys]
        self.generators: List[torch.Generator] = [torch.Generator().manual_seed(k) for k in self.keys]
        self.warpers = []
        if temperature is not None and float(temperature) != 1.0:
            self.warpers.append(TemperatureLogitsWarper(float(temperature)))
        if top_k is not None and int(top_k) != 0:
            self.warpers.append(TopKLogitsWarper(top_k=int(top_k)))
        if top_p is not None and float(top_p) < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=float(top_p)))
        if min_p is not None:
            self.warpers.append(MinPLogitsWarper(min_p=float(min_p)))

    @classmethod
    def expand(cls, keys: Sequence[int], generation_config=None, **overrides) -> "KeyedSampler":
        """A sampler with ``generate(do_sample=True)``'s warpers for ``generation_config`` and ``overrides``."""
        return cls(keys, **sampling_settings(generation_config, **overrides))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(
                f"KeyedSampler was built for {len(self.generators)} rows but the batch has {scores.shape[0]}; build "
                "one sampler per batch, with one key per row (num_return_sequences rows per prompt)."
            )
        warped = scores.float()
        for warper in self.warpers:
            warped = warper(input_ids, warped)
        logp = torch.log_softmax(warped, dim=-1)
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))
        chosen = (logp + gumbel).argmax(dim=-1, keepdim=True)
        out = torch.full_like(scores, -math.inf)
        return out.scatter(-1, chosen, 0.0)
