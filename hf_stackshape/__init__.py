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

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    # shaping core
    "solve_threshold": "shaping",
    "bisect_threshold": "shaping",
    "threshold_objective": "shaping",
    "ThresholdSafeguards": "shaping",
    "ARGS_SAFEGUARDS": "shaping",
    "CD_SAFEGUARDS": "shaping",
    "RewardTransform": "shaping",
    "get_transform": "shaping",
    "TRANSFORMS": "shaping",
    # reward adapters
    "RewardFunction": "rewards",
    "HFRewardModel": "rewards",
    "CallableReward": "rewards",
    "load_reward": "rewards",
    # embedded defaults
    "load_smollm2": "defaults",
    "load_minilm": "defaults",
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
    "generate_responses": "generation",
    "parse_method": "generation",
    "SweepConfig": "sweep",
    "run_sweep": "sweep",
    "plot_sweep": "sweep",
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
    from .bon import BestOfNOutput, StackelbergBestOfN, best_of_n_grid
    from .calibration import CalibrationConfig, ThresholdCalibrator, map_thresholds, recompute_thresholds
    from .evaluation import load_metric
    from .evaluation.judges import LLMJudge, RewardModelJudge
    from .evaluation.utility import plot_utility, utility_table
    from .generation import generate_responses, parse_method
    from .sweep import SweepConfig, plot_sweep, run_sweep
    from .defaults import load_minilm, load_smollm2
    from .guidance.args import ARGSLogitsProcessor
    from .guidance.cd import CDLogitsProcessor
    from .guidance.guided import guided_generate
    from .qhead.configuration_qhead import QHeadConfig
    from .qhead.modeling_qhead import QHeadModel
    from .qhead.trainer import QHeadTrainer, QHeadTrainerConfig
    from .rewards import CallableReward, HFRewardModel, RewardFunction, load_reward
    from .shaping import (
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
