"""Judges: the score parser, the reward-model judge, and the LLM judge against real HTTP servers on loopback
(a stdlib server that fails on purpose, and ``transformers serve`` with the bundled SmolLM2)."""

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_stackshape.evaluation.judges import (
    Judgement,
    JudgeError,
    LLMJudge,
    RewardModelJudge,
    load_judge,
    parse_scores,
)
from hf_stackshape.evaluation.text_stats import win_tie_summary
from hf_stackshape.rewards import CallableReward

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
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("STACKSHAPE_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("STACKSHAPE_JUDGE_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        LLMJudge()
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge(base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="answer_2"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", template="{question} {answer_1}")
    with pytest.raises(ValueError, match="concurrency"):
        LLMJudge(base_url="http://127.0.0.1:1/v1", concurrency=0)
    monkeypatch.setenv("STACKSHAPE_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("STACKSHAPE_JUDGE_MODEL", "my-judge")
    judge = LLMJudge()
    assert (judge.base_url, judge.model) == ("http://127.0.0.1:9/v1", "my-judge")


# ----------------------------------------------------------------------------------------------- fake endpoint


class _Endpoint:
    """A stdlib OpenAI-compatible server on loopback whose behaviour is chosen by a tag in the question.

    Tags: ``OK`` (replies "9 2" + text), ``CHAT`` (replies prose: a parse failure), ``E500`` (HTTP 500),
    ``JUNK`` (200 with a body that is not JSON), ``NOCHOICES`` (JSON without choices), ``SLOW`` (sleeps
    past the client timeout), ``FLAKY`` (500 twice, then OK), ``E404`` (not retried).
    """

    def __init__(self):
        self.requests = []
        self.counts = {}
        self.lock = threading.Lock()
        self.healthy = False  # when True every tag answers like OK
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

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
                    time.sleep(1.5)
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
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint():
    server = _Endpoint()
    yield server
    server.close()


def _fast_judge(url, **kwargs):
    defaults = dict(base_url=url, model="fake", max_retries=2, backoff=0.01, max_backoff=0.05, timeout=5.0)
    defaults["concurrency"] = 3
    defaults.update(kwargs)
    return LLMJudge(**defaults)


def test_llm_judge_request_protocol_and_order_swap(endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    prompts = [f"OK question {i}" for i in range(12)]
    judge = _fast_judge(endpoint.url, seed=3, max_tokens=17)
    out = judge.compare(prompts, [f"cand {i}" for i in range(12)], [f"base {i}" for i in range(12)])
    swaps = [judge.is_swapped(judge.cache_key(p, f"cand {i}", f"base {i}")) for i, p in enumerate(prompts)]
    assert 0 < sum(swaps) < len(swaps)  # both orders occur
    for j, swapped in zip(out, swaps):
        # The server always prefers Assistant 1: that is b exactly when the order was swapped.
        assert j.ok and j.parsed and j.swapped == swapped
        assert j.winner == ("b" if swapped else "a")
        assert (j.score_a, j.score_b) == ((2.0, 9.0) if swapped else (9.0, 2.0))
    by_question = {r["body"]["messages"][-1]["content"].split("\n")[1]: r for r in endpoint.requests}
    for i, swapped in enumerate(swaps):
        request = by_question[f"OK question {i}"]
        user = request["body"]["messages"][-1]["content"]
        first = user.index("Assistant 1's Answer]\n") + len("Assistant 1's Answer]\n")
        assert user[first:].startswith(f"base {i}" if swapped else f"cand {i}")
        assert request["body"]["temperature"] == 0 and request["body"]["max_tokens"] == 17
        assert request["body"]["model"] == "fake"
        assert request["headers"]["Authorization"] == "Bearer sk-test"
    again = _fast_judge(endpoint.url, seed=3)
    keys = [judge.cache_key(p, f"cand {i}", f"base {i}") for i, p in enumerate(prompts)]
    assert [again.is_swapped(k) for k in keys] == swaps  # seeded: the same choices on a rerun
    other = _fast_judge(endpoint.url, seed=4)
    assert [other.is_swapped(k) for k in keys] != swaps


def test_llm_judge_failures_are_reported_never_lost_and_resumed(endpoint, tmp_path):
    cache = tmp_path / "judge.jsonl"
    tags = ["OK", "CHAT", "E500", "JUNK", "NOCHOICES", "FLAKY", "E404"]
    prompts = [f"{t} question" for t in tags]
    answers_a = [f"a{i}" for i in range(len(tags))]
    answers_b = [f"b{i}" for i in range(len(tags))]
    judge = _fast_judge(endpoint.url, cache_file=cache)
    out = judge.compare(prompts, answers_a, answers_b)
    by_tag = dict(zip(tags, out))
    assert by_tag["OK"].ok and by_tag["OK"].winner in ("a", "b")
    # A reply that does not parse is a finished judgement: a tie without scores.
    assert by_tag["CHAT"].ok and not by_tag["CHAT"].parsed
    assert (by_tag["CHAT"].winner, by_tag["CHAT"].score_a, by_tag["CHAT"].raw) == ("tie", None, "I like both answers.")
    assert by_tag["FLAKY"].ok and endpoint.counts["FLAKY"] == 3  # two 500s, then success
    for tag in ("E500", "JUNK", "NOCHOICES"):
        assert by_tag[tag].winner is None and "gave up after 3 attempts" in by_tag[tag].error
        assert endpoint.counts[tag] == 3  # 1 + max_retries, bounded
    assert "HTTP 404" in by_tag["E404"].error and endpoint.counts["E404"] == 1  # not retried
    assert "malformed" in by_tag["JUNK"].error
    assert sorted(i for i, _ in out.failures) == [2, 3, 4, 6]
    summary = win_tie_summary(out.winners)
    assert (summary["total"], summary["failed"], summary["failed_indices"]) == (3, 4, [2, 3, 4, 6])

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


def test_llm_judge_timeout_and_dead_port(endpoint, tmp_path):
    start = time.monotonic()
    slow = _fast_judge(endpoint.url, timeout=0.3, max_retries=1).compare(["SLOW q", "OK q"], ["a", "a"], ["b", "b"])
    assert slow[0].winner is None and "timed out" in slow[0].error and endpoint.counts["SLOW"] == 2
    assert slow[1].ok  # the finished comparison is kept

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead_url = f"http://127.0.0.1:{dead_port}/v1"
    dead = _fast_judge(dead_url, max_retries=2, on_error="raise", cache_file=tmp_path / "c.jsonl")
    with pytest.raises(JudgeError, match="2 of 2 judge comparisons failed") as info:
        dead.compare(["p1", "p2"], ["a", "a"], ["b", "b"])
    assert all("gave up after 3 attempts" in j.error and "Refused" in j.error for j in info.value.judgements)
    assert not (tmp_path / "c.jsonl").exists()
    assert time.monotonic() - start < 60  # bounded retries; a hang would blow far past this


def test_llm_judge_retry_after_and_time_budget(endpoint):
    # Retry-After (0.2 s) overrides the tiny backoff (0.01 s), and max_time stops the retries early.
    judge = _fast_judge(endpoint.url, max_retries=50, max_backoff=1.0, max_time=0.5)
    (out,) = judge.compare(["E429 q"], ["a"], ["b"])
    assert out.winner is None and "max_time=0.5s reached" in out.error and "HTTP 429" in out.error
    assert 2 <= endpoint.counts["E429"] <= 4  # about 0.5 / 0.2 attempts, far from 51
    (out,) = _fast_judge(endpoint.url, max_retries=50, max_time=0.0).compare(["E500 q"], ["a"], ["b"])
    assert "gave up after 1 attempts" in out.error and endpoint.counts["E500"] == 1


def test_llm_judge_cache_survives_a_torn_line(endpoint, tmp_path):
    cache = tmp_path / "judge.jsonl"
    judge = _fast_judge(endpoint.url, cache_file=cache)
    judge.compare(["OK one"], ["a"], ["b"])
    with open(cache, "a") as handle:
        handle.write('{"key": "abc", "judgement": {"win')  # a write cut short by a crash
    assert len(judge.load_cache()) == 1
    judge.compare(["OK two"], ["a"], ["b"])
    cached = judge.load_cache()
    assert len(cached) == 2 and all(isinstance(j, Judgement) and j.ok for j in cached.values())


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
    argv = ["evaluate", "--generations", str(source), "--judge", "llm", "--judge_model", "fake", "--baseline_method", "args"]
    assert main(argv + ["--metrics", "win_tie", "--judge_max_retries", "1"]) == 0
    win_tie = json.loads((tmp_path / "gen.metrics.json").read_text())["methods"]["srs"]["win_tie"]
    assert (win_tie["total"], win_tie["failed"], win_tie["failed_indices"]) == (1, 1, [2])  # row 2 of the file
    assert endpoint.counts == {"OK": 1, "E500": 2}
    samples = [json.loads(line) for line in (tmp_path / "gen.per_sample.jsonl").read_text().splitlines()]
    assert samples[0]["judgement"]["winner"] in ("a", "b") and "HTTP 500" in samples[2]["judgement"]["error"]
    assert len((tmp_path / "gen.judge_cache.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------------------------------------------- live server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory):
    """``transformers serve`` on loopback serving the bundled SmolLM2 folder; killed at the end."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from hf_stackshape.defaults import smollm2_path

    folder = str(smollm2_path())
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    launcher = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; sys.exit(main())"
    cmd = [sys.executable, "-c", launcher, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", folder]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after 120 s:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.25)
        yield {"url": f"http://127.0.0.1:{port}/v1", "model": folder}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # uvicorn waits for a generation in flight; do not wait for it
            proc.wait(timeout=10)


@pytest.mark.slow
def test_llm_judge_against_transformers_serve(smol_server, tmp_path):
    cache = tmp_path / "judge.jsonl"
    judge = LLMJudge(
        base_url=smol_server["url"],
        model=smol_server["model"],
        max_tokens=8,
        timeout=90,
        max_retries=1,
        concurrency=1,
        cache_file=cache,
    )
    prompts = ["What is the capital of France?", "Say hello."]
    out = judge.compare(prompts, ["Paris.", "Hello!"], ["London.", "No."])
    assert out.failures == [], out.failures
    for j in out:
        assert isinstance(j.raw, str) and j.raw.strip()
        # Whatever SmolLM2 wrote, the parser's verdict decides: parsed -> scores and their winner,
        # not parsed (the usual case for a 135M model) -> a tie without scores.
        scores = parse_scores(j.raw)
        assert j.parsed == (scores is not None)
        if scores is None:
            assert (j.winner, j.score_a, j.score_b) == ("tie", None, None)
        else:
            first, second = scores
            score_a, score_b = (second, first) if j.swapped else (first, second)
            assert (j.score_a, j.score_b) == (score_a, score_b)
            assert j.winner == ("tie" if score_a == score_b else "a" if score_a > score_b else "b")
    assert len(cache.read_text().splitlines()) == 2
    summary = win_tie_summary(out.winners)
    assert summary["total"] == 2 and summary["failed"] == 0
    assert math.isclose(summary["win_tie"], (summary["wins"] + summary["ties"]) / 2)
