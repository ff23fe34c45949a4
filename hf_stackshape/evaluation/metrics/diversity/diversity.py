"""Diversity of responses, prod_{n=2..4} (1 - rep_n) (Wang et al. 2026 and ARGS, Khanov et al. 2024), an
`evaluate` metric.

By default the paper's definition, as in the authors' metrics script: each response is cut at the next
"\n\nHuman:" turn, split into NLTK word tokens, and rep_n = 1 - unique n-grams / (total n-grams + 1); a
response shorter than n words gets the factor 0. ``definition="ours"`` (or ``config_name="ours"``) uses
whitespace words and rep_n = 1 - unique / total. Per-response values are averaged, with a seeded 95%
bootstrap confidence interval. The math lives in ``hf_stackshape.evaluation.text_stats``.
"""

import evaluate

from hf_stackshape.evaluation.module_info import metric_info
from hf_stackshape.evaluation.scores import diversity_scores

_DESCRIPTION = (
    "Mean over responses of prod_{n=2..4} (1 - rep_n), rep_n = 1 - unique/(total + 1) n-grams of NLTK words "
    "(the paper's definition; 'ours': whitespace words, unique/total), with a bootstrap confidence interval."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the responses.
    definition (`str`, optional): "paper" (the authors' metrics script) or "ours". Default: the config name
        when it is one of those, else "paper".
    confidence (`float`, defaults to 0.95), seed (`int`, defaults to 0): the bootstrap interval over responses.
Returns:
    diversity (`float`), diversity_std, diversity_ci_low, diversity_ci_high (`float`), diversities
    (`list[float]`), rep_2, rep_3, rep_4 (means), diversity_definition (`str`).
Examples:
    >>> load_metric("diversity").compute(predictions=["a b c d e", "a b a b a b"])["diversities"]
    [0.4, 0.0666...]
    >>> load_metric("diversity", config_name="ours").compute(predictions=["a b a b a b"])["diversities"]
    [0.1333...]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Diversity(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, ["predictions"], ["srs", "args"])

    def _compute(self, predictions, definition=None, confidence=0.95, seed=0):
        if definition is None:
            definition = self.config_name if self.config_name in ("paper", "ours") else "paper"
        return diversity_scores(predictions, definition=definition, confidence=confidence, seed=seed)
