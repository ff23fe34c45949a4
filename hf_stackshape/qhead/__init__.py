"""Value / Q heads for Controlled Decoding (Mudgal et al., 2023) trained on Stackelberg-shaped rewards
(SRS-CD, Wang et al., 2026): the model (:class:`QHeadModel`, :class:`QHeadConfig`) and its TRL-style trainer
(:class:`QHeadTrainer`, :class:`QHeadTrainerConfig`)."""

from .configuration_qhead import QHeadConfig
from .modeling_qhead import QHeadModel, QHeadOutput
from .trainer import QHeadTrainer, QHeadTrainerConfig

__all__ = ["QHeadConfig", "QHeadModel", "QHeadOutput", "QHeadTrainer", "QHeadTrainerConfig"]
