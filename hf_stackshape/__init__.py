"""hf_stackshape: Stackelberg reward shaping for inference-time alignment with Hugging Face Transformers.

Implements Wang, Lin, Kong, Li, Jiang, Tambe, "Reward Shaping for (Inference-Time) Alignment: A
Stackelberg Game Perspective" (arXiv 2602.02572, ICML 2026) on top of two decoding-time alignment
methods: ARGS (Khanov et al., 2024) and Controlled Decoding, CD (Mudgal et al., 2023).

The pipeline, module by module:

1. ``shaping``      - pure math: the optimal threshold ``m*(x)`` and the reward transforms (SRS, baselines);
2. ``rewards``      - reward adapters (HF reward models, Python callables);
3. ``calibration``  - :class:`ThresholdCalibrator`, ``m*(x)`` per prompt from base-policy samples;
4. ``guidance``     - :class:`ARGSLogitsProcessor`, :class:`CDLogitsProcessor` for ``model.generate``;
   ``bon``          - :class:`StackelbergBestOfN`, the follower's best response on N samples (a third method);
5. ``qhead``        - :class:`QHeadModel` and :class:`QHeadTrainer` (value / Q heads on shaped rewards);
6. ``evaluation``   - metrics (``evaluate`` modules), judges, sweeps and plots.

Heavy submodules are imported on first use. Importing the package registers the Q-head with
`transformers.AutoConfig` / `AutoModel` (model type ``stackshape_qhead``), so saved heads load through the Auto
classes too.
"""

from typing import TYPE_CHECKING

from . import _compat
from .utils._lazy import lazy_getattr
from .utils._version import __version__

_compat.install()

_EXPORTS = {
    # shaping core
    "solve_threshold": "core.shaping",
    "bisect_threshold": "core.shaping",
    "threshold_objective": "core.shaping",
    "ThresholdSafeguards": "core.shaping",
    "ARGS_SAFEGUARDS": "core.shaping",
    "CD_SAFEGUARDS": "core.shaping",
    "RewardTransform": "core.shaping",
    "get_transform": "core.shaping",
    "TRANSFORMS": "core.shaping",
    # reward adapters
    "RewardFunction": "rewards",
    "HFRewardModel": "rewards",
    "CallableReward": "rewards",
    "load_reward": "rewards",
    # embedded defaults
    "load_smollm2": "assets.defaults",
    "load_minilm": "assets.defaults",
    # calibration
    "ThresholdCalibrator": "calibration",
    "CalibrationConfig": "calibration",
    "recompute_thresholds": "calibration",
    "map_thresholds": "calibration",
    # Stackelberg best-of-N and the exact utility metric
    "StackelbergBestOfN": "bon",
    "BestOfNOutput": "bon",
    "best_of_n_grid": "bon",
    "utility_table": "evaluation.utility",
    "plot_utility": "evaluation.utility",
    # batched generation by method name, sweeps
    "generate_responses": "pipeline.generation",
    "DecodingSettings": "core.decoding",
    "parse_method": "pipeline.generation",
    "SweepConfig": "pipeline.sweep",
    "run_sweep": "pipeline.sweep",
    "plot_sweep": "pipeline.sweep",
    # evaluation
    "load_metric": "evaluation",
    "RewardModelJudge": "evaluation.judges",
    "LLMJudge": "evaluation.judges",
    # guidance
    "ARGSLogitsProcessor": "guidance.args",
    "CDLogitsProcessor": "guidance.cd",
    "guided_generate": "guidance.guided",
    # Q-heads
    "QHeadConfig": "qhead.configuration_qhead",
    "QHeadModel": "qhead.modeling_qhead",
    "QHeadTrainerConfig": "qhead.trainer",
    "QHeadTrainer": "qhead.trainer",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def _register_auto_classes() -> None:
    from .qhead import register_auto_classes

    register_auto_classes()


_register_auto_classes()


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__():
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .assets.defaults import load_minilm, load_smollm2
    from .bon import BestOfNOutput, StackelbergBestOfN, best_of_n_grid
    from .calibration import CalibrationConfig, ThresholdCalibrator, map_thresholds, recompute_thresholds
    from .core.shaping import (
        ARGS_SAFEGUARDS,
        CD_SAFEGUARDS,
        TRANSFORMS,
        RewardTransform,
        ThresholdSafeguards,
        bisect_threshold,
        get_transform,
        solve_threshold,
        threshold_objective,
    )
    from .evaluation import load_metric
    from .evaluation.judges import LLMJudge, RewardModelJudge
    from .evaluation.utility import plot_utility, utility_table
    from .guidance.args import ARGSLogitsProcessor
    from .guidance.cd import CDLogitsProcessor
    from .guidance.guided import guided_generate
    from .core.decoding import DecodingSettings
    from .pipeline.generation import generate_responses, parse_method
    from .pipeline.sweep import SweepConfig, plot_sweep, run_sweep
    from .qhead.configuration_qhead import QHeadConfig
    from .qhead.modeling_qhead import QHeadModel
    from .qhead.trainer import QHeadTrainer, QHeadTrainerConfig
    from .rewards.adapters import CallableReward, HFRewardModel, RewardFunction
    from .rewards.registry import load_reward
