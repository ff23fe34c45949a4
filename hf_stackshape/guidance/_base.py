"""What every guidance processor shares: presets, the sampling-temperature rule, and a deterministic lifetime.

**Temperature.** In transformers 5, ``generate`` runs the user's ``logits_processor`` list *before* its own
sampling warpers (``temperature``, ``top_k``, ``top_p``...). A guidance processor returns fused scores
``base + lambda * guidance``; with ``do_sample=True`` and ``temperature=T != 1`` generate then samples from
``softmax((base + lambda * guidance) / T)``: relative to the base model at temperature ``T`` the guidance
weight silently becomes ``lambda / T`` (and CD, which applies its own base temperature, gets a second one).
So the processors take the base temperature themselves (``temperature=``: ``base / T + lambda * guidance``)
and refuse a ``generate`` temperature other than 1 wherever they can see it
(:meth:`GuidanceProcessor.check_generation_config`, called by :func:`~hf_stackshape.guided_generate`).
"""

from __future__ import annotations

import sys
import weakref
from typing import Optional

from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.configuration_utils import GenerationMode
from transformers.utils import logging

from ..core.presets import FromPresetMixin

logger = logging.get_logger(__name__)

__all__ = ["GuidanceProcessor"]

#: generate's decoding loops (``transformers/generation/utils.py``) that call the logits processors.
_DECODING_LOOPS = ("_sample", "_beam_search", "_assisted_decoding")
_MAX_FRAMES = 12

_SUPPORTED_MODES = (
    GenerationMode.GREEDY_SEARCH,
    GenerationMode.SAMPLE,
    GenerationMode.BEAM_SEARCH,
    GenerationMode.BEAM_SAMPLE,
)


_LIST_CALL = LogitsProcessorList.__call__.__code__


def _calling_processor_list(max_depth: int = 6) -> Optional[LogitsProcessorList]:
    """The ``LogitsProcessorList`` whose ``__call__`` is running up the stack (``None`` when a processor is
    called directly). ``generate`` builds a new list for every call, so the list identifies the call."""
    frame = sys._getframe(2)
    for _ in range(max_depth):
        if frame is None:
            return None
        if frame.f_code is _LIST_CALL:
            owner = frame.f_locals.get("self")
            return owner if isinstance(owner, LogitsProcessorList) else None
        frame = frame.f_back
    return None


class GuidanceProcessor(FromPresetMixin, LogitsProcessor):
    """Base class of [`ARGSLogitsProcessor`] and [`CDLogitsProcessor`] (see the module docstring).

    Subclasses set ``_preset_component`` (the component of :mod:`hf_stackshape.core.presets`) and implement
    :meth:`reset` (free per-generation state) and, when they hold more, :meth:`close`.
    """

    # Per-row state (KV caches matched by token history, per-prompt inputs) assumes generate's static batch.
    supports_continuous_batching = False
    _preset_component: str = ""

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _new_generate_call(self) -> bool:
        """Whether this step belongs to another ``generate`` call than the last step did.

        Token history alone cannot tell: a second ``generate`` whose prompt is the first call's output looks
        exactly like the first call's next step. Each ``generate`` call builds its own ``LogitsProcessorList``,
        so the list calling us identifies the call (held by weak reference). Called directly, outside a
        list, a processor keeps telling calls apart by token history only (``False`` here).
        """
        caller = _calling_processor_list()
        if caller is None:
            return False
        last = getattr(self, "_last_caller", None)
        if last is not None and last() is caller:
            return False
        self._last_caller = weakref.ref(caller)
        return True

    def close(self) -> None:
        """Free every cache the processor holds and detach anything it attached to a model. Idempotent; a closed
        processor can still be used (it rebuilds its caches), but hooks removed by ``close`` stay removed."""
        self.reset()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_generation_config(self, generation_config, assistant_model=None) -> None:
        """Raise ``ValueError`` when ``generate`` with ``generation_config`` would not decode what this processor
        means: a decoding mode other than greedy, sampling and beam search (assisted / prompt-lookup decoding
        call processors on drafted tokens out of order; contrastive search, DoLa...), or a sampling temperature
        that would rescale the fused scores after it.

        Args:
            generation_config (`GenerationConfig`): the configuration ``generate`` will use (the model's own
                updated with the call's keyword arguments).
            assistant_model (`PreTrainedModel`, *optional*): the ``assistant_model`` passed to ``generate``.
        """
        if generation_config is None:
            return
        mode = generation_config.get_generation_mode(assistant_model)
        if mode not in _SUPPORTED_MODES:
            raise ValueError(
                f"{type(self).__name__} supports greedy decoding, sampling and beam search; this generate call "
                f"would use {mode.value}. Drop assistant_model / prompt_lookup_num_tokens / penalty_alpha / "
                "dola_layers (whichever you set)."
            )
        if not getattr(generation_config, "do_sample", False):
            return
        temperature = getattr(generation_config, "temperature", None)
        if temperature is None or float(temperature) == 1.0:
            return
        name = type(self).__name__
        raise ValueError(
            f"generate would sample at temperature={temperature} after {name}: transformers runs logits processors "
            f"before its temperature warper, so the fused score would be divided by {temperature} and lambda would "
            f"become lambda/{temperature} (CD's own temperature would be applied twice). Pass temperature=1.0 to "
            f"generate and give {name} temperature={temperature} instead (the base model's sampling temperature), "
            "or decode greedily (do_sample=False)."
        )

    def _check_decoding_loop(self) -> None:
        """Called by ``__call__`` at each step: find ``generate``'s decoding loop among the callers and refuse
        assisted / prompt-lookup decoding (it calls processors on drafted tokens, out of order: the per-row state
        would silently restart every step), and warn once per ``generate`` call when it samples at a temperature
        that rescales the fused scores (see :meth:`check_generation_config`). Called outside ``generate``
        (a test, a custom loop) it does nothing."""
        frame = sys._getframe(2)
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return
            code = frame.f_code
            if code.co_name in _DECODING_LOOPS and code.co_filename.endswith(("generation/utils.py", "generation\\utils.py")):
                break
            frame = frame.f_back
        else:
            return
        name = type(self).__name__
        if code.co_name == "_assisted_decoding":
            raise ValueError(
                f"{name} cannot guide assisted or prompt-lookup decoding: generate calls logits processors on "
                "drafted tokens that it may reject, so the guidance's per-sequence state would restart at every "
                "step. Drop assistant_model / prompt_lookup_num_tokens from this generate call (greedy decoding, "
                "sampling and beam search are supported)."
            )
        if id(frame) == getattr(self, "_checked_loop", None):
            return
        self._checked_loop = id(frame)
        config = frame.f_locals.get("generation_config")
        try:
            self.check_generation_config(config)
        except ValueError as err:
            logger.warning_once(f"{name} in generate: {err}")

    def _warn_model_temperature(self, model) -> None:
        """Warn when ``model.generation_config`` samples at a temperature (a plain ``generate`` would apply it)."""
        config = getattr(model, "generation_config", None)
        try:
            self.check_generation_config(config)
        except ValueError as err:
            logger.warning_once(
                f"The model's generation_config samples (do_sample=True); in a plain generate: {err}"
            )
