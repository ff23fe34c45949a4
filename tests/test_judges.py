"""Judges: the score parser, the paper's protocol, the reward-model judge, and the LLM judge (through
huggingface_hub's InferenceClient) against real stdlib HTTP servers on loopback: failures, retries, the
paper's tally, the resumable cache and the key-handling rules. Every test here runs with HF_HUB_OFFLINE=1
(tests/conftest.py): a judge on loopback is not the Hub and must work offline."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_stackshape.evaluation.judges import (
    PROTOCOLS,
    JudgeError,
    LLMJudge,
    RewardModelJudge,
    load_judge,
    parse_scores,
)
from hf_stackshape.evaluation.judges.client import resolve_api_key
from hf_stackshape.evaluation.scores import win_tie_scores
from hf_stackshape.evaluation.text_stats import win_tie_summary
from hf_stackshape.core.presets import get_preset
from hf_stackshape.rewards import CallableReward

KEY_VARS = (
    "OPENAI_API_KEY",
    "STACKSHAPE_JUDGE_API_KEY",
    "STACKSHAPE_JUDGE_BASE_URL",
    "STACKSHAPE_JUDGE_MODEL",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8 7", (8.0, 7.0)),
        ("8 7\nAssistant 1 gives more detail.", (8.0, 7.0)),
        ("9, 3\nbecause...", (9.0, 3.0)),
        ("\n\n  7.5 6  \nrest", (7.5, 6.0)),
        ("**10 1**\nwhy", (10.0, 1.0)),
        ("1 10", (1.0, 10.0)),
    ],
)
def test_parse_scores_accepts_the_protocol(text, expected):
    assert parse_scores(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Assistant 1: 8, Assistant 2: 7",  # words around the scores
        "8",  # one score
        "8 7 6",  # three numbers
        "8/10 7/10",
        "11 3",  # out of range
        "0 5",
        "nan 5",
        "inf 5",
        "",
        "   \n  ",
        "The first answer is better.\n8 7",  # scores not on the first line
        None,
    ],
)
def test_parse_scores_rejects_everything_else(text):
    assert parse_scores(text) is None


# ----------------------------------------------------------------------------------------------- protocol


def test_paper_protocol_says_what_the_paper_asks():
    protocol = PROTOCOLS["paper"]
    system = protocol.system_prompt.lower()
    for phrase in ("helpful", "harmless", "detail", "from 1 to 10", "first line", "cut off", "length limit"):
        assert phrase in system, phrase
    assert "earlier turns" in system and "disregard" in system
    assert "order" in system  # the position-bias warning
    messages = protocol.messages("Human: hi\n\nAssistant: hello\n\nHuman: and?", "ONE", "TWO")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert user.index("and?") < user.index("ONE") < user.index("TWO")
    assert "Assistant 1" in user and "Assistant 2" in user


def test_paper_preset_is_the_default_protocol_and_tally():
    preset = get_preset("paper", "judge")
    assert preset["protocol"] == "paper" and preset["temperature"] == 0.0 and preset["api_error"] == "tie"
    judge = LLMJudge.from_preset("paper", base_url="http://127.0.0.1:9/v1", max_tokens=7)
    default = LLMJudge(base_url="http://127.0.0.1:9/v1")
    for j in (judge, default):
        assert (j.protocol.name, j.temperature, j.api_error) == ("paper", 0.0, "tie")
    assert judge.max_tokens == 7
    paper = LLMJudge.from_preset("paper", base_url="http://127.0.0.1:9/v1")
    assert (paper.model, paper.max_tokens) == ("gpt-4.1", 2048)  # the authors' gpt4-eval.py settings
    assert "model" not in preset  # gpt-4.1 is the default; a `model` key would become a CLI command's base model


# ----------------------------------------------------------------------------------------------- reward judge


def test_reward_model_judge_decides_by_reward_with_tolerance():
    judge = RewardModelJudge(CallableReward(lambda response: len(response)), tolerance=1.0)
    out = judge.compare(["p"] * 4, ["aaaa", "a", "aa", "aaaaaa"], ["a", "aaaa", "aaa", "aaaaaa"])
    assert [j.winner for j in out] == ["a", "b", "tie", "tie"]
    assert [(j.score_a, j.score_b) for j in out] == [(4, 1), (1, 4), (2, 3), (6, 6)]
    assert out.failures == []
    strict = RewardModelJudge(lambda response: len(response))  # a plain callable works too
    assert [j.winner for j in strict.compare(["p"], ["aa"], ["aaa"])] == ["b"]
    assert load_judge("vader").compare(["p"], ["I love it, great!"], ["Terrible, awful."])[0].winner == "a"


def test_reward_model_judge_validates():
    with pytest.raises(ValueError, match="tolerance"):
        RewardModelJudge(lambda r: 0.0, tolerance=-1)
    with pytest.raises(ValueError, match="same length"):
        RewardModelJudge(lambda r: 0.0).compare(["p"], ["a", "b"], ["c"])


def test_llm_judge_validates(monkeypatch):
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        LLMJudge()
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge(base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="answer_2"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", template="{question} {answer_1}")
    with pytest.raises(ValueError, match="concurrency"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", concurrency=0)
    with pytest.raises(ValueError, match="api_error"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", api_error="ignore")
    with pytest.raises(ValueError, match="Unknown judge protocol 'mtbench'"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", protocol="mtbench")
    with pytest.raises(ValueError, match="temperature"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", temperature=-1)
    monkeypatch.setenv("STACKSHAPE_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("STACKSHAPE_JUDGE_MODEL", "my-judge")
    judge = LLMJudge()
    assert (judge.base_url, judge.model) == ("http://127.0.0.1:9/v1", "my-judge")


# ----------------------------------------------------------------------------------------------- fake endpoint


class _Endpoint:
    """A stdlib OpenAI-compatible server on loopback whose behaviour is chosen by a tag in the question.

    Tags: ``OK`` (replies "9 2" + text), ``CHAT`` (replies prose: a parse failure), ``E500`` (HTTP 500),
    ``JUNK`` (200 with a body that is not JSON), ``NOCHOICES`` (JSON without choices), ``SLOW`` (sleeps
    past the client timeout), ``FLAKY`` (500 twice, then OK), ``E404`` (not retried), ``E429`` (with
    Retry-After), ``REDIRECT`` (307 to ``redirect_to``). Every request's body and headers are recorded.
    """

    def __init__(self):
        self.requests = []
        self.counts = {}
        self.lock = threading.Lock()
        self.healthy = False  # when True every tag answers like OK
        self.redirect_to = None
        self.in_flight = self.max_in_flight = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with endpoint.lock:
                    endpoint.requests.append({"body": None, "headers": dict(self.headers), "tag": "GET"})
                self._send(404, b"{}")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"]
                tag = question.split("[Question]\n", 1)[1].split()[0]
                with endpoint.lock:
                    endpoint.requests.append({"body": body, "headers": dict(self.headers), "tag": tag})
                    endpoint.counts[tag] = endpoint.counts.get(tag, 0) + 1
                    count = endpoint.counts[tag]
                if endpoint.healthy:
                    tag = "OK"
                if tag == "REDIRECT":
                    return self._send(307, b"", {"Location": endpoint.redirect_to + "/chat/completions"})
                if tag == "E500" or (tag == "FLAKY" and count <= 2):
                    return self._send(500, b'{"error": "boom"}')
                if tag == "E429":
                    return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0.2"})
                if tag == "E404":
                    return self._send(404, b'{"error": "no such model"}')
                if tag == "JUNK":
                    return self._send(200, b"<html>not json")
                if tag == "NOCHOICES":
                    return self._send(200, b'{"object": "chat.completion"}')
                if tag == "SLOW":
                    time.sleep(3.0)
                if tag == "WAIT":  # hold the request a moment to see how many arrive at once
                    with endpoint.lock:
                        endpoint.in_flight += 1
                        endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                    time.sleep(0.3)
                    with endpoint.lock:
                        endpoint.in_flight -= 1
                content = "I like both answers." if tag == "CHAT" else "9 2\nAssistant 1 is better."
                reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code, data, headers=None):
                try:
                    self.send_response(code)
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def authorizations(self):
        return [r["headers"].get("authorization", r["headers"].get("Authorization")) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint():
    server = _Endpoint()
    yield server
    server.close()


@pytest.fixture
def second_endpoint():
    server = _Endpoint()
    yield server
    server.close()


def _fast_judge(url, **kwargs):
    defaults = dict(base_url=url, model="fake", max_retries=2, backoff=0.01, max_backoff=0.05, timeout=5.0)
    defaults["concurrency"] = 3
    defaults.update(kwargs)
    return LLMJudge(**defaults)


def test_llm_judge_request_protocol_and_order_swap(endpoint):
    prompts = [f"OK question {i}" for i in range(12)]
    cands, bases = [f"cand {i}" for i in range(12)], [f"base {i}" for i in range(12)]
    judge = _fast_judge(endpoint.url, seed=3, max_tokens=17, api_key="sk-local")
    out = judge.compare(prompts, cands, bases)
    swaps = [judge.is_swapped(p, a, b) for p, a, b in zip(prompts, cands, bases)]
    assert 0 < sum(swaps) < len(swaps)  # both orders occur
    for j, swapped in zip(out, swaps):
        # The server always prefers Assistant 1: that is b exactly when the order was swapped.
        assert j.ok and j.parsed and j.swapped == swapped
        assert j.winner == ("b" if swapped else "a")
        assert (j.score_a, j.score_b) == ((2.0, 9.0) if swapped else (9.0, 2.0))
    by_question = {r["body"]["messages"][-1]["content"].split("\n")[1]: r for r in endpoint.requests}
    assert len(by_question) == 12
    for i, swapped in enumerate(swaps):
        request = by_question[f"OK question {i}"]
        system, user = (m["content"] for m in request["body"]["messages"])
        assert system == PROTOCOLS["paper"].system_prompt
        first = user.index("Assistant 1's answer begins]\n") + len("Assistant 1's answer begins]\n")
        assert user[first:].startswith(f"base {i}" if swapped else f"cand {i}")
        body = request["body"]
        assert (body["temperature"], body["max_tokens"], body["seed"], body["model"]) == (0, 17, 3, "fake")
        assert request["headers"]["authorization"] == "Bearer sk-local"
    again = _fast_judge(endpoint.url, seed=3)
    assert [again.is_swapped(p, a, b) for p, a, b in zip(prompts, cands, bases)] == swaps  # seeded
    other = _fast_judge(endpoint.url, seed=4)
    assert [other.is_swapped(p, a, b) for p, a, b in zip(prompts, cands, bases)] != swaps


def test_llm_judge_paper_tally_parse_failure_and_api_error_are_ties(endpoint, tmp_path):
    cache = tmp_path / "judge.jsonl"
    tags = ["OK", "CHAT", "E500", "JUNK", "NOCHOICES", "FLAKY", "E404"]
    prompts = [f"{t} question" for t in tags]
    answers_a = [f"a{i}" for i in range(len(tags))]
    answers_b = [f"b{i}" for i in range(len(tags))]
    judge = _fast_judge(endpoint.url, cache_file=cache)  # api_error="tie": the paper's tally
    out = judge.compare(prompts, answers_a, answers_b)
    by_tag = dict(zip(tags, out))
    assert by_tag["OK"].ok and by_tag["OK"].winner in ("a", "b")
    # A reply that does not parse is a finished judgement: a tie without scores.
    assert by_tag["CHAT"].ok and not by_tag["CHAT"].parsed
    assert (by_tag["CHAT"].winner, by_tag["CHAT"].score_a, by_tag["CHAT"].raw) == (
        "tie",
        None,
        "I like both answers.",
    )
    assert by_tag["FLAKY"].ok and endpoint.counts["FLAKY"] == 3  # two 500s, then success
    for tag in ("E500", "JUNK", "NOCHOICES"):
        assert "gave up after 3 attempts" in by_tag[tag].error
        assert endpoint.counts[tag] == 3  # 1 + max_retries, bounded
    assert "HTTP 404" in by_tag["E404"].error and endpoint.counts["E404"] == 1  # not retried
    assert "malformed" in by_tag["JUNK"].error
    # API errors: ties in the tally, still listed and counted.
    assert sorted(i for i, _ in out.failures) == [2, 3, 4, 6]
    assert all(out[i].winner == "tie" and out[i].score_a is None for i in (2, 3, 4, 6))
    summary = win_tie_summary(out.winners)
    assert (summary["total"], summary["failed"], summary["ties"]) == (7, 0, 5)  # CHAT + 4 errors
    assert out.parse_failures == 1

    # Every finished judgement is on disk, the failed ones are not.
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(lines) == 3 and all(line["judgement"]["error"] is None for line in lines)

    # Resume once the endpoint recovers: only the failed comparisons are requested again.
    endpoint.healthy = True
    before = len(endpoint.requests)
    resumed = _fast_judge(endpoint.url, cache_file=cache).compare(prompts, answers_a, answers_b)
    assert len(endpoint.requests) - before == 4
    assert resumed.failures == []
    for tag in ("OK", "CHAT", "FLAKY"):
        assert resumed[tags.index(tag)] == by_tag[tag]  # cached, unchanged
    assert len(cache.read_text().splitlines()) == 7
    before = len(endpoint.requests)
    assert _fast_judge(endpoint.url, cache_file=cache).compare(prompts, answers_a, answers_b) == resumed
    assert len(endpoint.requests) == before  # all cached: nothing requested


def test_llm_judge_drop_policy_and_win_tie_scores_report_errors(endpoint):
    prompts, a, b = ["OK one", "E500 two", "CHAT three"], ["x", "y", "z"], ["u", "v", "w"]
    tie = win_tie_scores(prompts, a, b, _fast_judge(endpoint.url, max_retries=0))
    assert (tie["total"], tie["ties"], tie["api_errors"], tie["parse_failures"]) == (3, 2, 1, 1)
    dropped_judge = _fast_judge(endpoint.url, max_retries=0, api_error="drop")
    dropped = win_tie_scores(prompts, a, b, dropped_judge)
    assert (dropped["total"], dropped["ties"], dropped["failed"], dropped["api_errors"]) == (2, 1, 1, 1)
    assert dropped["failed_indices"] == [1] and dropped["judgements"][1]["winner"] is None
    assert tie["win_tie"] == pytest.approx(1.0) and dropped["win_tie"] == pytest.approx(1.0)


def test_llm_judge_timeout_and_dead_port(endpoint, tmp_path):
    start = time.monotonic()
    slow = _fast_judge(endpoint.url, timeout=1.0, max_retries=1).compare(
        ["SLOW q", "OK q"], ["a", "a"], ["b", "b"]
    )
    assert slow[0].error and "timed out" in slow[0].error and endpoint.counts["SLOW"] == 2
    assert slow[1].ok  # the finished comparison is kept

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead_url = f"http://127.0.0.1:{dead_port}/v1"
    dead = _fast_judge(dead_url, max_retries=2, on_error="raise", cache_file=tmp_path / "c.jsonl")
    with pytest.raises(JudgeError, match="2 of 2 judge comparisons failed, counted as ties") as info:
        dead.compare(["p1", "p2"], ["a", "a"], ["b", "b"])
    assert all(
        "gave up after 3 attempts" in j.error and "ConnectError" in j.error for j in info.value.judgements
    )
    assert not (tmp_path / "c.jsonl").exists()
    assert time.monotonic() - start < 60  # bounded retries; a hang would blow far past this


def test_llm_judge_retry_after_and_time_budget(endpoint):
    # Retry-After (0.2 s) overrides the tiny backoff (0.01 s), and max_time stops the retries early.
    judge = _fast_judge(endpoint.url, max_retries=50, max_backoff=1.0, max_time=1.0)
    (out,) = judge.compare(["E429 q"], ["a"], ["b"])
    assert out.error and "max_time=1s reached" in out.error and "HTTP 429" in out.error
    assert 2 <= endpoint.counts["E429"] <= 6  # about 1.0 / 0.2 attempts, far from 51


# ----------------------------------------------------------------------------------------------- cache


def test_cache_key_covers_every_setting_that_changes_a_verdict():
    url = "http://127.0.0.1:9/v1"
    base = LLMJudge(base_url=url, model="m", max_tokens=256, seed=0)
    key = base.cache_key("p", "a", "b")
    changed = {
        "endpoint": LLMJudge(base_url="http://127.0.0.1:10/v1", model="m", max_tokens=256, seed=0),
        "model": LLMJudge(base_url=url, model="m2", max_tokens=256, seed=0),
        "max_tokens": LLMJudge(base_url=url, model="m", max_tokens=255, seed=0),
        "seed": LLMJudge(base_url=url, model="m", max_tokens=256, seed=1),
        "temperature": LLMJudge(base_url=url, model="m", max_tokens=256, seed=0, temperature=0.5),
        "instructions": LLMJudge(base_url=url, model="m", max_tokens=256, seed=0, system_prompt="Be brief."),
    }
    for name, judge in changed.items():
        assert judge.cache_key("p", "a", "b") != key, name
    assert LLMJudge(base_url=url + "/", model="m", max_tokens=256, seed=0).cache_key("p", "a", "b") == key
    assert base.cache_key("p", "b", "a") != key and base.cache_key("p2", "a", "b") != key
    # The order swap depends on the seed and the comparison only, not on the endpoint.
    assert changed["endpoint"].is_swapped("p", "a", "b") == base.is_swapped("p", "a", "b")


def test_cache_is_not_reused_across_settings_and_survives_a_torn_line(endpoint, tmp_path):
    cache = tmp_path / "judge.jsonl"
    args = (["OK q1", "OK q2"], ["a1", "a2"], ["b1", "b2"])
    _fast_judge(endpoint.url, cache_file=cache, max_tokens=64).compare(*args)
    assert len(endpoint.requests) == 2
    _fast_judge(endpoint.url, cache_file=cache, max_tokens=65).compare(*args)  # another max_tokens: ask again
    assert len(endpoint.requests) == 4
    _fast_judge(endpoint.url, cache_file=cache, max_tokens=64, seed=1).compare(*args)  # another seed: again
    assert len(endpoint.requests) == 6
    with open(cache, "ab") as handle:
        handle.write(b'{"key": "torn')  # a crash in the middle of an append
    _fast_judge(endpoint.url, cache_file=cache, max_tokens=64).compare(*args)  # cached, torn line ignored
    assert len(endpoint.requests) == 6
    _fast_judge(endpoint.url, cache_file=cache, max_tokens=64).compare(["OK q3"], ["a3"], ["b3"])
    lines = cache.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line)["key"] for line in lines[:-1])  # repaired, not merged
    assert len(lines) - 1 == 7
    cache.write_text('{"not": "a judgement"}\n')
    with pytest.raises(ValueError, match="not a judge cache"):
        _fast_judge(endpoint.url, cache_file=cache).compare(*args)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_limit(endpoint, concurrency):
    out = _fast_judge(endpoint.url, concurrency=concurrency).compare(
        [f"WAIT {i}" for i in range(7)], ["a"] * 7, ["b"] * 7
    )
    assert out.failures == [] and endpoint.counts["WAIT"] == 7
    assert endpoint.max_in_flight <= concurrency  # the limit holds...
    assert endpoint.max_in_flight > 1 or concurrency == 1  # ...and requests do run side by side


def test_duplicate_comparisons_are_requested_once(endpoint):
    out = _fast_judge(endpoint.url).compare(["OK same"] * 3, ["a"] * 3, ["b"] * 3)
    assert endpoint.counts["OK"] == 1 and len(out) == 3 and out[0] == out[1] == out[2]


# ----------------------------------------------------------------------------------------------- key security


def test_api_key_never_follows_a_redirect(endpoint, second_endpoint):
    """The first server redirects (307) to the second: the request fails at once, with a clear error, and
    the second server never sees the key (nor any request)."""
    endpoint.redirect_to = second_endpoint.url
    judge = _fast_judge(endpoint.url, api_key="sk-secret", max_retries=3)
    (out,) = judge.compare(["REDIRECT q"], ["a"], ["b"])
    assert out.error and "redirect" in out.error.lower() and second_endpoint.url in out.error
    assert out.winner == "tie"  # an API error, counted as a tie by the paper's tally
    assert endpoint.counts["REDIRECT"] == 1  # not retried
    assert endpoint.authorizations() == ["Bearer sk-secret"]  # the key went where it was meant to go...
    assert second_endpoint.requests == []  # ...and nowhere else


def test_openai_key_is_only_sent_to_openai(endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")  # InferenceClient would send this by default
    _fast_judge(endpoint.url).compare(["OK q"], ["a"], ["b"])
    assert endpoint.authorizations() == [None]  # neither the OpenAI key nor the HF token
    assert resolve_api_key("https://api.openai.com/v1") == "sk-openai"
    assert resolve_api_key("https://my-judge.example.com/v1") is None

    monkeypatch.setenv("STACKSHAPE_JUDGE_API_KEY", "sk-judge")
    _fast_judge(endpoint.url).compare(["OK q2"], ["a"], ["b"])
    _fast_judge(endpoint.url, api_key="sk-explicit").compare(["OK q3"], ["a"], ["b"])
    _fast_judge(endpoint.url, api_key="").compare(["OK q4"], ["a"], ["b"])  # "" = send no key
    assert endpoint.authorizations()[1:] == ["Bearer sk-judge", "Bearer sk-explicit", None]


@pytest.mark.parametrize(
    "url", ["http://judge.example.com/v1", "http://10.0.0.5:8000/v1", "http://[2001:db8::1]/v1"]
)
def test_no_key_over_plain_http_to_a_remote_host(url, monkeypatch):
    with pytest.raises(ValueError, match="clear text"):
        LLMJudge(base_url=url, api_key="sk-x")
    monkeypatch.setenv("STACKSHAPE_JUDGE_API_KEY", "sk-env")
    with pytest.raises(ValueError, match="clear text"):
        LLMJudge(base_url=url)
    monkeypatch.delenv("STACKSHAPE_JUDGE_API_KEY")
    LLMJudge(base_url=url)  # no key: nothing to leak
    LLMJudge(base_url=url.replace("http://", "https://"), api_key="sk-x")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://127.0.0.5/v1", "http://[::1]:8000/v1"],
)
def test_key_over_plain_http_is_fine_on_loopback(url):
    assert LLMJudge(base_url=url, api_key="sk-x").client._api_key == "sk-x"


def test_client_refuses_a_hub_that_bypasses_its_transport(monkeypatch):
    from huggingface_hub import InferenceClient

    def chat_completion(self, messages, **kwargs):  # a future client that posts some other way
        return get_session().post(self.model, json=messages)  # noqa: F821

    monkeypatch.setattr(InferenceClient, "chat_completion", chat_completion)
    with pytest.raises(RuntimeError, match="key rules cannot be enforced"):
        LLMJudge(base_url="http://127.0.0.1:9/v1")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_evaluate_with_llm_judge_reports_failures(endpoint, tmp_path, monkeypatch):
    from hf_stackshape.cli import main

    monkeypatch.setenv("STACKSHAPE_JUDGE_BASE_URL", endpoint.url)
    rows = [
        {"prompt": "OK first", "response": "cand 1", "method": "srs"},
        {"prompt": "OK first", "response": "base 1", "method": "args"},
        {"prompt": "E500 second", "response": "cand 2", "method": "srs"},
        {"prompt": "E500 second", "response": "base 2", "method": "args"},
    ]
    source = tmp_path / "gen.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [
        "evaluate",
        "--generations",
        str(source),
        "--judge",
        "llm",
        "--judge_model",
        "fake",
        "--baseline_method",
        "args",
    ]
    assert main(argv + ["--metrics", "win_tie", "--judge_max_retries", "1"]) == 0
    win_tie = json.loads((tmp_path / "gen.metrics.json").read_text())["methods"]["srs"]["win_tie"]
    assert (win_tie["total"], win_tie["ties"], win_tie["api_errors"]) == (2, 1, 1)  # the paper's tally
    assert endpoint.counts == {"OK": 1, "E500": 2}
    samples = [json.loads(line) for line in (tmp_path / "gen.per_sample.jsonl").read_text().splitlines()]
    assert samples[0]["judgement"]["winner"] in ("a", "b") and "HTTP 500" in samples[2]["judgement"]["error"]
    assert len((tmp_path / "gen.judge_cache.jsonl").read_text().splitlines()) == 1
    assert main(argv + ["--metrics", "win_tie", "--judge_max_retries", "0", "--judge_api_error", "drop"]) == 0
    win_tie = json.loads((tmp_path / "gen.metrics.json").read_text())["methods"]["srs"]["win_tie"]
    assert (win_tie["total"], win_tie["failed"], win_tie["failed_indices"]) == (
        1,
        1,
        [2],
    )  # row 2 of the file
