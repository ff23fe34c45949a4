"""What the packaged `evaluate` modules share: citations and the ``MetricInfo`` they describe themselves with."""

from __future__ import annotations

from typing import Dict, Sequence

__all__ = ["CITATIONS", "metric_info", "from_config"]

CITATIONS = {
    "srs": """@inproceedings{wang2026srs,
  title={Reward Shaping for (Inference-Time) Alignment: A Stackelberg Game Perspective},
  author={Wang and Lin and Kong and Li and Jiang and Tambe},
  booktitle={ICML}, year={2026}, note={arXiv:2602.02572}
}""",
    "args": """@inproceedings{khanov2024args,
  title={ARGS: Alignment as Reward-Guided Search},
  author={Khanov, Maxim and Burapacheep, Jirayu and Li, Yixuan},
  booktitle={ICLR}, year={2024}
}""",
    "simcse": """@inproceedings{gao2021simcse,
  title={SimCSE: Simple Contrastive Learning of Sentence Embeddings},
  author={Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle={EMNLP}, year={2021}
}""",
}

_URLS = {"srs": "https://arxiv.org/abs/2602.02572", "args": "https://arxiv.org/abs/2402.01694"}


def metric_info(description: str, inputs_description: str, string_inputs: Sequence[str], cites: Sequence[str]):
    """An ``evaluate.MetricInfo`` whose inputs are the string columns ``string_inputs``."""
    import datasets
    import evaluate

    features: Dict[str, datasets.Value] = {name: datasets.Value("string") for name in string_inputs}
    return evaluate.MetricInfo(
        description=description,
        citation="\n".join(CITATIONS[c] for c in cites),
        inputs_description=inputs_description,
        features=datasets.Features(features),
        reference_urls=[_URLS[c] for c in cites if c in _URLS],
    )


def from_config(value, config_name: str, error: str):
    """``value``, else the module's config name (``load_metric(name, config_name="vader")``), else ``error``."""
    if value is not None:
        return value
    if config_name in (None, "default"):
        raise ValueError(error)
    return config_name
