"""The LLM judge live: ``transformers serve`` (a real OpenAI-compatible server) serving the bundled SmolLM2
on loopback, offline, reached through huggingface_hub's InferenceClient. About 30 s on 2 CPU cores (the
server's start is most of it)."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hf_stackshape.evaluation.judges import LLMJudge, parse_scores
from hf_stackshape.evaluation.scores import win_tie_scores

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory):
    """``transformers serve`` on loopback serving the bundled SmolLM2 folder; stopped at the end."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from hf_stackshape.assets.defaults import smollm2_path

    folder = str(smollm2_path())
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    launcher = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; sys.exit(main())"
    cmd = [
        sys.executable,
        "-c",
        launcher,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        folder,
    ]
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
        yield {"url": f"http://127.0.0.1:{port}/v1", "model": folder, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # uvicorn waits for a generation in flight; do not wait for it
            proc.wait(timeout=10)


def _posts(log_path) -> int:
    return len(re.findall(r"POST /v1/chat/completions HTTP/1.1\" 200", log_path.read_text()))


def test_llm_judge_round_trip_against_transformers_serve(smol_server, tmp_path, monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # the Hub is off; a judge on loopback is not the Hub
    monkeypatch.setenv("HF_TOKEN", "hf_never_sent")
    cache = tmp_path / "judge.jsonl"

    def make_judge():
        return LLMJudge(
            base_url=smol_server["url"],
            model=smol_server["model"],
            api_key="sk-local",  # a key over plain http is fine on loopback
            max_tokens=8,
            timeout=90,
            max_retries=1,
            concurrency=1,
            seed=0,
            cache_file=cache,
        )

    prompts = ["What is the capital of France?", "Human: hi\n\nAssistant: Hello!\n\nHuman: Say hello again."]
    candidates, baselines = ["Paris.", "Hello again!"], ["London.", "No."]
    before = _posts(smol_server["log"])
    result = win_tie_scores(prompts, candidates, baselines, make_judge())
    assert _posts(smol_server["log"]) - before == 2
    assert result["api_errors"] == 0 and result["total"] == 2
    judge = make_judge()
    for j, p, a, b in zip(result["judgements"], prompts, candidates, baselines):
        assert j["error"] is None and isinstance(j["raw"], str) and j["raw"].strip()
        assert j["swapped"] == judge.is_swapped(p, a, b)
        # Whatever SmolLM2 wrote, the parser decides: parsed -> its scores and their winner, not parsed
        # (the usual case for a 135M model) -> a tie without scores, which is the protocol.
        scores = parse_scores(j["raw"])
        assert j["parsed"] == (scores is not None)
        if scores is None:
            assert (j["winner"], j["score_a"], j["score_b"]) == ("tie", None, None)
        else:
            score_a, score_b = (scores[1], scores[0]) if j["swapped"] else scores
            assert (j["score_a"], j["score_b"]) == (score_a, score_b)
            assert j["winner"] == ("tie" if score_a == score_b else "a" if score_a > score_b else "b")
    assert result["win_tie"] == pytest.approx((result["wins"] + result["ties"]) / 2)
    assert result["parse_failures"] == sum(not j["parsed"] for j in result["judgements"])

    # Resumed from the cache: the same judgements, no new request to the server.
    before = _posts(smol_server["log"])
    again = make_judge().compare(prompts, candidates, baselines)
    assert _posts(smol_server["log"]) == before
    assert [j.to_dict() for j in again] == result["judgements"]
