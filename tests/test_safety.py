"""Safety holes of issue 21, each reproduced as an adversarial user would: a config file that grants code
execution, ``--overwrite`` deleting a user's files, a half-written checkpoint, hanging or huge judge replies,
runs sharing a folder by another name, inputs read wrong, and processor state that leaks between calls."""

import json
import os
import sys

import pytest

from hf_stackshape import cli
from hf_stackshape.utils.runs import RunLockedError, RunMismatchError, open_run

FP = {"weight": 0.5}


# ------------------------------------------------------------------------- 1. a config file cannot run code


EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")


def score(response):
    return float(len(response))
"""


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_file_cannot_grant_trust_remote_code(tmp_path, monkeypatch, capsys, suffix):
    marker = tmp_path / "evil-ran"
    (tmp_path / "evilmod_issue21.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evilmod_issue21", None)
    rows = tmp_path / "g.jsonl"
    rows.write_text(json.dumps({"prompt": "p", "response": "abc"}) + "\n")
    settings = {"reward": "evilmod_issue21:score", "trust_remote_code": True, "metrics": "reward"}
    config = tmp_path / f"c{suffix}"
    if suffix == ".json":
        config.write_text(json.dumps(settings))
    else:
        config.write_text("reward: evilmod_issue21:score\ntrust_remote_code: true\nmetrics: reward\n")
    argv = ["evaluate", "--config", str(config), "--generations", str(rows), "--output_dir", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "trust_remote_code" in err and "only the command line" in err and "pass --trust_remote_code" in err
    assert not marker.exists() and "evilmod_issue21" not in sys.modules
    # `trust_remote_code: false` in a file is refused too (the file has no say either way).
    config.write_text(config.read_text().replace("true", "false"))
    assert cli.main(argv) == 2 and "only the command line" in capsys.readouterr().err
    # The command line flag (the user's own opt-in) still works with the rest of the file.
    settings.pop("trust_remote_code")
    config.write_text(json.dumps(settings) if suffix == ".json" else "reward: evilmod_issue21:score\nmetrics: reward\n")
    assert cli.main(["evaluate", "--config", str(config), "--generations", str(rows), "--output_dir",
                     str(tmp_path / "out"), "--trust_remote_code"]) == 0, capsys.readouterr().err
    assert marker.read_text() == "ran"
    sys.modules.pop("evilmod_issue21", None)


# --------------------------------------------------------- 2. --overwrite removes only what a run wrote


def test_overwrite_of_a_file_run_keeps_the_users_siblings(tmp_path):
    prompts = tmp_path / "mytest.txt"
    prompts.write_text("Hello\n")
    (tmp_path / "mytest.notes").write_text("my notes")
    out = tmp_path / "mytest"
    with open_run(out, FP, single_file=True, overwrite=True) as run:
        assert not run.resumed
        out.write_text("{}\n")
    with open_run(out, {"weight": 2.0}, single_file=True, overwrite=True):
        assert not out.exists()
    assert prompts.read_text() == "Hello\n" and (tmp_path / "mytest.notes").read_text() == "my notes"
    # A file with that name and no manifest is the user's: refused, named, kept.
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my data\n")
    with pytest.raises(RunMismatchError, match=r"no run manifest.*mine\.jsonl"):
        with open_run(mine, FP, single_file=True, overwrite=True):
            pass
    assert mine.read_text() == "my data\n"


def test_overwrite_refuses_a_folder_without_a_manifest_naming_its_files(tmp_path):
    victim = tmp_path / "victim"
    (victim / "other-run").mkdir(parents=True)
    with open_run(victim / "other-run", FP, kind="calibrate"):
        (victim / "other-run" / "calibration.jsonl").write_text("{}\n")
    (victim / "thesis.tex").write_text("years of work")
    with pytest.raises(RunMismatchError, match=r"victim.*no run manifest.*other-run.*thesis\.tex") as info:
        with open_run(victim, FP, kind="calibrate", overwrite=True):
            pass
    assert "move or delete" in str(info.value)
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert (victim / "other-run" / "calibration.jsonl").is_file()


# ------------------------------------------------------- 5. one folder by two names; paths by spelling


def test_a_symlink_to_a_run_folder_shares_its_lock(tmp_path):
    real = tmp_path / "calib"
    link = tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    with open_run(real, FP, kind="calibrate"):
        with pytest.raises(RunLockedError, match="in use"):
            with open_run(link, FP, kind="calibrate"):
                pass
    with open_run(link, FP, kind="calibrate") as run:  # released: the link resumes the same run
        assert run.resumed


def test_relative_and_absolute_model_paths_are_one_setting(tmp_path, monkeypatch):
    from hf_stackshape.commands.generate import GenerateArguments, row_settings
    from hf_stackshape.pipeline.generation import decoder_settings, parse_method

    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "heads" / "q").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    method = parse_method("srs-args")
    decoder = decoder_settings(method, None)
    spellings = ["models/m", "./models/m", str(tmp_path / "models" / "m"), "models/../models/m/"]
    settings = [row_settings(GenerateArguments(model=s), method, decoder) for s in spellings]
    assert all(s == settings[0] for s in settings) and settings[0]["model"] == os.path.realpath("models/m")
    # A Hub id is kept as given.
    assert row_settings(GenerateArguments(model="org/name"), method, decoder)["model"] == "org/name"


# ------------------------------------------------------------------ 6. config values of the wrong type


@pytest.mark.parametrize(
    "command,text,named",
    [
        ("generate", "weight: [1, 2]\n", ["weight", "[1, 2]", "a number"]),
        ("generate", "max_new_tokens: true\n", ["max_new_tokens", "True", "an integer"]),
        ("sweep", "weights: 0.5\n", ["weights", "0.5", "a list of numbers", "[0.5, 1.0]"]),
        ("sweep", "methods: srs-args\n", ["methods", "'srs-args'", "a list of strings"]),
        ("generate", "do_sample: 'yes'\n", ["do_sample", "'yes'", "true or false"]),
    ],
)
def test_config_values_of_the_wrong_type_are_named(tmp_path, capsys, command, text, named):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert cli.main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Unknown method 's'" not in err
    for piece in named:
        assert piece in err, err


# ------------------------------------------------------- 3. a SIGKILL during a checkpoint save never blocks


KILL_DURING_SAVE = """
import os, signal, sys
from transformers import Trainer

real = Trainer._save_optimizer_and_scheduler


def killed_mid_save(self, output_dir):
    if self.state.global_step == {kill_step}:
        os.kill(os.getpid(), signal.SIGKILL)  # the model files of checkpoint-{kill_step} are written, the rest not
    return real(self, output_dir)


Trainer._save_optimizer_and_scheduler = killed_mid_save
from hf_stackshape.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_sigkill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tmp_path, tiny_lm, tokenizer):
    import subprocess

    from test_qhead import good_bad_dataset

    tiny_lm.save_pretrained(tmp_path / "backbone")
    tokenizer.save_pretrained(tmp_path / "backbone")
    data = tmp_path / "rollouts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in good_bad_dataset(4, 2, seed=0).to_list()))
    head = tmp_path / "head"
    argv = ["train-qhead", "--calibration_dir", str(data), "--backbone", str(tmp_path / "backbone"),
            "--head_hidden_size", "8", "--output_dir", str(head), "--num_train_epochs", "1",
            "--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "1",
            "--validation_split", "0", "--report_to", "none", "--disable_tqdm", "true"]
    script = tmp_path / "killed.py"
    script.write_text(KILL_DURING_SAVE.format(kill_step=2))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (head / "checkpoint-1" / "trainer_state.json").is_file()
    assert (head / "checkpoint-2").is_dir() and not (head / "checkpoint-2" / "trainer_state.json").exists()

    from hf_stackshape.qhead.checkpoints import checkpoint_problem, last_complete_checkpoint

    assert "trainer_state.json" in checkpoint_problem(str(head / "checkpoint-2"))
    assert last_complete_checkpoint(str(head)) == str(head / "checkpoint-1")
    # The rerun resumes from checkpoint-1 (the half-written checkpoint-2 is removed) and finishes.
    assert cli.main(argv) == 0
    state = json.loads((head / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and checkpoint_problem(str(head / "checkpoint-2")) is None
    assert (head / "model.safetensors").is_file() or any(p.suffix == ".safetensors" for p in head.iterdir())


# ------------------------------------------------------------------ 4. judge replies that hang or blow up


class _HostileJudge:
    """A stdlib chat endpoint on loopback: the question's first word picks how it misbehaves.

    ``OK`` replies normally; ``TRICKLE`` sends its body one byte a second; ``HUGE`` streams 20 MiB with no
    length; ``BIGLEN`` announces 400 MB; ``BADGZIP`` says ``Content-Encoding: gzip`` over bytes that are not."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.counts = {}
        self.stop = threading.Event()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                tag = body["messages"][-1]["content"].split("[Question]\n", 1)[1].split()[0]
                judge.counts[tag] = judge.counts.get(tag, 0) + 1
                reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "9 2\nfine"}}]}).encode()
                try:
                    if tag == "OK":
                        self._head(200, {"Content-Length": str(len(reply))})
                        self.wfile.write(reply)
                    elif tag == "TRICKLE":
                        self._head(200, {"Content-Length": str(len(reply))})
                        for byte in reply:
                            if judge.stop.wait(1.0):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                    elif tag == "HUGE":
                        self._head(200, {})
                        block = b"x" * (1 << 20)
                        for _ in range(20):
                            self.wfile.write(block)
                    elif tag == "BIGLEN":
                        self._head(200, {"Content-Length": str(400 * 1000 * 1000)})
                        self.wfile.write(b"{" * 1000)
                    elif tag == "BADGZIP":
                        junk = b"this is not gzip at all" * 10
                        self._head(200, {"Content-Length": str(len(junk)), "Content-Encoding": "gzip"})
                        self.wfile.write(junk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _head(self, code, headers):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    server = _HostileJudge()
    yield server
    server.close()


def _judge(url, **kwargs):
    from hf_stackshape.evaluation import LLMJudge

    settings = dict(base_url=url, model="fake", api_key="", max_retries=0, backoff=0.01, timeout=2.0, concurrency=2)
    settings.update(kwargs)
    return LLMJudge(**settings)


def test_a_trickling_judge_is_cut_off_by_the_timeout(hostile):
    import time

    start = time.monotonic()
    out = _judge(hostile.url, timeout=2.0).compare(["TRICKLE q", "OK q"], ["a", "a"], ["b", "b"])
    elapsed = time.monotonic() - start
    assert out[0].error and "not complete after 2s" in out[0].error, out[0].error
    assert out[1].ok and elapsed < 8, elapsed  # the reply is ~80 bytes: 80 s without a total deadline


def test_a_judge_interrupted_once_judges_again(hostile):
    judge = _judge(hostile.url)
    judge.client.abort()  # what Ctrl-C during compare does
    (out,) = judge.compare(["OK q"], ["a"], ["b"])
    assert out.ok, out.error


@pytest.mark.parametrize("tag", ["HUGE", "BIGLEN"])
def test_a_huge_judge_reply_is_refused_not_read(hostile, tag):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (out,) = _judge(hostile.url, timeout=30.0).compare([f"{tag} q"], ["a"], ["b"])
    assert out.error and "byte limit" in out.error and "limit" in out.error, out.error
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, grown_mib


def test_a_gzip_body_that_does_not_decode_is_an_api_error_in_the_report(hostile, tmp_path, capsys):
    rows = [
        {"prompt": "OK first", "response": "cand 1", "method": "srs"},
        {"prompt": "OK first", "response": "base 1", "method": "args"},
        {"prompt": "BADGZIP second", "response": "cand 2", "method": "srs"},
        {"prompt": "BADGZIP second", "response": "base 2", "method": "args"},
    ]
    source = tmp_path / "gen.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["evaluate", "--generations", str(source), "--judge", "llm", "--judge_model", "fake", "--judge_base_url",
            hostile.url, "--baseline_method", "args", "--metrics", "win_tie", "--judge_max_retries", "0"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    win_tie = json.loads((tmp_path / "gen.metrics.json").read_text())["methods"]["srs"]["win_tie"]
    assert (win_tie["total"], win_tie["api_errors"]) == (2, 1)
    samples = [json.loads(line) for line in (tmp_path / "gen.per_sample.jsonl").read_text().splitlines()]
    assert "does not decode" in samples[2]["judgement"]["error"]


@pytest.mark.slow
def test_ctrl_c_stops_evaluate_waiting_on_a_hung_judge(hostile, tmp_path):
    import signal
    import subprocess
    import time

    source = tmp_path / "gen.jsonl"
    rows = [{"prompt": f"TRICKLE {i}", "response": r, "method": m} for i in range(4) for r, m in (("x", "srs"), ("y", "args"))]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [sys.executable, "-m", "hf_stackshape.cli", "evaluate", "--generations", str(source), "--judge", "llm",
            "--judge_model", "fake", "--judge_base_url", hostile.url, "--baseline_method", "args", "--metrics",
            "win_tie", "--judge_timeout", "300"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not hostile.counts.get("TRICKLE") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert hostile.counts.get("TRICKLE"), "the judge was never asked"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130 and "interrupted" in err, err[-2000:]
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------ 7. processor state


def _generate_with(lm, proc, input_ids, attention_mask, steps):
    import torch
    from transformers import LogitsProcessorList

    with torch.no_grad():
        return lm.generate(input_ids=input_ids, attention_mask=attention_mask, logits_processor=LogitsProcessorList([proc]),
                           max_new_tokens=steps, min_new_tokens=steps, do_sample=False)


def test_a_processor_reused_on_the_last_output_starts_fresh(tokenizer, tiny_lm, reward):
    import torch

    from hf_stackshape import ARGSLogitsProcessor

    def make():
        return ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0, transform="raw")

    inputs = tokenizer(["Tell me a story.", "Hi there"], return_tensors="pt", padding=True)
    proc = make()
    first = _generate_with(tiny_lm, proc, inputs["input_ids"], inputs["attention_mask"], 3)
    mask = torch.cat([inputs["attention_mask"], torch.ones(first.shape[0], 3, dtype=torch.long)], dim=1)
    again = _generate_with(tiny_lm, proc, first, mask, 3)
    fresh = _generate_with(tiny_lm, make(), first, mask, 3)
    # The second call's prompt is the first call's output: the reward model reads it as the prompt, and the
    # responses start after it, exactly as a new processor does.
    assert again.tolist() == fresh.tolist()
    assert proc.prompt_length == first.shape[1] and proc.steps == 3


def test_chat_formatted_inputs_without_raw_prompts_warn(tokenizer, tiny_lm, reward, caplog):
    import logging

    from hf_stackshape import ARGSLogitsProcessor

    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer([chat], return_tensors="pt", padding=True, add_special_tokens=False)
    proc = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=2, weight=1.0)
    logger = logging.getLogger("hf_stackshape.guidance.args")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="hf_stackshape.guidance.args"):
            _generate_with(tiny_lm, proc, inputs["input_ids"], inputs["attention_mask"], 1)
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert "chat" in text and "<|im_start|>" in text and "prompts=" in text and "system" in text, text
    # Plain prompts (a leading BOS at most) do not warn.
    caplog.clear()
    plain = tokenizer(["Hi"], return_tensors="pt")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="hf_stackshape.guidance.args"):
            _generate_with(tiny_lm, ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=2, weight=1.0),
                           plain["input_ids"], plain["attention_mask"], 1)
    finally:
        logger.removeHandler(caplog.handler)
    assert "chat" not in caplog.text


class _RenumberedTokenizer:
    """The same tokenizer with two token ids swapped: same size, other mapping."""

    def __init__(self, tokenizer):
        self._tok = tokenizer

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __len__(self):
        return len(self._tok)

    def get_vocab(self):
        vocab = dict(self._tok.get_vocab())
        a, b = self._tok.convert_ids_to_tokens([100, 200])
        vocab[a], vocab[b] = vocab[b], vocab[a]
        return vocab


def test_a_trained_cd_head_records_its_vocabulary_and_refuses_another(tmp_path, tiny_lm, tokenizer):
    from test_qhead import good_bad_dataset

    from hf_stackshape import CDLogitsProcessor
    from hf_stackshape.utils.checks import vocabulary_digest
    from hf_stackshape.qhead import QHeadModel, QHeadTrainer, QHeadTrainerConfig

    qhead = QHeadModel.from_backbone(tiny_lm, head_type="q", rank=2)
    args = QHeadTrainerConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
                              save_strategy="no", report_to="none", disable_tqdm=True, validation_split=0.0)
    trainer = QHeadTrainer(qhead, args, train_dataset=good_bad_dataset(2, 2, 0), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "head"))
    saved = json.loads((tmp_path / "head" / "config.json").read_text())
    assert saved["vocab_digest"] == vocabulary_digest(tokenizer)
    loaded = QHeadModel.from_pretrained(tmp_path / "head", backbone=tiny_lm)
    CDLogitsProcessor(loaded, tokenizer=tokenizer, k=2).close()  # its own tokenizer: fine
    with pytest.raises(ValueError, match="vocab_digest"):
        CDLogitsProcessor(loaded, tokenizer=_RenumberedTokenizer(tokenizer), k=2)


# ----------------------------------------------------------------------------- 6. inputs read right or refused


def test_txt_prompts_split_on_newlines_only(tmp_path):
    from hf_stackshape.utils.io import load_prompts

    path = tmp_path / "p.txt"
    path.write_text("one\u2028line\nform\ffeed\r\nlast\x85line\n\n", encoding="utf-8", newline="")
    assert load_prompts(path) == ["one\u2028line", "form\ffeed", "last\x85line"]


def test_column_on_a_txt_file_and_a_folder_as_prompts_are_errors(tmp_path):
    from hf_stackshape.utils.io import load_prompts

    path = tmp_path / "p.txt"
    path.write_text("Hi\n")
    with pytest.raises(ValueError, match=r"--column 'question' does not apply to a \.txt file"):
        load_prompts(path, column="question")
    folder = tmp_path / "prompts"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"is a folder.*--dataset"):
        load_prompts(folder)


def test_a_baseline_file_with_several_settings_is_refused(tmp_path, capsys):
    rows = [{"prompt": f"p{i}", "response": "x" * (i + 1), "method": "args"} for i in range(3)]
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = tmp_path / "base.jsonl"
    interleaved = [{**r, "method": "greedy", "weight": w} for r in rows for w in (0.5, 2.0)]
    base.write_text("".join(json.dumps(r) + "\n" for r in interleaved))
    argv = ["evaluate", "--generations", str(gen), "--baseline_file", str(base), "--reward", "length",
            "--metrics", "reward", "--output_dir", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "2 settings" in err and "weight=0.5" in err and "weight=2.0" in err and "--baseline_weight" in err, err


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import errno

    from hf_stackshape.utils import io

    with pytest.raises(OSError, match=r"No space left on device while writing /dev/full") as info:
        io.append_jsonl("/dev/full", [{"a": 1}])
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    target = tmp_path / "run.json"
    with pytest.raises(OSError, match=f"while writing {target}"):
        io.atomic_write_json(target, {"a": 1})
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_huge_prompt_reaches_the_reward_model_clipped_once(tokenizer, tiny_lm, reward, caplog):
    import logging
    import time

    from hf_stackshape import ARGSLogitsProcessor, HFRewardModel

    rm = HFRewardModel(reward.model, tokenizer, max_length=64)
    huge = "Tell me about the sea and the ships. " * 30000 + "What is the capital of France?"  # ~1.1 MB
    clipped = rm.clip_prompt(huge)
    assert huge.endswith(clipped) or clipped.strip() in huge
    assert len(tokenizer(clipped, add_special_tokens=False)["input_ids"]) <= 64 and rm.clip_prompt("Hi") == "Hi"
    seen = []
    real_score = rm.score

    def spy(prompts, responses):
        seen.append(max(len(p) for p in prompts))
        return real_score(prompts, responses)

    rm.score = spy
    tail = tokenizer([huge[-200:]], return_tensors="pt")  # what generate's left truncation feeds the base model
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=4, weight=1.0, use_cache=False, prompts=[huge])
    logger = logging.getLogger("hf_stackshape.guidance.args")
    logger.addHandler(caplog.handler)
    start = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="hf_stackshape.guidance.args"):
            _generate_with(tiny_lm, proc, tail["input_ids"], tail["attention_mask"], 4)
    finally:
        logger.removeHandler(caplog.handler)
    assert len(seen) == 4 and max(seen) < 2000, seen  # never the megabyte
    assert "max_length" in caplog.text and time.monotonic() - start < 30
