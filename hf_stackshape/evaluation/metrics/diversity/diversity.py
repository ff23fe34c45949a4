"""Diversity of responses, prod_{n=2..4} (1 - rep_n) (Wang et al. 2026 and ARGS, Khanov et al. 2024), an
`evaluate` metric.

rep_n = 1 - unique n-grams / total n-grams of one response, over whitespace words (``str.split()``, case
kept); a response shorter than n words has rep_n = 0 for that n. Per-response values are averaged.
The math lives in ``hf_stackshape.evaluation.text_stats``.
"""

import evaluate

from hf_stackshape.evaluation.module_info import metric_info
from hf_stackshape.evaluation.scores import diversity_scores

_DESCRIPTION = (
    "Mean over responses of prod_{n=2..4} (1 - rep_n), rep_n = 1 - unique/total n-grams (whitespace words)."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the responses.
Returns:
    diversity (`float`), diversity_std (`float`), diversities (`list[float]`), rep_2, rep_3, rep_4 (means).
Examples:
    >>> load_metric("diversity").compute(predictions=["a b c d", "a b a b a b"])["diversities"]
    [1.0, 0.1333...]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Diversity(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, ["predictions"], ["srs", "args"])

    def _compute(self, predictions):
        return diversity_scores(predictions)
