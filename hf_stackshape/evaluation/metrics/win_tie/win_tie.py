"""Win-tie rate of candidate answers against baseline answers through a judge (Wang et al. 2026, section 5),
an `evaluate` metric: (wins + ties) / total, with wins, ties, losses and failed comparisons reported.
"""

import datasets
import evaluate

from hf_stackshape.evaluation.scores import win_tie_scores

_CITATION = """\
@inproceedings{wang2026srs,
  title={Reward Shaping for (Inference-Time) Alignment: A Stackelberg Game Perspective},
  author={Wang and Lin and Kong and Li and Jiang and Tambe},
  booktitle={ICML}, year={2026}, note={arXiv:2602.02572}
}
"""

_DESCRIPTION = "Share of comparisons the candidate wins or ties against the baseline, as decided by a judge."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the candidate answers (e.g. SRS), side "a".
    references (`list[str]`): the baseline answers (e.g. vanilla ARGS), side "b".
    prompts (`list[str]`): the prompts.
    judge: a `hf_stackshape.evaluation.Judge` (`LLMJudge`, `RewardModelJudge`), "llm" (an LLMJudge configured
        from STACKSHAPE_JUDGE_BASE_URL / STACKSHAPE_JUDGE_MODEL / OPENAI_API_KEY), or a reward for a
        RewardModelJudge ("vader", a reward model id, a RewardFunction). Default: the config name.
Returns:
    win_tie, win_rate, tie_rate, loss_rate (`float`), wins, ties, losses, total, failed (`int`),
    failed_indices (`list[int]`), parse_failures (`int`), judgements (`list[dict]`).
Examples:
    >>> load_metric("win_tie").compute(predictions=["Great!"], references=["Bad."], prompts=["Hi"], judge="vader")["win_tie"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WinTie(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "prompts": datasets.Value("string"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2602.02572"],
        )

    def _compute(self, predictions, references, prompts, judge=None):
        if judge is None:
            if self.config_name in (None, "default"):
                raise ValueError(
                    "win_tie needs a judge: compute(..., judge=LLMJudge(...) | 'llm' | 'vader' | a reward), "
                    "or load_metric('win_tie', config_name='llm')."
                )
            judge = self.config_name
        return win_tie_scores(prompts, predictions, references, judge)
