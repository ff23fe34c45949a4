"""The LLM judge of Wang et al. (2026), section 5: a thin layer over huggingface_hub's ``InferenceClient``
(:mod:`.client`) adding the paper's protocol (:mod:`.protocol`), seeded order swaps, a concurrency limit,
retries, the paper's tally of API errors and a resumable cache (:mod:`.cache`)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import random
import threading
import urllib.parse
from typing import Dict, List, Optional, Union

from tqdm.auto import tqdm
from transformers.utils import logging

from ...core.presets import FromPresetMixin
from .base import Judge, JudgeError, Judgement, JudgementList, winner_of
from .cache import JudgementCache
from .client import DEFAULT_BASE_URL, OPENAI_HOST, EndpointClient, RetryableError, resolve_api_key
from .protocol import SCORE_PARSERS, get_protocol, load_template, paper_verdict, parse_scores_paper

logger = logging.get_logger(__name__)

__all__ = ["LLMJudge"]


def _in_daemon_threads(fn, jobs, workers: int):
    """Yield ``(key, index, result, error)`` for each ``(key, index, args)`` job as ``fn(*args)`` finishes in
    one of ``workers`` daemon threads. Unlike ``ThreadPoolExecutor`` (whose threads the interpreter joins at
    exit), a thread stuck on a hung endpoint never keeps the process alive after Ctrl-C; the caller stops them
    with :meth:`EndpointClient.abort`."""
    todo: "queue.Queue" = queue.Queue()
    for job in jobs:
        todo.put(job)
    results: "queue.Queue" = queue.Queue()

    def work() -> None:
        while True:
            try:
                key, index, args = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put((key, index, fn(*args), None))
            except BaseException as err:  # noqa: BLE001 - handed to the caller, which decides
                results.put((key, index, None, err))

    for n in range(min(workers, len(jobs))):
        threading.Thread(target=work, name=f"llm-judge-{n}", daemon=True).start()
    for _ in range(len(jobs)):
        while True:
            try:
                yield results.get(timeout=0.25)  # a short wait keeps Ctrl-C prompt in the main thread
                break
            except queue.Empty:
                continue

API_ERROR_POLICIES = ("tie", "drop")


class LLMJudge(FromPresetMixin, Judge):
    """An LLM judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI, ``transformers serve``...),
    reached through huggingface_hub's ``InferenceClient``; the paper used gpt-4.1 at temperature 0.

    Each comparison is one request under the judging protocol (``"paper"``: both answers scored 1-10 for
    helpfulness, harmlessness and detail; a response cut off at the length limit is not penalised; earlier
    turns of the prompt are disregarded; the first line of the reply holds the two scores). The two answers
    are shown in an order swapped at random (``seed`` and the comparison decide, so a rerun makes the same
    choice). A reply whose first line does not parse is a tie. A comparison the endpoint could not answer
    after its retries (an API error) is a tie too under the paper's tally (``api_error="tie"``), or left out
    of the tally (``api_error="drop"``); either way it is listed in ``JudgementList.failures`` and never
    cached, so a rerun asks again.

    Key handling: the key is ``api_key``, else ``$STACKSHAPE_JUDGE_API_KEY``, else ``$OPENAI_API_KEY`` for
    the OpenAI host only; it is never sent over plain http to a host other than loopback, redirects are
    refused, and the Hugging Face token is never sent (see :mod:`hf_stackshape.evaluation.judges.client`).

    Args:
        base_url (`str`, *optional*):
            Endpoint root (``/v1/chat/completions`` is appended when missing). Default
            ``$STACKSHAPE_JUDGE_BASE_URL``, else ``https://api.openai.com/v1``.
        model (`str`, *optional*): model name sent with each request. Default ``$STACKSHAPE_JUDGE_MODEL``,
            else ``"gpt-4.1"``.
        api_key (`str`, *optional*): bearer key (``""``: send none). See "Key handling" above.
        protocol (`str`, *optional*, defaults to `"paper"`): the judging protocol (:data:`.protocol.PROTOCOLS`).
        temperature (`float`, *optional*, defaults to 0.0): sampling temperature of the judge.
        api_error (`str`, *optional*, defaults to `"tie"`): how an API error enters the tally: ``"tie"``
            (the paper's tally) or ``"drop"`` (``winner=None``, left out of the win-tie rate).
        max_tokens (`int`, *optional*, defaults to 256): reply budget (the scores are on the first line).
        timeout (`float`, *optional*, defaults to 60.0): seconds per request.
        max_retries (`int`, *optional*, defaults to 4): retries after the first attempt, on timeouts,
            connection errors, HTTP 5xx / 429 / 408 and malformed replies. Other HTTP errors (401, 404...)
            and redirects fail at once.
        backoff (`float`, *optional*, defaults to 1.0): seconds before the first retry, doubled each time
            (capped at ``max_backoff``, defaults to 30.0), with up to 10 % jitter; a ``Retry-After`` header is
            honoured up to ``max_backoff``.
        max_time (`float`, *optional*, defaults to 600.0): seconds per comparison after which no new retry
            starts.
        concurrency (`int`, *optional*, defaults to 4): requests in flight at once.
        seed (`int`, *optional*, defaults to 0): seeds the order swaps, and is sent as ``seed``.
        cache_file (`str`, *optional*): JSONL file of finished judgements (:class:`.cache.JudgementCache`),
            keyed by :meth:`cache_key`; cached comparisons are not requested again.
        on_error (`str`, *optional*, defaults to `"report"`): ``"report"`` returns API errors in the list
            (and logs a warning); ``"raise"`` raises :class:`JudgeError` (holding all judgements) once every
            comparison has been tried and the finished ones are cached.
        system_prompt, template (`str`, *optional*): replace the protocol's instructions or user message
            (fields ``{question}``, ``{answer_1}``, ``{answer_2}``); the cache key records the change.
        system_prompt_file, template_file (`str`, *optional*): the same, read from a text file (e.g. the
            authors' exact wording, from ``gpt4-eval.py`` in their repository, whose ``{answer1}`` / ``{answer2}``
            fields work as they are).
        score_parser (`str`, *optional*, defaults to `"ours"`): how the reply is read. ``"ours"``
            (:func:`.protocol.parse_scores`): two scores in 1-10 on the first non-empty line, commas and markdown
            emphasis allowed; anything else is a tie. ``"paper"`` (:func:`.protocol.parse_scores_paper`, the
            ``paper`` preset): the authors' rule, any two floats on the first line split on single spaces, where
            out-of-range scores decide and a NaN verdict is counted nowhere (``winner=None``, no error).
        strip_answers (`bool`, *optional*, defaults to `False`): strip blank space around each answer, and a
            copy of the prompt at its start, before judging (the authors' ``extract_answer``; the ``paper``
            preset).
        show_progress (`bool`, *optional*, defaults to `False`): tqdm bar over comparisons.

    Examples:

    ```python
    >>> from hf_stackshape.evaluation import LLMJudge, win_tie_scores
    >>> judge = LLMJudge(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen3-8B", cache_file="j.jsonl")  # doctest: +SKIP
    >>> win_tie_scores(prompts, srs_answers, vanilla_answers, judge)["win_tie"]  # doctest: +SKIP
    ```
    """

    #: ``LLMJudge.from_preset(name, **overrides)`` (:class:`~hf_stackshape.core.presets.FromPresetMixin`): the
    #: preset's ``judge`` settings, ``overrides`` on top (``base_url``, ``api_key``, ``cache_file``...).
    _preset_component = "judge"

    def __init__(
        self,
        base_url: Optional[str] = None,
        model: Optional[str] = None,
        api_key: Optional[str] = None,
        protocol: str = "paper",
        temperature: float = 0.0,
        api_error: str = "tie",
        max_tokens: int = 256,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_time: float = 600.0,
        concurrency: int = 4,
        seed: int = 0,
        cache_file: Optional[Union[str, os.PathLike]] = None,
        on_error: str = "report",
        system_prompt: Optional[str] = None,
        template: Optional[str] = None,
        show_progress: bool = False,
        score_parser: str = "ours",
        strip_answers: bool = False,
        system_prompt_file: Optional[Union[str, os.PathLike]] = None,
        template_file: Optional[Union[str, os.PathLike]] = None,
    ):
        base_url = (base_url or os.environ.get("STACKSHAPE_JUDGE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"`base_url` must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}."
            )
        self.base_url = base_url
        self.model = model or os.environ.get("STACKSHAPE_JUDGE_MODEL") or "gpt-4.1"
        api_key = resolve_api_key(base_url, api_key)
        if api_key is None and parsed.hostname == OPENAI_HOST:
            raise ValueError(
                "The OpenAI judge needs an API key: set OPENAI_API_KEY (or pass api_key=), or point base_url / "
                "STACKSHAPE_JUDGE_BASE_URL at your own OpenAI-compatible server."
            )
        for name, value, minimum in (
            ("max_tokens", max_tokens, 1),
            ("concurrency", concurrency, 1),
            ("max_retries", max_retries, 0),
        ):
            if int(value) != value or int(value) < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
        seconds = {"timeout": timeout, "backoff": backoff, "max_backoff": max_backoff, "max_time": max_time}
        for name, value in seconds.items():
            if not (math.isfinite(float(value)) and float(value) >= 0) or (
                name == "timeout" and float(value) == 0
            ):
                raise ValueError(
                    f"`{name}` must be a finite number of seconds >= 0 (timeout > 0), got {value!r}."
                )
        if not (math.isfinite(float(temperature)) and float(temperature) >= 0):
            raise ValueError(f"`temperature` must be a finite number >= 0, got {temperature!r}.")
        if api_error not in API_ERROR_POLICIES:
            raise ValueError(f"`api_error` must be one of {API_ERROR_POLICIES}, got {api_error!r}.")
        if on_error not in ("report", "raise"):
            raise ValueError(f"`on_error` must be 'report' or 'raise', got {on_error!r}.")
        if score_parser not in SCORE_PARSERS:
            raise ValueError(f"`score_parser` must be one of {SCORE_PARSERS}, got {score_parser!r}.")
        for name, text, path in (("system_prompt", system_prompt, system_prompt_file), ("template", template, template_file)):
            if text is not None and path is not None:
                raise ValueError(f"Pass `{name}` or `{name}_file`, not both.")
        if system_prompt_file is not None:
            system_prompt = load_template(system_prompt_file)
        if template_file is not None:
            template = load_template(template_file)
        self.protocol = get_protocol(protocol, system_prompt=system_prompt, template=template)
        self.score_parser = score_parser
        self.strip_answers = bool(strip_answers)
        self.temperature = float(temperature)
        self.api_error = api_error
        self.max_tokens = int(max_tokens)
        self.retry = {
            "max_retries": int(max_retries),
            "backoff": float(backoff),
            "max_backoff": float(max_backoff),
        }
        self.retry["max_time"] = float(max_time)
        self.concurrency = int(concurrency)
        self.seed = int(seed)
        self.cache = JudgementCache(cache_file) if cache_file is not None else None
        self.on_error = on_error
        self.show_progress = show_progress
        self.client = EndpointClient(base_url, api_key, timeout=float(timeout))

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------------------------- keys & order
    def cache_key(self, prompt: str, answer_a: str, answer_b: str) -> str:
        """SHA-256 of the comparison and of everything that changes a verdict: the protocol (version, text),
        endpoint, model, ``max_tokens``, ``temperature`` and ``seed``. Another setting never reuses a judgement."""
        protocol = [self.protocol.version, self.protocol.system_prompt, self.protocol.template]
        judge = [self.base_url, self.model, self.max_tokens, self.temperature, self.seed]
        if self.score_parser != "ours":  # listed only when not the default, so earlier caches keep their keys
            judge.append(f"score_parser={self.score_parser}")
        payload = json.dumps([prompt, answer_a, answer_b, protocol, judge], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def is_swapped(self, prompt: str, answer_a: str, answer_b: str) -> bool:
        """Whether ``b`` is shown first: decided by ``seed`` and the comparison only (not its position nor the
        endpoint), so a rerun, or the same comparison on another endpoint, uses the same order."""
        digest = hashlib.sha256(json.dumps([prompt, answer_a, answer_b], ensure_ascii=False).encode("utf-8"))
        return random.Random(f"{self.seed}:{digest.hexdigest()}").random() < 0.5

    # ----------------------------------------------------------------------------------- judging
    def messages(self, prompt: str, first: str, second: str) -> List[dict]:
        """The chat messages sent for one comparison (``first`` is shown as Assistant 1)."""
        return self.protocol.messages(prompt, first, second)

    def judge_one(self, prompt: str, answer_a: str, answer_b: str) -> Judgement:
        """Judge one comparison; raises on an API error (:meth:`compare` turns that into a judgement)."""
        swapped = self.is_swapped(prompt, answer_a, answer_b)
        first, second = (answer_b, answer_a) if swapped else (answer_a, answer_b)
        reply = self.client.complete(
            self.messages(prompt, first, second),
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            **self.retry,
        )
        paper = self.score_parser == "paper"
        scores = parse_scores_paper(reply) if paper else self.protocol.parse(reply)
        if scores is None:
            return Judgement(winner="tie", raw=reply, parsed=False, swapped=swapped)
        score_a, score_b = (scores[1], scores[0]) if swapped else scores
        winner = paper_verdict(score_a, score_b) if paper else winner_of(score_a, score_b)
        return Judgement(winner=winner, score_a=score_a, score_b=score_b, raw=reply, swapped=swapped)

    @staticmethod
    def strip_answer(prompt: str, answer: str) -> str:
        """``answer`` without blank space around it nor a copy of ``prompt`` at its start (``strip_answers``)."""
        answer = answer.strip()
        if prompt and answer.startswith(prompt):
            answer = answer[len(prompt) :].strip()
        return answer

    def _failed(self, prompt: str, answer_a: str, answer_b: str, error: Exception) -> Judgement:
        winner = "tie" if self.api_error == "tie" else None
        swapped = self.is_swapped(prompt, answer_a, answer_b)
        return Judgement(winner=winner, parsed=False, swapped=swapped, error=str(error))

    def compare(self, prompts, answers_a, answers_b) -> JudgementList:
        prompts, answers_a, answers_b = self._check(prompts, answers_a, answers_b)
        if self.strip_answers:
            answers_a = [self.strip_answer(p, a) for p, a in zip(prompts, answers_a)]
            answers_b = [self.strip_answer(p, b) for p, b in zip(prompts, answers_b)]
        keys = [self.cache_key(p, a, b) for p, a, b in zip(prompts, answers_a, answers_b)]
        done: Dict[str, Judgement] = self.cache.load() if self.cache is not None else {}
        todo = {k: i for i, k in reversed(list(enumerate(keys))) if k not in done}  # each comparison once
        if done and len(todo) < len(set(keys)):
            logger.info(
                "Judge cache %s: %d of %d comparisons already judged.",
                self.cache.path,
                len(set(keys)) - len(todo),
                len(set(keys)),
            )
        self.client.clear_abort()  # an earlier compare may have been interrupted
        bar = tqdm(total=len(todo), desc="judge", disable=not self.show_progress, leave=False)
        jobs = [(k, i, (prompts[i], answers_a[i], answers_b[i])) for k, i in todo.items()]
        try:
            for key, i, judgement, err in _in_daemon_threads(self.judge_one, jobs, self.concurrency):
                if err is not None:
                    if not isinstance(err, (RetryableError, ValueError)):
                        raise err
                    judgement = self._failed(prompts[i], answers_a[i], answers_b[i], err)
                elif self.cache is not None:
                    # Written the moment it finishes: an interrupt loses nothing finished.
                    self.cache.add(key, judgement, self.model)
                done[key] = judgement
                bar.update(1)
        except BaseException:
            # Interrupted (Ctrl-C...): requests in flight stop at their next chunk, no retry starts, and the
            # worker threads are daemons, so the process never waits for a hung endpoint on its way out.
            self.client.abort()
            raise
        finally:
            bar.close()
        out = JudgementList(done[k] for k in keys)
        failures = out.failures
        if failures:
            shown = ", ".join(f"#{i}: {e}" for i, e in failures[:3])
            more = ", ..." if len(failures) > 3 else ""
            counted = (
                "counted as ties (the paper's tally)" if self.api_error == "tie" else "left out of the tally"
            )
            message = f"{len(failures)} of {len(out)} judge comparisons failed, {counted} ({shown}{more})."
            if self.on_error == "raise":
                raise JudgeError(message, out)
            logger.warning(message)
        return out
