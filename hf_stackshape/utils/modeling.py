"""Where a model's parts are (layer 0): the decoder stack under a task head or a peft wrapper, and its final norm.

Reward-guided decoding (ARGS, Khanov et al. 2024; CD, Mudgal et al. 2023; SRS, Wang et al. 2026) runs a second
model's decoder without its head (the KV-cache scorer, a Q-head's backbone) and hooks the base model's last
hidden state. Both find the decoder here, one rule for every caller.
"""

from __future__ import annotations

from torch import nn

__all__ = ["unwrap_peft", "decoder_stack", "last_hidden_state_module"]


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The model under a ``peft.PeftModel`` (LoRA layers are injected in place, so they stay in it); else ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_stack(model: nn.Module) -> nn.Module:
    """The decoder stack of ``model`` (the layers and final norm, no task head).

    ``LlamaForCausalLM`` / ``LlamaForSequenceClassification`` -> their ``LlamaModel``; a decoder -> itself;
    through a peft wrapper. A transformers model answers with its own ``get_decoder()``; another module with
    ``model.<base_model_prefix>`` when it has one, else itself.
    """
    model = unwrap_peft(model)
    if callable(getattr(model, "get_decoder", None)):
        return model.get_decoder()
    prefix = getattr(model, "base_model_prefix", None)
    inner = getattr(model, prefix, None) if prefix else None
    return inner if isinstance(inner, nn.Module) else model


def last_hidden_state_module(model: nn.Module) -> nn.Module:
    """The module whose output is the decoder's last hidden state (the final norm), for forward hooks."""
    decoder = decoder_stack(model)
    for name in ("norm", "final_layernorm", "ln_f", "final_layer_norm"):
        if isinstance(getattr(decoder, name, None), nn.Module):
            return getattr(decoder, name)
    raise ValueError(
        f"Cannot find the final norm of {type(decoder).__name__} to capture its last hidden state; pass "
        "share_hidden_states=False to CDLogitsProcessor so the Q-head runs its own backbone pass."
    )
