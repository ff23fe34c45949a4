"""Average reward of responses under a reward function (Wang et al. 2026, section 5), an `evaluate` metric.

Load it offline with ``hf_stackshape.evaluation.load_metric("average_reward")`` (or
``evaluate.load(<path of this folder>)``); the math lives in ``hf_stackshape.evaluation.scores``.
"""

import evaluate

from hf_stackshape.evaluation.module_info import from_config, metric_info
from hf_stackshape.evaluation.scores import reward_scores

_DESCRIPTION = (
    "Mean reward r(prompt, response) over the generations with a bootstrap confidence interval, plus the "
    "per-sample rewards."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the responses.
    prompts (`list[str]`): the prompt of each response.
    reward: a `hf_stackshape.rewards.RewardFunction`, a callable `fn(prompt, response)` / `fn(response)`,
        or a name for `hf_stackshape.rewards.load_reward` ("vader", "length", a reward model id or folder).
        Default: the module's config name (`load_metric("average_reward", config_name="vader")`).
    confidence (`float`, defaults to 0.95), seed (`int`, defaults to 0): the bootstrap interval over prompts.
Returns:
    average_reward (`float`), reward_std, average_reward_ci_low, average_reward_ci_high (`float`), rewards
    (`list[float]`, one per response).
Examples:
    >>> metric = load_metric("average_reward")
    >>> metric.compute(predictions=["Great, glad to help!"], prompts=["Hi"], reward="vader")["rewards"]
    [0.877...]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AverageReward(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, ["predictions", "prompts"], ["srs"])

    def _compute(self, predictions, prompts, reward=None, confidence=0.95, seed=0):
        reward = from_config(
            reward,
            self.config_name,
            "average_reward needs a reward: compute(..., reward='vader' | a RewardFunction | a model id), "
            "or load_metric('average_reward', config_name='vader').",
        )
        return reward_scores(prompts, predictions, reward, confidence=confidence, seed=seed)
