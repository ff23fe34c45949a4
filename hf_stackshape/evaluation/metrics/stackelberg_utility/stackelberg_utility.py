"""The leader's exact utility E_rho[u] under the follower's reweighting rho ∝ exp(r / beta) of N scored samples
per prompt, for each reward transform at each beta (Wang et al. 2026), an `evaluate` metric.

Load it offline with ``hf_stackshape.evaluation.load_metric("stackelberg_utility")``; the math lives in
``hf_stackshape.evaluation.utility``.
"""

import datasets
import evaluate

from hf_stackshape.evaluation.module_info import CITATIONS
from hf_stackshape.evaluation.utility import UTILITY_TRANSFORMS, utility_table

_DESCRIPTION = (
    "E_rho[r_U] (and E_rho[gold]) with rho_i = softmax(shaped_i / beta) over each prompt's N scored samples, per "
    "reward transform (raw, srs, hard, minmax, meanstd, meansoft) and beta, with bootstrap CIs over prompts."
)

_KWARGS_DESCRIPTION = """
Args:
    rewards (`list[list[float]]`): the guiding reward of each prompt's N samples (the calibrator's `rewards`).
    gold_rewards (`list[list[float]]`, *optional*): a gold reward of the same samples.
    betas (`list[float]`): the follower's KL strengths (1/beta is the guidance weight).
    transforms (`list[str]`, *optional*): reward transforms, default raw, srs, hard, minmax, meanstd, meansoft.
    bound, alpha, safeguards, n_resamples, seed: see `hf_stackshape.evaluation.utility.utility_table`.
Returns:
    table (`list[dict]`): one row per (transform, beta) with utility, utility_ci_low, utility_ci_high,
        utility_vs_raw (paired difference) and its CI, the gold_ keys when gold rewards are given, n;
    utility (`dict[str, list[float]]`): mean utility per transform, one value per beta (in the order given);
    gold_utility (`dict[str, list[float]]`): the same on the gold reward, when given.
Examples:
    >>> metric = load_metric("stackelberg_utility")
    >>> out = metric.compute(rewards=[[0.0, 1.0, 2.0]], betas=[1.0], transforms=["raw", "hard"])
    >>> out["utility"]["hard"][0] >= out["utility"]["raw"][0]
    True
"""

_SCORES = datasets.Sequence(datasets.Value("float64"))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StackelbergUtility(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=CITATIONS["srs"],
            inputs_description=_KWARGS_DESCRIPTION,
            # gold_rewards is an optional keyword of compute (evaluate requires every feature column).
            features=datasets.Features({"rewards": _SCORES}),
            reference_urls=["https://arxiv.org/abs/2602.02572"],
        )

    def _compute(self, rewards, gold_rewards=None, betas=None, transforms=UTILITY_TRANSFORMS, **kwargs):
        if not betas:
            raise ValueError("stackelberg_utility needs betas: compute(rewards=..., betas=[2.0, 1.0, 0.5]).")
        table = utility_table(rewards, betas, transforms=transforms, gold_rewards=gold_rewards, **kwargs)
        out = {"table": [{k: v for k, v in row.items() if k != "per_prompt"} for row in table]}
        for key in ("utility", "gold_utility"):
            if gold_rewards is None and key == "gold_utility":
                continue
            curves = {}
            for row in table:
                curves.setdefault(row["transform"], []).append(row[key])
            out[key] = curves
        return out
