"""The judge's connection to an OpenAI-compatible chat endpoint: huggingface_hub's ``InferenceClient``
(``base_url=...``, the OpenAI chat-completions API), with our key-handling rules and bounded retries.

``InferenceClient`` builds each request and parses each reply. Its requests normally go through the Hub's
shared HTTP session, which does three things a judge endpoint must not get (measured with huggingface_hub
2.4): it refuses every request when ``HF_HUB_OFFLINE=1`` (even to a judge on loopback), it follows
redirects, and when no key is given it attaches the user's Hugging Face token to whatever ``base_url`` is.
:class:`EndpointClient` therefore sends them through its own HTTP client:

* the only ``Authorization`` header is ours (never the Hub token);
* redirects are refused (:class:`RedirectRefused`), so the key never leaves the endpoint it was meant for;
* a key is never sent over plain http to a host that is not loopback (checked when the client is built);
* ``OPENAI_API_KEY`` is only read for the OpenAI host (``api.openai.com``); any other endpoint takes its key
  from the ``api_key`` argument or ``STACKSHAPE_JUDGE_API_KEY`` (:func:`resolve_api_key`);
* loopback endpoints bypass any proxy from the environment;
* a reply is read as a stream under a **total deadline** (``timeout`` seconds for the whole body, not per
  read: a server trickling one byte a second is cut off), and at most :data:`MAX_REPLY_BYTES` of it (after
  gzip decoding, so a compressed bomb is cut off too; :class:`ReplyTooLarge`); a body that does not decode
  is a malformed reply (an API error in the tally), never a crash;
* :meth:`EndpointClient.abort` (called on Ctrl-C) makes requests in flight and waiting retries stop.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import threading
import time
import urllib.parse
from typing import List, Optional

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from huggingface_hub.utils import hf_raise_for_status
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "OPENAI_HOST",
    "DEFAULT_BASE_URL",
    "EndpointClient",
    "RedirectRefused",
    "ReplyTooLarge",
    "MAX_REPLY_BYTES",
    "RetryableError",
    "is_loopback",
    "resolve_api_key",
]

OPENAI_HOST = "api.openai.com"
DEFAULT_BASE_URL = f"https://{OPENAI_HOST}/v1"


class RedirectRefused(ValueError):
    """The endpoint answered with a redirect; the judge never follows one (its key must not travel)."""


#: The most bytes of a judge reply read (after decoding): a chat reply of 256 tokens is a few KiB.
MAX_REPLY_BYTES = 8 * 1024 * 1024


class ReplyTooLarge(ValueError):
    """The endpoint's reply is over :data:`MAX_REPLY_BYTES` (not retried: it would send it again)."""


class JudgeAborted(Exception):
    """The client was aborted (Ctrl-C) while a request was in flight or waiting to be retried."""


class RetryableError(Exception):
    """A transient endpoint failure (timeout, refused connection, 5xx, 429, 408, malformed reply)."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


def is_loopback(host: Optional[str]) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_api_key(base_url: str, api_key: Optional[str] = None) -> Optional[str]:
    """The key to send to ``base_url``, or ``None`` for none.

    Order: ``api_key`` when given (``""`` means: send no key), else ``$STACKSHAPE_JUDGE_API_KEY``, else
    ``$OPENAI_API_KEY`` but only when the endpoint's host is ``api.openai.com``.

    Raises:
        ValueError: when a key would go over plain http to a host that is not loopback.
    """
    parsed = urllib.parse.urlparse(base_url)
    if api_key is None:
        api_key = os.environ.get("STACKSHAPE_JUDGE_API_KEY") or None
        if api_key is None and parsed.hostname == OPENAI_HOST:
            api_key = os.environ.get("OPENAI_API_KEY") or None
    api_key = api_key or None
    if api_key is not None and parsed.scheme != "https" and not is_loopback(parsed.hostname):
        raise ValueError(
            f"Refusing to send the judge API key in clear text to {base_url!r}: use an https:// endpoint, a "
            "loopback address (127.0.0.1, localhost), or no key (api_key='' / unset STACKSHAPE_JUDGE_API_KEY)."
        )
    return api_key


def _retry_after(headers) -> Optional[float]:
    """Seconds from a ``Retry-After: <seconds>`` header (the HTTP-date form is ignored)."""
    try:
        value = float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


class EndpointClient(InferenceClient):
    """``InferenceClient`` for one OpenAI-compatible endpoint, sending through its own HTTP client (see the
    module docstring for why), plus :meth:`complete`: one chat request with bounded retries.

    Args:
        base_url (`str`): the endpoint root (``/v1/chat/completions`` is appended when missing).
        api_key (`str`, *optional*): the bearer key, already resolved by :func:`resolve_api_key`.
        timeout (`float`): seconds per request (connect and each read).
    """

    def __init__(self, base_url: str, api_key: Optional[str], timeout: float, max_reply_bytes: int = MAX_REPLY_BYTES):
        if "_inner_post" not in InferenceClient.chat_completion.__code__.co_names:
            # Our transport (and with it every key rule) hooks into InferenceClient._inner_post; a
            # huggingface_hub that no longer sends through it would bypass them: stop before any request.
            raise RuntimeError(
                "This huggingface_hub's InferenceClient.chat_completion no longer sends through _inner_post, so "
                "the judge's key rules cannot be enforced; install a huggingface_hub version this hf_stackshape "
                "supports (tested with 2.4)."
            )
        super().__init__(base_url=base_url, timeout=timeout)
        self._api_key = api_key
        self._deadline_s = float(timeout)
        self._max_reply_bytes = int(max_reply_bytes)
        self._stop = threading.Event()
        host = urllib.parse.urlparse(base_url).hostname
        # No redirects; no proxy from the environment for a server on this machine.
        self._http = httpx2.Client(follow_redirects=False, trust_env=not is_loopback(host), timeout=timeout)

    def close(self) -> None:
        self._http.close()
        super().close()

    def abort(self) -> None:
        """Stop: requests in flight end at their next chunk (or read timeout), no retry starts (Ctrl-C)."""
        self._stop.set()

    def clear_abort(self) -> None:
        """Accept requests again after :meth:`abort` (a new ``compare`` after an interrupted one)."""
        self._stop.clear()

    def _read_body(self, response, url: str, deadline: float) -> bytes:
        """The decoded body, read chunk by chunk under the request's total deadline and the size cap."""
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_reply_bytes:
            raise ReplyTooLarge(
                f"The judge endpoint {url} announced a {int(declared)}-byte reply, over the "
                f"{self._max_reply_bytes}-byte limit; a judge reply is a few KiB."
            )
        chunks, total = [], 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > self._max_reply_bytes:
                    raise ReplyTooLarge(
                        f"The judge endpoint {url} sent a reply over the {self._max_reply_bytes}-byte limit; "
                        "a judge reply is a few KiB."
                    )
                chunks.append(chunk)
                if self._stop.is_set():
                    raise JudgeAborted("judge aborted")
                if time.monotonic() > deadline:
                    raise InferenceTimeoutError(
                        f"Judge reply from {url} not complete after {self._deadline_s:g}s (timeout covers the whole "
                        f"reply; {total} bytes so far)."
                    )
        except httpx2.DecodingError as err:
            raise ValueError(f"the reply body does not decode ({err})") from None
        return b"".join(chunks)

    def _inner_post(self, request_parameters, *, stream: bool = False):
        if stream:
            raise ValueError("The judge does not stream.")
        if self._stop.is_set():
            raise JudgeAborted("judge aborted")
        headers = {k: v for k, v in request_parameters.headers.items() if k.lower() != "authorization"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        url = request_parameters.url
        deadline = time.monotonic() + self._deadline_s  # per thread: requests run concurrently
        try:
            with self._http.stream(
                "POST", url, json=request_parameters.json, content=request_parameters.data, headers=headers
            ) as response:
                if response.is_redirect or 300 <= response.status_code < 400:
                    raise RedirectRefused(
                        f"The judge endpoint {url} answered HTTP {response.status_code} redirecting to "
                        f"{response.headers.get('location')!r}; redirects are refused so the API key stays with the "
                        "endpoint you chose. Set base_url to the final address."
                    )
                body = self._read_body(response, url, deadline)
                status, reply_headers, request = response.status_code, response.headers, response.request
        except httpx2.TimeoutException as err:
            raise InferenceTimeoutError(f"Judge request timed out: {url}") from err
        if status >= 400:
            kept = {k: v for k, v in reply_headers.items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")}
            hf_raise_for_status(httpx2.Response(status, headers=kept, content=body, request=request))
        return body

    def _attempt(self, messages: List[dict], **parameters) -> str:
        """One request: the reply text, or :class:`RetryableError` / :class:`ValueError` (not retried)."""
        try:
            output = self.chat_completion(messages, **parameters)
        except (InferenceTimeoutError, httpx2.TransportError) as err:
            raise RetryableError(f"{type(err).__name__}: {err}") from None
        except JudgeAborted:
            raise
        except HfHubHTTPError as err:
            code = err.response.status_code
            detail = (err.response.text or "")[:300].strip()
            if code >= 500 or code in (408, 429):
                raise RetryableError(f"HTTP {code}: {detail}", _retry_after(err.response.headers)) from None
            raise ValueError(f"HTTP {code} from {self.model}: {detail}") from None
        except ValueError as err:  # the body is not JSON (json.JSONDecodeError is a ValueError)
            if isinstance(err, (RedirectRefused, ReplyTooLarge)):
                raise
            raise RetryableError(f"malformed reply ({type(err).__name__}): {err}") from None
        try:
            content = output.choices[0].message.content
        except (AttributeError, IndexError, KeyError, TypeError) as err:
            raise RetryableError(
                f"malformed reply ({type(err).__name__}): no choices[0].message.content"
            ) from None
        if not isinstance(content, str):
            raise RetryableError(f"malformed reply: message content is {type(content).__name__}")
        return content

    def complete(
        self,
        messages: List[dict],
        *,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        max_time: float,
        **parameters,
    ) -> str:
        """Send one chat request (``parameters`` go to ``chat_completion``), retrying transient failures: at
        most ``max_retries + 1`` attempts, exponential backoff from ``backoff`` seconds (capped at
        ``max_backoff``, 10 % jitter, a ``Retry-After`` honoured up to the cap), and no retry would start
        after ``max_time`` seconds. Raises :class:`RetryableError` once it gives up."""
        rng = random.Random()
        start = time.monotonic()
        last, attempts, out_of_time = "", 0, False
        for attempt in range(max_retries + 1):
            attempts = attempt + 1
            try:
                return self._attempt(messages, **parameters)
            except RetryableError as err:
                last = str(err)
                if attempt == max_retries:
                    break
                delay = min(max_backoff, backoff * 2**attempt) * (1 + 0.1 * rng.random())
                if err.retry_after is not None:  # the server said when to come back (429 / 503)
                    delay = min(max_backoff, max(delay, err.retry_after))
                if time.monotonic() - start + delay > max_time:
                    out_of_time = True
                    break
                logger.info(
                    "Judge request failed (%s); retry %d/%d in %.1fs.", last, attempt + 1, max_retries, delay
                )
                if self._stop.wait(delay):
                    raise JudgeAborted("judge aborted")
        limit = f" (max_time={max_time:g}s reached)" if out_of_time else ""
        raise RetryableError(f"gave up after {attempts} attempts{limit}: {last}")
