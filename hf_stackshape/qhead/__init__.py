"""Value / Q heads for Controlled Decoding (Mudgal et al., 2023) trained on Stackelberg-shaped rewards
(SRS-CD, Wang et al., 2026): the model (:class:`QHeadModel`, :class:`QHeadConfig`) and its TRL-style trainer
(:class:`QHeadTrainer`, :class:`QHeadTrainerConfig`).

Submodules are imported on first use (the trainer pulls in `transformers.Trainer`), so registering the Auto
classes at ``import hf_stackshape`` stays cheap.
"""

from ..utils._lazy import lazy_getattr

_EXPORTS = {
    "QHeadConfig": "configuration_qhead",
    "QHeadModel": "modeling_qhead",
    "QHeadOutput": "modeling_qhead",
    "QHeadTrainer": "trainer",
    "QHeadTrainerConfig": "trainer",
}

__all__ = sorted(_EXPORTS) + ["register_auto_classes"]


def register_auto_classes() -> None:
    """Register [`QHeadConfig`] with `transformers.AutoConfig` and [`QHeadModel`] with `transformers.AutoModel`
    (model type ``stackshape_qhead``), so ``AutoConfig.from_pretrained(head)`` and ``AutoModel.from_pretrained(head)``
    read a saved Q-head. Called when ``hf_stackshape`` is imported; safe to call again."""
    from transformers import AutoConfig, AutoModel

    from .configuration_qhead import QHeadConfig
    from .modeling_qhead import QHeadModel

    AutoConfig.register(QHeadConfig.model_type, QHeadConfig, exist_ok=True)
    AutoModel.register(QHeadConfig, QHeadModel, exist_ok=True)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
