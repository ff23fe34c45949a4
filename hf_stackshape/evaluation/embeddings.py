"""Sentence embeddings for the coherence metric (Wang et al. 2026, section 5; ARGS, Khanov et al. 2024).

The papers embed prompt and response with SimCSE and report their cosine similarity. Any sentence
embedder works; offline, the default is the bundled all-MiniLM-L6-v2 (``hf_stackshape.assets.defaults``),
run through plain ``transformers`` with the pooling sentence-transformers applies to that model:
mean over the real tokens, then L2 normalisation, inputs truncated to 256 tokens.

``SentenceEmbedder("simcse")`` is the paper's embedder, exactly as the SimCSE tool the authors call runs it:
``princeton-nlp/sup-simcse-bert-base-uncased`` through ``transformers``, the BERT pooler output (the ``[CLS]``
state through the pooler's dense + tanh), inputs truncated to 128 tokens (needs the Hub or a local copy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .text_stats import cosine_similarity, mean_pool

logger = logging.get_logger(__name__)

__all__ = ["SentenceEmbedder", "SIMCSE_MODEL", "POOLINGS"]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2 (bundled)"
#: The sentence embedder of the paper's coherence metric (and of ARGS, Khanov et al. 2024).
SIMCSE_MODEL = "princeton-nlp/sup-simcse-bert-base-uncased"
#: ``"mean"``: average of the real tokens' states (sentence-transformers' MiniLM); ``"pooler"``: the model's
#: ``pooler_output`` (SimCSE); ``"cls"``: the first token's last hidden state.
POOLINGS = ("mean", "pooler", "cls")


class SentenceEmbedder:
    """Turn texts into sentence embeddings, in batches.

    Args:
        model (`str`, `tuple` or object, *optional*):
            ``None`` (default): the bundled all-MiniLM-L6-v2, offline. ``"simcse"``: the paper's
            ``princeton-nlp/sup-simcse-bert-base-uncased`` with its pooler output and 128 tokens. Another
            string: any sentence-transformers model id or local folder (needs the ``sentence-transformers``
            package), or, when ``pooling`` is given, any ``transformers`` model id or folder. A
            ``(model, tokenizer)`` pair of ``transformers`` objects: ``pooling`` + normalisation. Any
            object with an ``encode(list_of_texts)`` method (e.g. a ``SentenceTransformer``).
        batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
        max_length (`int`, *optional*): token budget per text for ``transformers`` models (default: the
            model's ``sentence_bert_config.json`` value when present, else 256).
        device (`str` or `torch.device`, *optional*): where to run (default: CPU).
        show_progress (`bool`, *optional*, defaults to `False`): tqdm bar over batches.
        pooling (`str`, *optional*): one of :data:`POOLINGS` for ``transformers`` models (default ``"mean"``;
            ``"pooler"`` for ``"simcse"``).

    Examples:

    ```python
    >>> embedder = SentenceEmbedder()  # bundled all-MiniLM-L6-v2
    >>> embedder.similarity(["How do I bake bread?"], ["Mix flour, water and yeast, then bake."])
    tensor([0.70...], dtype=torch.float64)
    ```
    """

    def __init__(
        self,
        model=None,
        batch_size: int = 32,
        max_length: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        show_progress: bool = False,
        pooling: Optional[str] = None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
        if pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}; use one of {list(POOLINGS)}.")
        if isinstance(model, str) and model.lower() == "simcse":
            model, pooling = SIMCSE_MODEL, pooling or "pooler"
            max_length = 128 if max_length is None else max_length
        self.pooling = pooling or "mean"
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._encoder = None
        self.model = self.tokenizer = None
        if model is None:
            from hf_stackshape.assets.defaults import load_minilm, minilm_path

            self.model, self.tokenizer = load_minilm(device=self.device)
            self.name_or_path = DEFAULT_EMBEDDER
            folder = minilm_path()
        elif isinstance(model, (str, Path)) and pooling is not None:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(model))
            self.model = AutoModel.from_pretrained(str(model)).to(self.device).eval()
            self.name_or_path = str(model)
            folder = Path(model) if Path(str(model)).is_dir() else None
        elif isinstance(model, (str, Path)):
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ImportError(
                    f"Embedding with {str(model)!r} needs sentence-transformers: pip install sentence-transformers "
                    "(or pass model=None for the bundled all-MiniLM-L6-v2)."
                ) from None
            self._encoder = SentenceTransformer(str(model), device=str(self.device))
            self.name_or_path = str(model)
            folder = None
        elif isinstance(model, tuple) and len(model) == 2:
            self.model, self.tokenizer = model
            self.model.to(self.device).eval()
            self.name_or_path = getattr(self.model.config, "_name_or_path", type(self.model).__name__)
            folder = Path(self.name_or_path) if Path(str(self.name_or_path)).is_dir() else None
        elif hasattr(model, "encode"):
            self._encoder = model
            self.name_or_path = getattr(model, "name_or_path", type(model).__name__)
            folder = None
        else:
            raise ValueError(
                f"Cannot embed with {type(model).__name__}: pass None (bundled MiniLM), a sentence-transformers "
                "model id or folder, a (model, tokenizer) pair, or an object with .encode(texts)."
            )
        self.max_length = int(max_length) if max_length is not None else self._configured_length(folder)

    @staticmethod
    def _configured_length(folder: Optional[Path]) -> int:
        if folder is not None and (Path(folder) / "sentence_bert_config.json").is_file():
            config = json.loads((Path(folder) / "sentence_bert_config.json").read_text())
            if config.get("max_seq_length"):
                return int(config["max_seq_length"])
        return 256

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings ``[len(texts), dim]`` (float32, CPU)."""
        if isinstance(texts, str):
            raise ValueError("Pass a list of texts (wrap a single text as [text]).")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, 0)
        if self._encoder is not None:
            out = self._encoder.encode(texts, batch_size=self.batch_size, convert_to_tensor=True)
            out = torch.as_tensor(out).float().cpu()
            return torch.nn.functional.normalize(out, dim=-1)
        # Length-sorted batches pad little; the original order is restored at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks: List[torch.Tensor] = []
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="embed", disable=not self.show_progress, leave=False):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            outputs = self.model(**batch)
            if self.pooling == "pooler":
                if getattr(outputs, "pooler_output", None) is None:
                    raise ValueError(f"{self.name_or_path!r} has no pooler output; use pooling='mean' or 'cls'.")
                pooled = outputs.pooler_output
            elif self.pooling == "cls":
                pooled = outputs.last_hidden_state[:, 0]
            else:
                pooled = mean_pool(outputs.last_hidden_state, batch["attention_mask"])
            chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
        stacked = torch.cat(chunks)
        out = torch.empty_like(stacked)
        out[torch.tensor(order)] = stacked
        return out

    def similarity(self, texts_a: Sequence[str], texts_b: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each pair ``(texts_a[i], texts_b[i])``, float64 ``[n]``."""
        if len(texts_a) != len(texts_b):
            raise ValueError(f"Got {len(texts_a)} and {len(texts_b)} texts; they must pair up.")
        if len(texts_a) == 0:
            return torch.zeros(0, dtype=torch.float64)
        embeddings = self.encode(list(texts_a) + list(texts_b))
        n = len(texts_a)
        return cosine_similarity(embeddings[:n], embeddings[n:])
