"""Stackelberg best-of-N: the follower's best response on N base samples, a third inference-time method.

ARGS (Khanov et al., 2024) and CD (Mudgal et al., 2023) approximate the follower's policy
``rho_r(y|x) ∝ pi_ref(y|x) exp(r(x, y) / beta)`` token by token. Soft best-of-N does it at the sequence
level (Verdun et al., 2025, "Soft Best-of-n Sampling for Model Alignment"): draw ``N`` responses from
``pi_ref``, then pick response ``i`` with probability ``∝ exp(r(y_i) / beta)``; as ``N`` grows this tends to
``rho_r``. On the ``N`` samples themselves the theorem of Wang et al. (2026, arXiv 2602.02572) holds
exactly: among rewards bounded in ``[0, B]``, the threshold reward ``B * 1[r_U > m*]``, with ``m*`` solved
from the same samples (:func:`~hf_stackshape.core.shaping.solve_threshold`), maximises the user's utility
``E_rho[r_U]``. SRS-BoN uses its smooth version ``B * sigmoid(alpha (r_U - m*))``.

The cost is one batched ``generate(num_return_sequences=N)`` call and one batched reward call per batch of
prompts; no calibration pass is needed, since ``m*(x)`` comes from the very samples being selected from.

* :func:`~hf_stackshape.core.follower.follower_weights`: ``softmax(shaped / beta)`` over the samples (the pure
  tensor math lives in :mod:`hf_stackshape.core.follower`, re-exported here);
* :class:`StackelbergBestOfN`: sampling, grouped scoring, shaping and seeded selection for a batch of prompts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from .core.follower import (
    BON_SAFEGUARDS,
    SELECTIONS,
    inverse_beta,
    effective_sample_size,
    follower_weights,
    sample_threshold,
    shape_samples,
)
from .core.methods import parse_method
from .core.shaping import RewardTransform, ThresholdSafeguards, get_safeguards, get_transform
from .rewards.adapters import as_reward_function, score_groups
from .utils.deprecation import renamed_kwargs, warn_renamed
from .utils.prompts import encode_prompts, format_prompts, global_indices

logger = logging.get_logger(__name__)

__all__ = [
    "SELECTIONS",
    "BON_SAFEGUARDS",
    "follower_weights",
    "effective_sample_size",
    "sample_threshold",
    "shape_samples",
    "BestOfNOutput",
    "StackelbergBestOfN",
    "best_of_n_grid",
]

@dataclass
class BestOfNOutput:
    """What :meth:`StackelbergBestOfN.generate` returns: the chosen responses and per-prompt diagnostics.

    Attributes:
        responses (`list[str]`): the chosen response of each prompt.
        chosen_index (`torch.LongTensor` of shape `(P,)`): which of the ``N`` samples was chosen.
        rewards (`torch.Tensor` of shape `(P, N)`): the guiding reward ``r_U`` of every sample.
        shaped (`torch.Tensor` of shape `(P, N)`): the transformed rewards the selection used.
        threshold (`torch.Tensor` of shape `(P,)`): ``m*(x)`` solved from the ``N`` samples.
        weights (`torch.Tensor` of shape `(P, N)`): selection probabilities (one-hot for ``argmax``).
        chosen_reward (`torch.Tensor` of shape `(P,)`): ``r_U`` of the chosen response.
        expected_reward (`torch.Tensor` of shape `(P,)`): ``E_rho[r_U]`` under the selection probabilities,
            the exact utility of the method on these samples (no selection noise).
        effective_sample_size (`torch.Tensor` of shape `(P,)`): ``1 / sum_i weights_i^2``.
        candidates (`list[list[str]]`, *optional*): all ``N`` samples per prompt (``return_candidates=True``).
        indices (`list[int]`, *optional*): each prompt's index in the whole job, the key of its random draws
            (:mod:`hf_stackshape.utils.sampling`); :meth:`StackelbergBestOfN.reselect` draws with the same keys.
    """

    responses: List[str]
    chosen_index: torch.Tensor
    rewards: torch.Tensor
    shaped: torch.Tensor
    threshold: torch.Tensor
    weights: torch.Tensor
    chosen_reward: torch.Tensor
    expected_reward: torch.Tensor
    effective_sample_size: torch.Tensor
    candidates: Optional[List[List[str]]] = None
    indices: Optional[List[int]] = None

    def diagnostics(self) -> List[Dict[str, float]]:
        """One plain dict per prompt: ``threshold``, ``chosen_index``, ``chosen_reward``, ``expected_reward``,
        ``effective_sample_size`` (JSON-ready)."""
        return [
            {
                "threshold": float(self.threshold[i]),
                "chosen_index": int(self.chosen_index[i]),
                "chosen_reward": float(self.chosen_reward[i]),
                "expected_reward": float(self.expected_reward[i]),
                "effective_sample_size": float(self.effective_sample_size[i]),
            }
            for i in range(len(self.responses))
        ]


def _concat(parts: List["BestOfNOutput"], with_candidates: bool) -> "BestOfNOutput":
    tensors = {
        name: torch.cat([getattr(p, name) for p in parts])
        for name in ("chosen_index", "rewards", "shaped", "threshold", "weights", "chosen_reward",
                     "expected_reward", "effective_sample_size")
    }
    candidates = [c for p in parts for c in p.candidates] if with_candidates else None
    indices = [i for p in parts for i in p.indices] if all(p.indices is not None for p in parts) else None
    return BestOfNOutput(responses=[r for p in parts for r in p.responses], candidates=candidates, indices=indices,
                         **tensors)


#: The grouped scorer of the rewards layer (:func:`hf_stackshape.rewards.score_groups`), under its old private name.
_score_groups = score_groups


class StackelbergBestOfN:
    """Best-of-N with Stackelberg reward shaping (Wang et al., 2026) on ``N`` samples of the base policy.

    For each prompt: sample ``N`` responses from the model (one batched ``generate`` call with
    ``num_return_sequences=N`` per batch of prompts, with the model's ``generation_config`` and sampling on),
    score them with the reward (an [`HFRewardModel`] encodes each prompt's prefix once), solve every prompt's
    threshold ``m*(x)`` at once with :func:`~hf_stackshape.core.shaping.solve_threshold`, transform the rewards,
    and select one response.

    Methods, by ``transform`` and ``selection``: ``raw`` + ``argmax`` is classic best-of-N (``bon``); ``raw`` +
    ``soft`` samples from ``softmax(r_U / beta)``, the follower's response to the raw reward (``soft-bon``,
    Verdun et al., 2025); ``srs`` + ``soft`` samples from ``softmax(B_eff sigmoid(alpha (r_U - m*)) / beta)``
    (``srs-bon``). ``hard`` is the theorem's bang-bang reward ``B_eff 1[r_U > m*]``, optimal on the samples.

    Args:
        model (`PreTrainedModel`): the base policy, a causal LM (any device and dtype).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (left padding is set while generating).
        reward: the guiding reward ``r_U``: a [`RewardFunction`], a ``(model, tokenizer)`` pair or a callable.
        num_samples (`int`, *optional*, defaults to 16): samples ``N`` per prompt (formerly ``n``, a deprecated
            alias that still works with a ``FutureWarning``).
        beta (`float`, *optional*, defaults to 1.0):
            KL strength of the follower (``1 / beta`` is the guidance weight); ``math.inf`` picks uniformly.
        transform (`str` or [`RewardTransform`], *optional*, defaults to `"srs"`):
            ``"srs"``, ``"raw"``, ``"hard"`` or a paper baseline (``"minmax"``, ``"meanstd"``, ``"meansoft"``),
            see :func:`~hf_stackshape.core.shaping.get_transform`.
        selection (`str`, *optional*, defaults to `"soft"`): ``"soft"`` or ``"argmax"``.
        bound (`float`, *optional*, defaults to 15.0):
            The reward bound ``B`` (the paper's value for sequence-level rewards of offline rollouts, SRS-CD).
        alpha (`float`, *optional*, defaults to 1.0): SRS sigmoid sharpness (the paper's SRS-CD value).
        safeguards (`str` or [`ThresholdSafeguards`], *optional*, defaults to [`BON_SAFEGUARDS`]):
            ``B_eff = min(B, 2 * range)`` and no gamma cap, so ``m*`` is the exact fixed point
            ``m* = E_rho[r_U]`` of the threshold reward under this very selection; ``"cd"`` adds the offline
            CD script's exponent cap (``gamma <= e^2``), ``"none"`` uses ``B`` as given.
        max_new_tokens (`int`, *optional*, defaults to 128): tokens per sample.
        batch_size (`int`, *optional*, defaults to 4): prompts per ``generate`` call (``batch_size * n`` rows).
        seed (`int`, *optional*, defaults to 0):
            Seed of every random draw. Prompt ``i`` (its index in the whole job) draws its ``j``-th sample from a
            generator keyed by ``(seed, i, j)`` and its soft selection's uniform from one keyed by ``(seed, i)``
            (:mod:`hf_stackshape.utils.sampling`), so results depend neither on ``batch_size`` nor on how the prompts
            are split over processes.
        chat_template (`bool`, *optional*): wrap prompts in the tokenizer's chat template (default: when it has one).
        dialogue_prompts_as_text (`bool`, *optional*, defaults to `False`): no chat template on a prompt that
            already holds ``Human:`` / ``Assistant:`` turns (:mod:`hf_stackshape.utils.dialogue`).
        stop_at_new_turn (`bool`, *optional*, defaults to `False`): stop each sample where a new ``Human:`` /
            ``User:`` turn begins and cut that turn off before it is scored.
        show_progress (`bool`, *optional*, defaults to `True`): tqdm bar over batches.
        generation_kwargs: overrides of the model's ``generation_config`` (``temperature``, ``top_p``, ``top_k``...).

    Examples:

    ```python
    >>> from hf_stackshape import StackelbergBestOfN, load_smollm2
    >>> from hf_stackshape.assets.demo import load_demo_reward_model
    >>> model, tokenizer = load_smollm2()  # doctest: +SKIP
    >>> bon = StackelbergBestOfN(model, tokenizer, load_demo_reward_model(), num_samples=8, beta=0.5)  # doctest: +SKIP
    >>> out = bon.generate(["How do I bake bread?"])  # doctest: +SKIP
    >>> out.responses[0], out.diagnostics()[0]["threshold"]  # doctest: +SKIP
    ```
    """

    @renamed_kwargs(n="num_samples")
    def __init__(
        self,
        model,
        tokenizer,
        reward,
        num_samples: int = 16,
        beta: float = 1.0,
        transform: Union[str, RewardTransform] = "srs",
        selection: str = "soft",
        bound: float = 15.0,
        alpha: float = 1.0,
        safeguards: Union[str, ThresholdSafeguards, None] = BON_SAFEGUARDS,
        max_new_tokens: int = 128,
        batch_size: int = 4,
        seed: int = 0,
        chat_template: Optional[bool] = None,
        show_progress: bool = True,
        dialogue_prompts_as_text: bool = False,
        stop_at_new_turn: bool = False,
        **generation_kwargs,
    ):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(
                f"`num_samples` (samples N per prompt; formerly `n`) must be an integer >= 1, got {num_samples!r}."
            )
        if selection not in SELECTIONS:
            raise ValueError(f"`selection` must be one of {list(SELECTIONS)}, got {selection!r}.")
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
        if generation_kwargs.get("do_sample") is False:
            raise ValueError("Best-of-N needs sampled candidates: drop do_sample=False (greedy gives N copies).")
        for key in ("num_return_sequences", "num_beams"):
            if key in generation_kwargs:
                raise ValueError(f"Do not pass `{key}`: best-of-N sets it (num_return_sequences=n, num_beams=1).")
        self.inverse_beta = inverse_beta(beta)
        self.beta = float(beta)
        self.bound = float(bound)
        self.safeguards = get_safeguards(safeguards)
        # The transform's own beta only serves to solve m*, which is passed to it explicitly.
        transform_beta = self.beta if self.inverse_beta > 0 else 1.0
        self.transform = get_transform(transform, bound=bound, alpha=alpha, beta=transform_beta, safeguards=self.safeguards)
        self.model = model
        self.tokenizer = tokenizer
        self.reward = as_reward_function(reward)
        self.num_samples = num_samples
        self.selection = selection
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.seed = int(seed)
        self.chat_template = chat_template
        self.dialogue_prompts_as_text = bool(dialogue_prompts_as_text)
        self.stop_at_new_turn = bool(stop_at_new_turn)
        self.show_progress = show_progress
        self.generation_kwargs = {k: v for k, v in generation_kwargs.items() if v is not None}

    @property
    def n(self) -> int:
        """Deprecated alias of :attr:`num_samples`."""
        warn_renamed("n", "num_samples", "StackelbergBestOfN")
        return self.num_samples

    @classmethod
    def from_method(cls, method, model, tokenizer, reward, weight: Optional[float] = None, **kwargs):
        """Build the best-of-N of a method name: ``"bon"`` (raw, argmax), ``"soft-bon"`` (raw, soft),
        ``"srs-bon"`` or ``"<transform>-bon"`` (soft), with ``beta = 1 / weight`` (weight 0: a uniform choice).

        Examples:

        ```python
        >>> bon = StackelbergBestOfN.from_method("srs-bon", model, tokenizer, reward, weight=2.0, num_samples=8)  # doctest: +SKIP
        >>> out = bon.generate(prompts)  # doctest: +SKIP
        ```
        """
        parsed = parse_method(method) if isinstance(method, str) else method
        if parsed.decoder != "bon":
            raise ValueError(f"{method!r} is not a best-of-N method; use 'bon', 'soft-bon', 'srs-bon' or '<transform>-bon'.")
        if weight is not None:
            if not weight >= 0:
                raise ValueError(f"`weight` (1/beta) must be >= 0, got {weight!r}.")
            kwargs["beta"] = math.inf if weight == 0 else 1.0 / float(weight)
        return cls(model, tokenizer, reward, transform=parsed.transform, selection=parsed.selection, **kwargs)

    # ------------------------------------------------------------------------------------ pure selection

    def select(
        self,
        rewards: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        mask: Optional[torch.Tensor] = None,
        indices: Optional[Sequence[int]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Choose one sample per prompt from its rewards: the whole method after scoring, no model needed.

        Args:
            rewards (`torch.Tensor` of shape `(P, N)`): the guiding reward of each sample.
            generator (`torch.Generator`, *optional*): CPU generator of the soft selection's uniforms, one per
                prompt in order (default: one seeded with ``seed``).
            indices (`list[int]`, *optional*): the prompts' global indices; each uniform is then drawn from a
                generator keyed by ``(seed, index)`` instead (what :meth:`generate` does).
            mask (`torch.BoolTensor` of shape `(P, N)`, *optional*): ``False`` marks padding, never chosen.

        Returns:
            `dict` with ``chosen_index``, ``shaped``, ``threshold``, ``weights``, ``chosen_reward``,
            ``expected_reward``, ``effective_sample_size`` (see [`BestOfNOutput`]).
        """
        u = torch.as_tensor(rewards).detach().double().cpu()
        if u.ndim != 2:
            raise ValueError(f"`rewards` must have shape (prompts, N), got {tuple(u.shape)}.")
        if mask is not None:
            mask = torch.as_tensor(mask).bool().cpu()
        m = sample_threshold(u, self.beta, self.bound, self.safeguards, mask)
        shaped = shape_samples(u, self.transform, m, mask)
        if self.selection == "argmax":
            masked = shaped if mask is None else shaped.masked_fill(~mask, -math.inf)
            index = masked.argmax(dim=-1)
            weights = torch.nn.functional.one_hot(index, u.shape[-1]).double()
        else:
            weights = follower_weights(shaped, self.beta, mask)
            if indices is not None:
                from .utils.sampling import keyed_uniform

                if len(indices) != u.shape[0]:
                    raise ValueError(f"`indices` has {len(indices)} entries for {u.shape[0]} prompts.")
                uniform = keyed_uniform(self.seed, indices)
            else:
                if generator is None:
                    generator = torch.Generator().manual_seed(self.seed)
                uniform = torch.rand(u.shape[0], generator=generator, dtype=torch.float64)
            cdf = weights.cumsum(dim=-1)
            # Inverse CDF: the first sample whose cumulative weight exceeds the uniform (zero weights never win).
            index = (cdf <= (uniform * cdf[:, -1]).unsqueeze(-1)).sum(dim=-1)
            last = torch.where(weights > 0, torch.arange(u.shape[-1]), torch.zeros_like(index[:, None])).amax(-1)
            index = torch.minimum(index, last)
        chosen = index.unsqueeze(-1)
        return {
            "chosen_index": index,
            "shaped": shaped,
            "threshold": m,
            "weights": weights,
            "chosen_reward": u.gather(-1, chosen).squeeze(-1),
            "expected_reward": (weights * u).sum(dim=-1),
            "effective_sample_size": effective_sample_size(weights),
        }

    # ------------------------------------------------------------------------------------ sampling

    def generation_config(self):
        """The model's ``generation_config`` with sampling on, ``num_return_sequences=n`` and the overrides: what
        the samples are drawn from (:meth:`sample` draws them with keyed generators, see :mod:`hf_stackshape.utils.sampling`)."""
        cfg = copy.deepcopy(self.model.generation_config)
        cfg.update(
            do_sample=True,
            num_beams=1,
            num_return_sequences=self.num_samples,
            max_new_tokens=self.max_new_tokens,
            **self.generation_kwargs,
        )
        if self.stop_at_new_turn:
            from .utils.dialogue import STOP_STRINGS

            cfg.update(stop_strings=list(STOP_STRINGS))
        if cfg.pad_token_id is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        if cfg.eos_token_id is None:
            cfg.eos_token_id = self.tokenizer.eos_token_id
        return cfg

    @torch.no_grad()
    def sample(self, prompts: Sequence[str], indices: Sequence[int]) -> List[List[str]]:
        """``N`` decoded samples per prompt from one ``generate`` call; sample ``j`` of the prompt with global index
        ``i`` draws from a generator keyed by ``(seed, i, j)`` (:class:`~hf_stackshape.utils.sampling.KeyedSampler`)."""
        from .utils.dialogue import cut_all_at_new_turn
        from .utils.sampling import KeyedSampler, draw_key

        if len(indices) != len(prompts):
            raise ValueError(f"`indices` has {len(indices)} entries for {len(prompts)} prompts.")

        if self.tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token to batch prompts; set tokenizer.pad_token = tokenizer.eos_token.")
        texts = format_prompts(self.tokenizer, list(prompts), self.chat_template, self.dialogue_prompts_as_text)
        device = next(self.model.parameters()).device
        enc = encode_prompts(self.tokenizer, texts, None, list(indices)).to(device)  # budget None: no truncation
        sampling = self.generation_config()
        sampler = KeyedSampler.expand(
            [draw_key(self.seed, i, j, "sample") for i in indices for j in range(self.num_samples)], sampling
        )
        # Greedy over the sampler's draws: generate(do_sample=True) would draw from the global RNG, batch-wide.
        greedy = copy.deepcopy(sampling)
        greedy.update(do_sample=False, num_return_sequences=1, temperature=None, top_k=None, top_p=None, min_p=None)
        enc = {key: value.repeat_interleave(self.num_samples, dim=0) for key, value in enc.items()}
        stop = {"tokenizer": self.tokenizer} if self.stop_at_new_turn else {}  # for the stop strings
        out = self.model.generate(**enc, generation_config=greedy, logits_processor=[sampler], **stop)
        decoded = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        decoded = [t.strip() for t in cut_all_at_new_turn(decoded, self.stop_at_new_turn)]
        return [decoded[i * self.num_samples : (i + 1) * self.num_samples] for i in range(len(texts))]

    def generate(
        self,
        prompts: Sequence[str],
        return_candidates: bool = False,
        on_batch: Optional[Callable[[int, List[str]], None]] = None,
        first_index: int = 0,
        indices: Optional[Sequence[int]] = None,
    ) -> BestOfNOutput:
        """Answer every prompt with its selected sample.

        Args:
            prompts (`list[str]`): raw user prompts (the chat template is applied for the base model; the
                reward reads the raw prompt and the response, as in the calibrator).
            return_candidates (`bool`, *optional*, defaults to `False`): keep all ``N`` samples in the output.
            on_batch (`Callable[[int, list[str]], None]`, *optional*): called after each batch with the index of
                its first prompt and its chosen responses (for resumable writers).
            first_index (`int`, *optional*, defaults to 0): index of ``prompts[0]`` in the whole job.
            indices (`list[int]`, *optional*): every prompt's index in the whole job (instead of ``first_index``).
                Draws are keyed by it, so a resumed run, another batch size or another split over processes
                samples and selects as an uninterrupted single run would.

        Returns:
            [`BestOfNOutput`].
        """
        if isinstance(prompts, str):
            raise ValueError("Pass a list of prompts (wrap a single prompt as [prompt]).")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("No prompts to answer.")
        indices = global_indices(prompts, first_index, indices)
        parts = []
        starts = range(0, len(prompts), self.batch_size)
        label = f"best-of-{self.num_samples} {self.transform.name}/{self.selection}"
        for start in tqdm(starts, desc=label, disable=not self.show_progress, leave=False):
            batch = prompts[start : start + self.batch_size]
            batch_indices = indices[start : start + len(batch)]
            groups = self.sample(batch, batch_indices)
            rewards = score_groups(self.reward, batch, groups)
            chosen = self.select(rewards, indices=batch_indices)
            responses = [g[i] for g, i in zip(groups, chosen["chosen_index"].tolist())]
            parts.append(BestOfNOutput(responses=responses, candidates=groups, rewards=rewards, indices=batch_indices,
                                       **chosen))
            if on_batch is not None:
                on_batch(start, responses)
        return _concat(parts, return_candidates)

    def reselect(self, samples: BestOfNOutput) -> BestOfNOutput:
        """Select again, with this instance's transform, ``beta`` and selection, among the samples of an earlier
        :meth:`generate` (``return_candidates=True``, same ``num_samples``, ``seed`` and sampling): what
        :meth:`generate` would return, without sampling or scoring again."""
        if samples.candidates is None:
            raise ValueError("`samples` has no candidates; produce it with generate(..., return_candidates=True).")
        if samples.rewards.shape[-1] != self.num_samples:
            raise ValueError(
                f"`samples` holds {samples.rewards.shape[-1]} samples per prompt, this best-of-N "
                f"num_samples={self.num_samples}."
            )
        indices = samples.indices if samples.indices is not None else list(range(len(samples.responses)))
        chosen = self.select(samples.rewards, indices=indices)
        responses = [g[i] for g, i in zip(samples.candidates, chosen["chosen_index"].tolist())]
        return BestOfNOutput(responses=responses, candidates=samples.candidates, rewards=samples.rewards,
                             indices=list(indices), **chosen)


@renamed_kwargs(n="num_samples")
def best_of_n_grid(
    model,
    tokenizer,
    reward,
    prompts: Sequence[str],
    methods: Sequence[str],
    weights: Sequence[float],
    indices: Optional[Sequence[int]] = None,
    **kwargs,
) -> Dict[tuple, BestOfNOutput]:
    """Every best-of-N method at every guidance weight from one set of samples.

    Runs with the same ``seed`` sample the same candidates whatever the method and weight, so sampling and
    scoring once and selecting per ``(method, weight)`` (:meth:`StackelbergBestOfN.reselect`) returns exactly
    what separate runs return, at the cost of one. This is how a sweep or a demo adds its best-of-N rows.

    Args:
        model, tokenizer, reward: as [`StackelbergBestOfN`].
        prompts (`list[str]`): the prompts.
        methods (`list[str]`): best-of-N method names (``"bon"``, ``"soft-bon"``, ``"srs-bon"``, ``"<transform>-bon"``).
        weights (`list[float]`): guidance weights ``1 / beta`` (0: a uniform choice).
        indices (`list[int]`, *optional*): the prompts' global indices (default ``0..P-1``), the keys of their
            random draws (e.g. one rank's share of a multi-process sweep).
        kwargs: the other [`StackelbergBestOfN`] settings (``num_samples``, ``bound``, ``alpha``, ``seed``,
            ``max_new_tokens``...).

    Returns:
        `dict` from ``(method label, weight)`` (labels as :func:`~hf_stackshape.pipeline.generation.parse_method` gives them:
        ``"bon"``, ``"soft-bon"``, ``"srs-bon"``) to [`BestOfNOutput`] (with candidates).
    """
    parsed = [parse_method(m) for m in methods]
    if not parsed or not weights:
        raise ValueError(f"Give at least one best-of-N method and one weight, got methods={methods!r}, weights={weights!r}.")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    samples = StackelbergBestOfN.from_method(parsed[0], model, tokenizer, reward, weight=weights[0], **kwargs).generate(
        prompts, return_candidates=True, indices=indices
    )
    return {
        (method.label, float(weight)): StackelbergBestOfN.from_method(
            method, model, tokenizer, reward, weight=weight, **kwargs
        ).reselect(samples)
        for method in parsed
        for weight in weights
    }
