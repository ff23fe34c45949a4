"""Win-tie rate of candidate answers against baseline answers through a judge (Wang et al. 2026, section 5),
an `evaluate` metric: (wins + ties) / total, with wins, ties, losses and failed comparisons reported.
"""

import evaluate

from hf_stackshape.evaluation.module_info import from_config, metric_info
from hf_stackshape.evaluation.scores import win_tie_scores

_DESCRIPTION = "Share of comparisons the candidate wins or ties against the baseline, as decided by a judge."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the candidate answers (e.g. SRS), side "a".
    references (`list[str]`): the baseline answers (e.g. vanilla ARGS), side "b".
    prompts (`list[str]`): the prompts.
    judge: a `hf_stackshape.evaluation.Judge` (`LLMJudge`, `RewardModelJudge`), "llm" (an LLMJudge under the
        paper's protocol, configured from STACKSHAPE_JUDGE_BASE_URL / STACKSHAPE_JUDGE_MODEL /
        STACKSHAPE_JUDGE_API_KEY, or OPENAI_API_KEY for api.openai.com only), or a reward for a
        RewardModelJudge ("vader", a reward model id, a RewardFunction). Default: the config name.
Returns:
    win_tie, win_rate, tie_rate, loss_rate (`float`), wins, ties, losses, total, failed (`int`),
    failed_indices (`list[int]`), parse_failures (`int`: replies counted as ties), api_errors (`int`:
    comparisons the judge could not answer, ties under the paper's tally unless the judge drops them),
    judgements (`list[dict]`).
Examples:
    >>> metric = load_metric("win_tie")
    >>> metric.compute(predictions=["Great!"], references=["Bad."], prompts=["Hi"], judge="vader")["win_tie"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WinTie(evaluate.Metric):
    def _info(self):
        inputs = ["predictions", "references", "prompts"]
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, inputs, ["srs", "args"])

    def _compute(self, predictions, references, prompts, judge=None):
        judge = from_config(
            judge,
            self.config_name,
            "win_tie needs a judge: compute(..., judge=LLMJudge(...) | 'llm' | 'vader' | a reward), "
            "or load_metric('win_tie', config_name='llm').",
        )
        return win_tie_scores(prompts, predictions, references, judge)
