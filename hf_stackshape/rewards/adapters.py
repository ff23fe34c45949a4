"""Reward adapters: one interface, "score these (prompt, response) pairs", for any utility ``r_U``.

* :class:`HFRewardModel` wraps a Hugging Face ``AutoModelForSequenceClassification`` reward model with
  a single output logit (Skywork-Reward, ArmoRM-style heads, or one you trained with TRL's
  ``RewardTrainer``): chat-template formatting, batching, padding, truncation that keeps the end of
  the response, dtype and device placement; :meth:`HFRewardModel.score_grouped` scores ``N`` responses
  per prompt with the prompt's prefix encoded once (KV cache shared by the ``N`` rows).
* :class:`CallableReward` wraps any Python function on strings (a sentiment lexicon, a regex, a
  unit test runner...), for users whose utility is not a neural reward model.

Both return a float32 CPU tensor of shape ``(n,)``, one reward per pair.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..utils.deprecation import renamed_kwargs
from ..utils.memory import map_batches
from ..utils.prompts import tokenizer_sides
from .table import REWARD_SPECS, builtin_entry, not_found_error

logger = logging.get_logger(__name__)

__all__ = [
    "RewardFunction",
    "HFRewardModel",
    "CallableReward",
    "ShardedReward",
    "as_reward_function",
    "reward_fingerprint",
    "score_groups",
]


class RewardFunction:
    """Base class: ``score(prompts, responses) -> Tensor[n]`` (float32, CPU). Calling it scores too."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return self.score(prompts, responses)

    @staticmethod
    def _check_pairs(prompts, responses):
        if isinstance(prompts, str) or isinstance(responses, str):
            raise ValueError("Pass lists of prompts and responses (wrap a single pair as [prompt], [response]).")
        if len(prompts) != len(responses):
            raise ValueError(f"Got {len(prompts)} prompts but {len(responses)} responses; they must pair up.")
        return list(prompts), list(responses)

    @staticmethod
    def _check_finite(rewards: torch.Tensor, source: str) -> torch.Tensor:
        if not torch.isfinite(rewards).all():
            bad = rewards[~torch.isfinite(rewards)][0].item()
            raise ValueError(f"{source} returned a non-finite reward ({bad}); rewards must be finite numbers.")
        return rewards

    @property
    def name_or_path(self) -> str:
        return type(self).__name__

    def fingerprint(self) -> dict:
        """The identity of this reward, for run manifests (:mod:`hf_stackshape.utils.runs`): a changed identity
        means other rewards, so a cached run is not reused. A subclass is identified by its module,
        qualified name and a digest of its source; override this to add what else changes its scores."""
        return {"type": "RewardFunction", "class": _code_identity(type(self)), "name": self.name_or_path}


def _source_digest(obj) -> Optional[str]:
    import hashlib

    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            return None
        # No source file (a REPL, a notebook): the bytecode and constants still identify the function.
        source = f"{code.co_code.hex()}|{code.co_consts!r}|{code.co_names!r}"
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


def _code_identity(obj) -> dict:
    """Module, qualified name and source digest of a function or class; a callable object is identified by
    its class, a ``functools.partial`` by its function and arguments; simple captured values (a closure's
    numbers and strings) are part of a function's identity too."""
    import functools

    if isinstance(obj, functools.partial):
        return {"partial": _code_identity(obj.func), "args": repr(obj.args)[:500],
                "keywords": repr(sorted(obj.keywords.items()))[:500]}
    if not (inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
        obj = type(obj)
    out = {
        "module": getattr(obj, "__module__", None),
        "qualname": getattr(obj, "__qualname__", getattr(obj, "__name__", type(obj).__name__)),
        "source_sha256": _source_digest(obj),
    }
    cells = getattr(getattr(obj, "__func__", obj), "__closure__", None) or ()
    captured = []
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, (bool, int, float, str, type(None))):
            captured.append(repr(value)[:200])
    if captured:
        out["captured"] = captured
    return out


class CallableReward(RewardFunction):
    """A reward from any Python callable.

    Args:
        fn (`Callable`):
            Either ``fn(prompt: str, response: str) -> float`` or ``fn(response: str) -> float``
            (detected from its signature), or, with ``batched=True``,
            ``fn(prompts: list[str], responses: list[str]) -> Sequence[float]``.
        batched (`bool`, *optional*, defaults to `False`): whether ``fn`` takes whole lists.
        name (`str`, *optional*): a name recorded in results and model cards.
        version (`str`, *optional*):
            The reward's identity in run manifests (:mod:`hf_stackshape.utils.runs`). Default: ``fn``'s module,
            qualified name and a digest of its source, so editing the function invalidates cached runs; give
            a version when its scores depend on more than its source (data files, a service) and bump it
            when they change.

    Examples:

    ```python
    >>> from hf_stackshape import CallableReward
    >>> length = CallableReward(lambda response: len(response.split()))
    >>> length(["Hi"], ["one two three"]).tolist()
    [3.0]

    ```
    """

    def __init__(self, fn: Callable, batched: bool = False, name: Optional[str] = None, version: Optional[str] = None):
        if not callable(fn):
            raise ValueError(f"`fn` must be callable, got {type(fn).__name__}.")
        if version is not None and (not isinstance(version, str) or not version.strip()):
            raise ValueError(f"`version` must be a non-empty string, got {version!r}.")
        self.fn = fn
        self.version = version
        self.batched = bool(batched)
        self._name = name or getattr(fn, "__name__", type(fn).__name__)
        self._takes_prompt = True
        if not batched:
            try:
                params = [
                    p
                    for p in inspect.signature(fn).parameters.values()
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
                ]
                self._takes_prompt = len(params) >= 2
            except (TypeError, ValueError):
                self._takes_prompt = True

    @property
    def name_or_path(self) -> str:
        return self._name

    def fingerprint(self) -> dict:
        """``version`` when given, else the callable's module, qualified name and source digest."""
        identity = {"version": self.version} if self.version is not None else _code_identity(self.fn)
        return {"type": "CallableReward", "name": self._name, "batched": self.batched, "fn": identity}

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        prompts, responses = self._check_pairs(prompts, responses)
        if self.batched:
            result = self.fn(prompts, responses)
            try:
                values = list(result)
            except TypeError:
                raise ValueError(
                    f"The batched reward callable {self._name!r} must return a sequence of numbers, one per pair; "
                    f"got {type(result).__name__}."
                ) from None
            if len(values) != len(prompts):
                raise ValueError(f"Batched reward returned {len(values)} values for {len(prompts)} pairs.")
        elif self._takes_prompt:
            values = [self.fn(p, r) for p, r in zip(prompts, responses)]
        else:
            values = [self.fn(r) for r in responses]
        try:
            out = torch.tensor([float(v) for v in values], dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"The reward callable {self._name!r} must return numbers: {err}") from None
        return self._check_finite(out, f"The reward callable {self._name!r}")


class HFRewardModel(RewardFunction):
    """A Hugging Face sequence-classification reward model with one output logit.

    Args:
        model (`PreTrainedModel`): an ``AutoModelForSequenceClassification`` with ``num_labels == 1``.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        template (`str` or `Callable`, *optional*):
            How a pair becomes text. Default: the tokenizer's chat template (a user turn with the prompt,
            an assistant turn with the response) when it has one, else ``"{prompt}\\n{response}"``.
            A string is formatted with ``prompt`` and ``response``; a callable gets ``(prompt, response)``.
        chat_template (`bool`, *optional*): force (``True``) or forbid (``False``) the chat template (formerly
            ``use_chat_template``, a deprecated alias that warns; the attribute keeps that name).
        batch_size (`int`, *optional*, defaults to 16): pairs per forward pass; a batch that runs out of
            accelerator memory is retried in halves (:func:`~hf_stackshape.utils.memory.map_batches`).
        max_length (`int`, *optional*):
            Token budget per pair; longer inputs are truncated **from the left**, so the end of the
            response (what the reward is about) is always scored. Default: the model's context size.
        device (`str` or `torch.device`, *optional*): where to run (default: the model's device).
        show_progress (`bool`, *optional*, defaults to `False`): tqdm bar over batches.
        padding_side (`str`, *optional*):
            ``"left"`` or ``"right"``. Default: ``"left"`` for decoder reward models (a ``score`` head reading
            the last real token: Llama, Qwen, Mistral, GPT-2...), ``"right"`` for encoder ones (a
            ``classifier`` head reading the first token: DeBERTa, BERT, RoBERTa...), whose scores would
            otherwise depend on how much padding the batch needs.

    Examples:

    ```python
    >>> rm = HFRewardModel.from_pretrained("Skywork/Skywork-Reward-V2-Qwen3-0.6B", dtype=torch.bfloat16)  # doctest: +SKIP
    >>> rm.score(["How do I bake bread?"], ["Mix flour, water, yeast and salt..."])  # doctest: +SKIP
    ```
    """

    @renamed_kwargs(use_chat_template="chat_template")
    def __init__(
        self,
        model,
        tokenizer,
        template: Optional[Union[str, Callable[[str, str], str]]] = None,
        chat_template: Optional[bool] = None,
        batch_size: int = 16,
        max_length: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None,
        show_progress: bool = False,
        padding_side: Optional[str] = None,
    ):
        num_labels = getattr(model.config, "num_labels", None)
        if num_labels != 1:
            raise ValueError(
                f"A reward model must have exactly one output (num_labels=1), got num_labels={num_labels}. "
                "Load it with AutoModelForSequenceClassification.from_pretrained(..., num_labels=1) or pick a "
                "reward model checkpoint."
            )
        if int(batch_size) < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.show_progress = show_progress
        if padding_side is None:
            padding_side = "left" if isinstance(getattr(model, "score", None), torch.nn.Module) else "right"
        if padding_side not in ("left", "right"):
            raise ValueError(f"`padding_side` must be 'left' or 'right', got {padding_side!r}.")
        self.padding_side = padding_side
        if device is not None:
            self.model.to(device)
        self.model.eval()
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("The reward tokenizer has neither a pad nor an eos token; set tokenizer.pad_token.")
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            # Sequence-classification heads find the last real token through pad_token_id.
            model.config.pad_token_id = tokenizer.pad_token_id
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise ValueError("chat_template=True but the reward tokenizer has no chat template; pass template=.")
        self.use_chat_template = has_template if chat_template is None else bool(chat_template)
        if template is not None:
            self.use_chat_template = False
        self.template = template if template is not None else "{prompt}\n{response}"
        if isinstance(self.template, str) and ("{response}" not in self.template):
            raise ValueError(f"`template` must contain '{{response}}', got {self.template!r}.")
        context = getattr(model.config, "max_position_embeddings", None) or 2048
        tok_max = getattr(tokenizer, "model_max_length", None)
        if tok_max and tok_max < 1_000_000:
            context = min(context, tok_max)
        self.max_length = int(max_length) if max_length is not None else int(context)
        if self.max_length < 2:
            raise ValueError(f"`max_length` must be >= 2, got {self.max_length}.")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[str, torch.device]] = None,
        tokenizer=None,
        model_kwargs: Optional[dict] = None,
        **kwargs,
    ) -> "HFRewardModel":
        """Load a reward model (and its tokenizer) by Hub id or local folder; a peft adapter folder works too.

        The built-in names resolve here exactly as in :func:`load_reward` and on the command line: ``"demo"``
        loads the bundled demo reward model (:func:`hf_stackshape.assets.demo.load_demo_reward_model`, offline),
        and ``"vader"`` / ``"length"`` return their :class:`CallableReward` (they are not neural models). A name
        that is neither a built-in, nor an existing local path, nor a loadable Hub id raises an ``OSError``
        that says all three, with the valid names.
        """
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        name = str(pretrained_model_name_or_path).strip()
        entry = builtin_entry(name)
        if entry is not None:
            # The named-reward table (`.table`): its loaders are imported on first use (the demo reward model is
            # an asset, a layer above the adapters); a callable reward's takes no loading arguments.
            return entry.load(dtype=dtype or torch.float32, device=device, **kwargs)
        model_kwargs = dict(model_kwargs or {})
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        try:
            model = AutoModelForSequenceClassification.from_pretrained(pretrained_model_name_or_path, **model_kwargs)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path)
        except (OSError, ValueError) as err:
            if os.path.exists(os.path.expanduser(name)):
                raise
            raise not_found_error("reward model", name, err, REWARD_SPECS) from None
        return cls(model, tokenizer, device=device, **kwargs)

    @property
    def name_or_path(self) -> str:
        return getattr(self.model.config, "_name_or_path", None) or type(self.model).__name__

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fingerprint(self) -> dict:
        """The model's id + Hub revision (or a weights digest), its tokenizer and how pairs become text.

        A subclass (one that logs, say) scores the same, so it is identified as an ``HFRewardModel``.
        """
        from ..utils.runs import model_fingerprint, tokenizer_fingerprint

        model = model_fingerprint(self.model)
        model.pop("generation_config", None)  # a classifier does not generate
        template = self.template if isinstance(self.template, str) else _code_identity(self.template)
        return {
            "type": "HFRewardModel",
            "model": model,
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "template": None if self.use_chat_template else template,
            "use_chat_template": self.use_chat_template,
            "max_length": self.max_length,
            "padding_side": self.padding_side,
        }

    def format(self, prompt: str, response: str) -> str:
        """The text the reward model reads for one pair."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        if callable(self.template):
            return self.template(prompt, response)
        return self.template.format(prompt=prompt, response=response)

    def clip_prompt(self, prompt: str, max_tokens: Optional[int] = None) -> str:
        """The part of ``prompt`` the reward model can read: its last ``max_tokens`` tokens (default
        ``max_length``), as text; a shorter prompt comes back unchanged (the same object).

        A pair longer than ``max_length`` is left-truncated anyway, so a prompt longer than the whole budget
        only costs time and memory: ARGS (Khanov et al., 2024) scores ``k`` candidates per step, each pair
        re-tokenized, and a 1 MB prompt made the text path tokenize megabytes per step. Clipping it once per
        generation (:class:`~hf_stackshape.ARGSLogitsProcessor` does) keeps the end of the prompt, which is
        what the left truncation keeps too.
        """
        budget = int(max_tokens if max_tokens is not None else self.max_length)
        if budget < 1:
            raise ValueError(f"`max_tokens` must be >= 1, got {max_tokens!r}.")
        if len(prompt) <= budget:  # every token holds at least one character: nothing to cut
            return prompt
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return prompt
        return self.tokenizer.decode(ids[-budget:], skip_special_tokens=False)

    def encode(self, prompts: Sequence[str], responses: Sequence[str]):
        """Tokenise pairs: ``padding_side`` padding (left for decoders), left truncation to ``max_length``
        (the response end survives)."""
        texts = [self.format(p, r) for p, r in zip(prompts, responses)]
        tok = self.tokenizer
        with tokenizer_sides(tok, padding=self.padding_side, truncation="left"):
            # Chat templates already hold the special tokens; avoid a second BOS.
            return tok(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                add_special_tokens=not self.use_chat_template,
            )

    @torch.no_grad()
    def score_ids(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Rewards of already tokenised sequences (padded on ``padding_side``), float32 on CPU."""
        device = self.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        return out.logits[:, 0].float().cpu()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        prompts, responses = self._check_pairs(prompts, responses)
        if not prompts:
            return torch.zeros(0, dtype=torch.float32)
        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        out = torch.empty(len(prompts), dtype=torch.float32)
        bar = tqdm(total=len(order), desc="reward", disable=not self.show_progress, leave=False)

        def run(idx: List[int]) -> None:
            batch = self.encode([prompts[i] for i in idx], [responses[i] for i in idx])
            out[idx] = self.score_ids(batch["input_ids"], batch["attention_mask"])
            bar.update(len(idx))

        # A batch that runs out of accelerator memory is retried in halves (BatchMemoryError if one pair alone
        # does not fit); the scores do not depend on the batch size beyond float rounding.
        with bar:
            map_batches(run, order, self.batch_size, what="pair", device=self.device)
        return self._check_finite(out, f"The reward model {self.name_or_path!r}")

    # ------------------------------------------------------------------ grouped scoring

    def shared_prefix_unsupported(self) -> Optional[str]:
        """``None`` when :meth:`score_grouped` can share prompt prefixes on this model, else why not."""
        if type(self).score is not HFRewardModel.score:
            return f"{type(self).__name__} overrides `score`"
        if not isinstance(getattr(self.model, "score", None), torch.nn.Module):
            return f"{type(self.model).__name__} has no `score` head (an encoder classifier?)"
        from ..utils.kv_cache import prefix_cache_support  # lazy: guidance imports this module

        return prefix_cache_support(self.model)

    def score_grouped(self, prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> torch.Tensor:
        """Rewards of ``N`` responses per prompt, encoding each prompt's shared prefix once.

        Equal, up to float rounding, to ``score`` on the flattened pairs ``(prompts[i], responses[i][j])``;
        faster when the prompt part of the reward model's input is a large share of it (calibration: the
        chat template's system prompt and user turn, then ``N`` sampled responses; SRS, Wang et al. 2026,
        arXiv 2602.02572, needs ``N`` rewards per prompt for its threshold ``m*(x)``).

        Every pair is tokenized exactly as :meth:`encode` tokenizes it. The tokens that all ``N`` pairs of
        a prompt share at the start (the template head with the prompt, and any common start of the
        responses; at most each pair's length minus one) run once, batched across prompts and left
        padded; their KV cache then serves the ``N`` rest-of-pair rows, run in one batched forward whose
        4D mask lets each row see only its own prompt's prefix
        (:class:`~hf_stackshape.utils.kv_cache.PrefixKVCache`, as the ARGS fast path). The score
        head reads each row's last token that is not the pad token, as the model's own pooling does. No
        template probing is needed: each row is the very token sequence ``score`` would feed.

        Falls back to ``score`` (same results, no sharing) for the whole call when the model cannot
        (encoder classifiers, no ``score`` head, sliding-window or non-maskable attention, a subclass
        that overrides ``score``, ``N < 2``), and per prompt when a pair exceeds ``max_length`` (so that
        left truncation stays exactly as in ``score``) or nothing can be shared.

        Args:
            prompts (`list[str]`): one entry per prompt.
            responses (`list[list[str]]`):
                ``responses[i]`` are the responses to ``prompts[i]``; every prompt must have the same number
                ``N`` of them (for ragged groups call ``score`` on the flattened pairs).

        Returns:
            `torch.Tensor` of shape `(len(prompts), N)`: float32 rewards on CPU.
        """
        if isinstance(prompts, str) or isinstance(responses, str):
            raise ValueError("Pass a list of prompts and a list of response lists (one list per prompt).")
        prompts, groups = list(prompts), [responses_i for responses_i in responses]
        if len(prompts) != len(groups):
            raise ValueError(f"Got {len(prompts)} prompts but {len(groups)} response lists; they must pair up.")
        if any(isinstance(g, str) for g in groups):
            raise ValueError("`responses` must hold one list of responses per prompt, not strings.")
        groups = [list(g) for g in groups]
        sizes = sorted({len(g) for g in groups})
        if len(sizes) > 1:
            raise ValueError(
                f"Every prompt needs the same number of responses, got sizes {sizes}; call `score` on the "
                "flattened pairs for ragged groups."
            )
        n = sizes[0] if sizes else 0
        flat_prompts = [p for p, g in zip(prompts, groups) for _ in g]
        flat_responses = [r for g in groups for r in g]
        if not flat_responses:
            return torch.zeros(len(prompts), n, dtype=torch.float32)
        reason = "one response per prompt" if n < 2 else self.shared_prefix_unsupported()
        if reason is not None:
            logger.info_once(f"HFRewardModel.score_grouped: scoring pairs one by one ({reason}).")
            return self.score(flat_prompts, flat_responses).view(len(prompts), n)

        ids = self.tokenizer(
            [self.format(p, r) for p, r in zip(flat_prompts, flat_responses)],
            add_special_tokens=not self.use_chat_template,  # as `encode`
        )["input_ids"]
        pad = getattr(self.model.config, "pad_token_id", None)
        out = torch.empty(len(flat_responses), dtype=torch.float32)
        shared, alone = [], []  # (group, shared length) / flat pair indices scored by `score`
        for i in range(len(prompts)):
            rows = ids[i * n : (i + 1) * n]
            length = _common_prefix_length(rows)
            readable = all(any(t != pad for t in row) for row in rows)
            if max(len(r) for r in rows) > self.max_length or length < 1 or not readable:
                alone.extend(range(i * n, (i + 1) * n))
            else:
                shared.append((i, length))
        if alone:
            out[alone] = self.score([flat_prompts[j] for j in alone], [flat_responses[j] for j in alone])
        if shared:
            # Prompts whose responses have similar lengths together (the rest rows are padded to the longest
            # in their forward); as many pairs per forward as `score`.
            shared.sort(key=lambda item: max(len(r) for r in ids[item[0] * n : (item[0] + 1) * n]) - item[1])
            per_batch = max(1, self.batch_size // n)
            bar = tqdm(total=len(shared), desc="reward", disable=not self.show_progress, leave=False)

            def run(batch: List[Tuple[int, int]]) -> None:
                rows = [i * n + j for i, _ in batch for j in range(n)]
                out[rows] = self._score_shared_prefix(ids, batch, n, pad)
                bar.update(len(batch))

            with bar:  # out of memory: fewer prompts per forward (as `score`)
                map_batches(run, shared, per_batch, what="prompt group", device=self.device)
        return self._check_finite(out, f"The reward model {self.name_or_path!r}").view(len(prompts), n)

    @torch.no_grad()
    def _score_shared_prefix(self, ids: List[List[int]], batch: List[Tuple[int, int]], n: int, pad) -> torch.Tensor:
        """Rewards of the ``n`` pairs of each ``(group, shared length)`` in ``batch``: prefixes once, then the rest."""
        from ..utils.kv_cache import PrefixKVCache

        fill = pad if pad is not None else self.tokenizer.pad_token_id
        heads = [ids[i * n][:length] for i, length in batch]
        width = max(len(h) for h in heads)
        head_ids = torch.tensor([[fill] * (width - len(h)) + h for h in heads], dtype=torch.long)
        head_mask = torch.tensor([[False] * (width - len(h)) + [True] * len(h) for h in heads])
        rests = [ids[i * n + j][length:] for i, length in batch for j in range(n)]
        span = max(len(r) for r in rests)
        rest_ids = torch.tensor([r + [fill] * (span - len(r)) for r in rests], dtype=torch.long)
        rest_mask = torch.tensor([[True] * len(r) + [False] * (span - len(r)) for r in rests])

        cache = PrefixKVCache(self.model, readout_skip_ids=[] if pad is None else [pad])
        # 1) the prefixes alone (with one dropped dummy token: a masked candidate nobody sees, cropped after);
        # 2) each prefix row repeated n times -- the cache matches rows by token history and expands itself
        # (`reorder_cache`) -- with one candidate group per row: the rest of its pair.
        dummy = torch.full((len(batch), 1, 1), fill, dtype=torch.long)
        cache.score_candidates(head_ids, head_mask, dummy, torch.zeros_like(dummy, dtype=torch.bool))
        states = cache.score_candidates(
            head_ids.repeat_interleave(n, dim=0),
            head_mask.repeat_interleave(n, dim=0),
            rest_ids[:, None, :],
            rest_mask[:, None, :],
        )
        return self.model.score(states.hidden[:, 0])[:, 0].float().cpu()


class ShardedReward(RewardFunction):
    """A reward whose ``score`` shares the pairs over the ranks of a multi-process run and gathers the rewards.

    The pairs are ordered and cut into batches exactly as :meth:`HFRewardModel.score` does in one process
    (by length, ``batch_size`` pairs per forward pass); whole batches go round robin to the ranks, so every
    reward equals the single-process one bit for bit. Every rank must call ``score`` with the same pairs (a
    collective). In one process it is the wrapped reward.

    Args:
        reward: the reward (anything :func:`as_reward_function` takes).
        state (`accelerate.PartialState`, *optional*): the process layout (default ``torch.distributed`` when
            initialised, else one process).
    """

    def __init__(self, reward, state=None):
        from ..utils.distributed import Processes

        self.reward = as_reward_function(reward)
        self.procs = Processes(state)
        self.batch_size = int(getattr(self.reward, "batch_size", 16) or 16)

    @property
    def name_or_path(self) -> str:
        return self.reward.name_or_path

    def fingerprint(self) -> dict:
        return self.reward.fingerprint()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        prompts, responses = self._check_pairs(prompts, responses)
        if self.procs.world == 1 or not prompts:
            return self.reward.score(prompts, responses)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(responses[i]))
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        parts = self.procs.map(
            batches, lambda idx: self.reward.score([prompts[i] for i in idx], [responses[i] for i in idx])
        )
        out = torch.empty(len(prompts), dtype=torch.float32)
        for idx, values in zip(batches, parts):
            out[idx] = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        return out


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens all ``rows`` share at the start, leaving at least one token of each row after them."""
    limit = min(len(r) for r in rows) - 1
    length = 0
    first = rows[0]
    while length < limit and all(r[length] == first[length] for r in rows):
        length += 1
    return length


def reward_fingerprint(reward) -> dict:
    """The identity of any reward :func:`as_reward_function` accepts, as recorded in run manifests
    (:func:`hf_stackshape.utils.runs.reward_fingerprint` of the wrapped reward)."""
    from ..utils.runs import reward_fingerprint as fingerprint_of

    return fingerprint_of(as_reward_function(reward))


def as_reward_function(obj) -> RewardFunction:
    """Accept a :class:`RewardFunction`, a ``(model, tokenizer)`` pair, or a Python callable."""
    if isinstance(obj, RewardFunction):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and hasattr(obj[0], "config"):
        return HFRewardModel(obj[0], obj[1])
    if callable(obj) and not hasattr(obj, "config"):
        return CallableReward(obj)
    raise ValueError(
        f"Cannot use {type(obj).__name__} as a reward: pass an HFRewardModel, a (model, tokenizer) pair or a "
        "callable fn(prompt, response) -> float."
    )


def score_groups(reward, prompts: Sequence[str], groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """Rewards of ``N`` responses per prompt, ``(len(prompts), N)`` float32: the one grouped scorer of
    best-of-N (:class:`~hf_stackshape.bon.StackelbergBestOfN`), calibration
    (:class:`~hf_stackshape.calibration.ThresholdCalibrator`, SRS's ``N`` samples per prompt for ``m*(x)``,
    Wang et al., 2026) and :func:`~hf_stackshape.evaluation.utility.score_samples`.

    A reward with a ``score_grouped(prompts, groups)`` method (an :class:`HFRewardModel`, which encodes each
    prompt's prefix once) is called through it; any other scores the flattened pairs ``(prompts[i],
    groups[i][j])`` with ``score``. Either way the result is checked to hold one reward per response.

    Args:
        reward: a :class:`RewardFunction` (anything :func:`as_reward_function` takes is wrapped first).
        prompts (`list[str]`): one entry per prompt.
        groups (`list[list[str]]`): ``groups[i]`` are the responses to ``prompts[i]``, the same number ``N`` for
            every prompt.

    Examples:

    ```python
    >>> from hf_stackshape.rewards import CallableReward, score_groups
    >>> score_groups(CallableReward(lambda r: len(r)), ["a", "b"], [["x", "yy"], ["zzz", ""]]).tolist()
    [[1.0, 2.0], [3.0, 0.0]]

    ```
    """
    reward = as_reward_function(reward)
    if isinstance(prompts, str) or isinstance(groups, str) or any(isinstance(g, str) for g in groups):
        raise ValueError("Pass a list of prompts and a list of response lists (one list per prompt).")
    prompts, groups = list(prompts), [list(g) for g in groups]
    if len(prompts) != len(groups):
        raise ValueError(f"Got {len(prompts)} prompts but {len(groups)} response lists; they must pair up.")
    sizes = sorted({len(g) for g in groups})
    if len(sizes) > 1:
        raise ValueError(f"Every prompt needs the same number of responses, got sizes {sizes}.")
    n = sizes[0] if sizes else 0
    grouped = getattr(reward, "score_grouped", None)
    if callable(grouped):
        scored = grouped(prompts, groups)
    else:
        scored = reward.score([p for p in prompts for _ in range(n)], [r for g in groups for r in g])
    scored = torch.as_tensor(scored, dtype=torch.float32).reshape(-1)
    if scored.numel() != len(prompts) * n:
        raise ValueError(f"The reward returned {scored.numel()} values for {len(prompts) * n} responses.")
    return scored.view(len(prompts), n)
