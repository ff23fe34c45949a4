"""Average reward of responses under a reward function (Wang et al. 2026, section 5), an `evaluate` metric.

Load it offline with ``hf_stackshape.evaluation.load_metric("average_reward")`` (or
``evaluate.load(<path of this folder>)``); the math lives in ``hf_stackshape.evaluation.scores``.
"""

import datasets
import evaluate

from hf_stackshape.evaluation.scores import reward_scores

_CITATION = """\
@inproceedings{wang2026srs,
  title={Reward Shaping for (Inference-Time) Alignment: A Stackelberg Game Perspective},
  author={Wang and Lin and Kong and Li and Jiang and Tambe},
  booktitle={ICML}, year={2026}, note={arXiv:2602.02572}
}
"""

_DESCRIPTION = "Mean reward r(prompt, response) over the generations, plus the per-sample rewards."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the responses.
    prompts (`list[str]`): the prompt of each response.
    reward: a `hf_stackshape.rewards.RewardFunction`, a callable `fn(prompt, response)` / `fn(response)`,
        or a name for `hf_stackshape.rewards.load_reward` ("vader", "length", a reward model id or folder).
        Default: the module's config name (`load_metric("average_reward", config_name="vader")`).
Returns:
    average_reward (`float`), reward_std (`float`), rewards (`list[float]`, one per response).
Examples:
    >>> metric = load_metric("average_reward")
    >>> metric.compute(predictions=["Great, glad to help!"], prompts=["Hi"], reward="vader")["rewards"]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AverageReward(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "prompts": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/2602.02572"],
        )

    def _compute(self, predictions, prompts, reward=None):
        if reward is None:
            if self.config_name in (None, "default"):
                raise ValueError(
                    "average_reward needs a reward: compute(..., reward='vader' | a RewardFunction | a model id), "
                    "or load_metric('average_reward', config_name='vader')."
                )
            reward = self.config_name
        return reward_scores(prompts, predictions, reward)
