"""Coherence of responses: cosine similarity of prompt and response sentence embeddings (Wang et al. 2026,
section 5; SimCSE in the papers), an `evaluate` metric.

Offline default: the bundled all-MiniLM-L6-v2 with mean pooling and L2 normalisation (what
sentence-transformers does for that model); ``model="simcse"`` (or ``config_name="simcse"``) is the paper's
princeton-nlp/sup-simcse-bert-base-uncased with its pooler output (needs the Hub or a local copy); any
sentence-transformers model id or folder otherwise.
"""

import evaluate

from hf_stackshape.evaluation.embeddings import SentenceEmbedder
from hf_stackshape.evaluation.module_info import metric_info
from hf_stackshape.evaluation.scores import coherence_scores

_DESCRIPTION = (
    "Mean cosine similarity of the sentence embeddings of each prompt and its response, with a bootstrap "
    "confidence interval."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the responses.
    prompts (`list[str]`): the prompt of each response.
    model (optional): None (bundled all-MiniLM-L6-v2), "simcse" (the paper's embedder), a sentence-transformers
        model id or folder, a (model, tokenizer) pair, or a `SentenceEmbedder`. Default: the config name when one
        is given.
    pooling (`str`, optional): "mean", "pooler" or "cls" for transformers models (see `SentenceEmbedder`).
    batch_size (`int`, defaults to 32), device (optional).
    confidence (`float`, defaults to 0.95), seed (`int`, defaults to 0): the bootstrap interval over prompts.
Returns:
    coherence (`float`), coherence_std, coherence_ci_low, coherence_ci_high (`float`), coherences (`list[float]`).
Examples:
    >>> load_metric("coherence").compute(predictions=["Bake it at 220 C."], prompts=["How do I bake bread?"])["coherences"]
    [0.48...]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Coherence(evaluate.Metric):
    def _info(self):
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, ["predictions", "prompts"], ["srs", "simcse"])

    def _compute(
        self, predictions, prompts, model=None, batch_size=32, device=None, pooling=None, confidence=0.95, seed=0
    ):
        if model is None and self.config_name not in (None, "default"):
            model = self.config_name
        if isinstance(model, SentenceEmbedder):
            embedder = model
        else:
            # Loading the embedder costs seconds: keep it for the next compute() with the same settings.
            key = (model if isinstance(model, str) or model is None else id(model), batch_size, str(device), pooling)
            if getattr(self, "_embedder_key", None) != key:
                self._embedder = SentenceEmbedder(model, batch_size=batch_size, device=device, pooling=pooling)
                self._embedder_key = key
            embedder = self._embedder
        return coherence_scores(prompts, predictions, embedder, confidence=confidence, seed=seed)
