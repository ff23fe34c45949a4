"""Calibration: the per-prompt Stackelberg threshold ``m*(x)`` from base-policy samples (SRS-CD's offline half).

One idea per module:

* :mod:`.config`: :class:`CalibrationConfig`, the settings (``from_preset("paper")`` for the authors');
* :mod:`.calibrator`: :class:`ThresholdCalibrator`, sampling and scoring N responses per prompt, as a
  resumable run (:mod:`hf_stackshape.utils.runs`);
* :mod:`.store`: the run's on-disk chunks (checksummed sidecars) and final outputs;
* :mod:`.thresholds`: :func:`recompute_thresholds` and :func:`map_thresholds`, from stored rewards.
"""

from .calibrator import ThresholdCalibrator
from .config import CalibrationConfig
from .store import chunk_seed
from .thresholds import map_thresholds, recompute_thresholds

_chunk_seed = chunk_seed  # the old private name, kept

__all__ = ["CalibrationConfig", "ThresholdCalibrator", "recompute_thresholds", "map_thresholds", "chunk_seed"]
