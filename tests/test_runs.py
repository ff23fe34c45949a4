"""hf_stackshape.utils.runs: run manifests that refuse changed settings, overwrite whole runs, lock outputs, and the
fingerprints of models, tokenizers, rewards and prompts."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from hf_stackshape import __version__
from hf_stackshape.rewards import CallableReward, HFRewardModel, load_reward, reward_fingerprint
from hf_stackshape.utils.runs import (
    DistributedSetupError,
    RunLockedError,
    RunMismatchError,
    model_fingerprint,
    open_run,
    prompts_fingerprint,
    tokenizer_fingerprint,
)

FP = {"method": "srs-args", "weight": 0.5, "model": {"name_or_path": "m", "weights": "abc"}}


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def test_manifest_written_first_and_a_matching_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    with open_run(out, FP, kind="sweep") as run:
        assert not run.resumed and run.rank == 0 and run.world_size == 1
        manifest = json.loads((out / "run.json").read_text())
        assert manifest["fingerprint"] == FP and manifest["kind"] == "sweep"
        assert manifest["package_version"] == __version__ and manifest["digest"] == run.digest
        (out / "rows.jsonl").write_text("{}\n")
    with open_run(out, FP, kind="sweep") as run:
        assert run.resumed
    assert (out / "rows.jsonl").read_text() == "{}\n"
    # Tuples and lists are the same JSON: a fingerprint read back compares equal to a fresh one.
    with open_run(tmp_path / "grid", {"grid": (1, 2)}):
        pass
    with open_run(tmp_path / "grid", {"grid": [1, 2]}) as run:
        assert run.resumed


def test_changed_settings_are_refused_naming_each_key(tmp_path):
    out = tmp_path / "run"
    with open_run(out, FP, kind="generate"):
        pass
    changed = {**FP, "weight": 2.0, "model": {"name_or_path": "m", "weights": "def"}, "seed": 1}
    with pytest.raises(RunMismatchError) as info:
        with open_run(out, changed, kind="generate"):
            pytest.fail("a changed run must not start")
    message = str(info.value)
    assert "weight: 0.5 -> 2.0" in message and "model.weights: 'abc' -> 'def'" in message
    assert "seed: '<missing>' -> 1" in message and "method" not in message
    assert "--overwrite" in message and "another output" in message and len(message.splitlines()) == 1
    with pytest.raises(RunMismatchError, match="run kind: 'generate' -> 'sweep'"):
        with open_run(out, FP, kind="sweep"):
            pass
    # The failed attempts released the lock and left the old run untouched.
    with open_run(out, FP, kind="generate") as run:
        assert run.resumed
    assert isinstance(RunMismatchError("x"), ValueError) and isinstance(RunLockedError("x"), RuntimeError)


def test_files_without_a_manifest_and_a_broken_manifest_are_refused(tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "chunk-00000.jsonl").write_text("{}\n")
    with pytest.raises(RunMismatchError, match="no run manifest"):
        with open_run(legacy, FP):
            pass
    # --overwrite removes only what a manifest says a run wrote: files without one are refused, named, kept.
    with pytest.raises(RunMismatchError, match="no run manifest.*chunk-00000.jsonl"):
        with open_run(legacy, FP, overwrite=True):
            pass
    assert os.listdir(legacy) == ["chunk-00000.jsonl"]
    (legacy / "chunk-00000.jsonl").unlink()
    with open_run(legacy, FP) as run:
        assert not run.resumed and os.listdir(legacy) == ["run.json"]
    (legacy / "run.json").write_text("{not json")
    with pytest.raises(RunMismatchError, match="unreadable"):
        with open_run(legacy, FP):
            pass
    with pytest.raises(RunMismatchError, match="unreadable"):
        with open_run(legacy, FP, overwrite=True):
            pass
    # An empty folder is a fresh run.
    (tmp_path / "empty").mkdir()
    with open_run(tmp_path / "empty", FP) as run:
        assert not run.resumed


def test_overwrite_leaves_nothing_of_the_old_folder_run(tmp_path):
    out = tmp_path / "run"
    with open_run(out, FP, kind="calibrate"):
        (out / "dataset").mkdir()
        (out / "dataset" / "data.arrow").write_bytes(b"old")
        (out / "chunk-00000.jsonl").write_text("old\n")
        (out / "calibration.jsonl").write_text("old\n")
    (tmp_path / "neighbour.txt").write_text("keep me")
    with open_run(out, {**FP, "weight": 1.0}, kind="calibrate", overwrite=True) as run:
        assert not run.resumed
        assert sorted(os.listdir(out)) == ["run.json"]
        assert json.loads((out / "run.json").read_text())["fingerprint"]["weight"] == 1.0
    # Nothing of the old run is left anywhere (no trash folder), and the neighbours are untouched.
    assert sorted(os.listdir(tmp_path)) == [".run.lock", "neighbour.txt", "run"]
    assert (tmp_path / "neighbour.txt").read_text() == "keep me"


def test_overwrite_of_a_single_file_run_removes_only_what_it_wrote(tmp_path):
    out = tmp_path / "gen.jsonl"
    with open_run(out, FP, single_file=True) as run:
        assert run.manifest_path == tmp_path / "gen.jsonl.run.json"
        out.write_text('{"prompt": "a"}\n')
    assert json.loads(run.manifest_path.read_text())["written"] == ["gen.jsonl", "gen.jsonl.run.json"]
    (tmp_path / "gen.jsonl.notes").write_text("mine")  # a user's file named like a sidecar: <file>.*
    (tmp_path / "gen2.jsonl").write_text("not ours")
    with pytest.raises(RunMismatchError, match="weight: 0.5 -> 3"):
        with open_run(out, {**FP, "weight": 3}, single_file=True):
            pass
    with open_run(out, {**FP, "weight": 3}, single_file=True, overwrite=True) as run:
        assert not run.resumed and not out.exists()
    assert sorted(os.listdir(tmp_path)) == [".gen.jsonl.lock", "gen.jsonl.notes", "gen.jsonl.run.json", "gen2.jsonl"]
    # A file written by hand (no manifest) is not silently reused.
    (tmp_path / "hand.jsonl").write_text("{}\n")
    with pytest.raises(RunMismatchError, match="no run manifest"):
        with open_run(tmp_path / "hand.jsonl", FP, single_file=True):
            pass
    with pytest.raises(ValueError, match="is a file"):
        open_run(tmp_path / "hand.jsonl", FP)
    with pytest.raises(ValueError, match="is a folder"):
        open_run(tmp_path, FP, single_file=True)


def test_leftover_temp_files_and_trash_are_cleaned(tmp_path):
    out = tmp_path / "run"
    with open_run(out, FP):
        (out / "sub").mkdir()
        (out / "chunk-00001.jsonl").write_text("kept\n")
    # What killed atomic writes (io.atomic_write_*) and a killed overwrite leave behind.
    (out / ".chunk-00002.jsonl.abc123.tmp").write_text("half")
    (out / "sub" / ".x.json.zz.tmp").write_text("half")
    (out / ".dataset-1234.tmp").mkdir()
    (tmp_path / ".run.old-deadbeef").mkdir()
    (tmp_path / ".run.old-deadbeef" / "x").write_text("old")
    with open_run(out, FP) as run:
        assert run.resumed
    assert sorted(os.listdir(out)) == ["chunk-00001.jsonl", "run.json", "sub"]
    assert os.listdir(out / "sub") == [] and not (tmp_path / ".run.old-deadbeef").exists()
    single = tmp_path / "gen.jsonl"
    with open_run(single, FP, single_file=True):
        single.write_text("{}\n")
    (tmp_path / ".gen.jsonl.q1w2.tmp").write_text("half")
    (tmp_path / ".gen.jsonl.run.json.q1w2.tmp").write_text("half")
    (tmp_path / ".other.txt.q1w2.tmp").write_text("someone else's")
    with open_run(single, FP, single_file=True):
        pass
    assert not (tmp_path / ".gen.jsonl.q1w2.tmp").exists()
    assert not (tmp_path / ".gen.jsonl.run.json.q1w2.tmp").exists()
    assert (tmp_path / ".other.txt.q1w2.tmp").exists()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from hf_stackshape.utils.runs import open_run
    with open_run(sys.argv[1], {"weight": 0.5}, kind="generate") as run:
        open(sys.argv[2], "w").write("locked")
        (run.output / ".chunk-0.jsonl.inflight.tmp").write_text("being written")
        time.sleep(60)
    """
)


def test_a_second_concurrent_run_refuses_at_once(tmp_path):
    out, flag = tmp_path / "run", tmp_path / "flag"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(flag)], env=_env())
    try:
        deadline = time.time() + 120
        while not flag.exists():
            assert holder.poll() is None and time.time() < deadline, "the lock holder did not start"
            time.sleep(0.1)
        start = time.time()
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
            with open_run(out, {"weight": 0.5}, kind="generate"):
                pass
        assert time.time() - start < 5
        # The refused run touched nothing: the holder's in-flight temp file is still there.
        assert (out / ".chunk-0.jsonl.inflight.tmp").read_text() == "being written"
        with pytest.raises(RunLockedError):
            with open_run(out, {"weight": 2.0}, kind="generate", overwrite=True):
                pass
        assert (out / "run.json").is_file()
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder (even a SIGKILLed one).
    with open_run(out, {"weight": 0.5}, kind="generate") as run:
        assert run.resumed


def test_the_same_process_cannot_open_a_run_twice(tmp_path):
    with open_run(tmp_path / "r", FP):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            with open_run(tmp_path / "r", FP):
                pass


def test_world_size_without_a_process_group_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedSetupError, match="WORLD_SIZE=2 .* no torch.distributed process group"):
        with open_run(tmp_path / "r", FP):
            pass
    assert not (tmp_path / "r").exists()


RANKS = textwrap.dedent(
    """
    import os, sys, time
    import torch.distributed as dist
    from hf_stackshape.utils.runs import open_run, RunMismatchError
    dist.init_process_group("gloo")
    out, weight = sys.argv[1], float(sys.argv[2])
    start = time.time()
    # Each rank reports in its own file: two processes sharing one stdout pipe can lose or merge lines.
    report = open(os.path.join(sys.argv[3], f"rank{dist.get_rank()}.txt"), "w")
    try:
        with open_run(out, {"weight": weight}, kind="generate") as run:
            report.write(f"rank {run.rank}/{run.world_size} resumed={run.resumed}\\n")
    except RunMismatchError as err:
        report.write(f"rank {dist.get_rank()} refused after {time.time() - start:.1f}s: {err}\\n")
    report.close()
    dist.destroy_process_group()
    """
)


@pytest.mark.distributed
def test_rank_zero_failure_reaches_every_rank_at_once(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    out = tmp_path / "run"

    def launch(weight):
        reports = tmp_path / f"reports-{len(list(tmp_path.glob('reports-*')))}"
        reports.mkdir()
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(script), str(out), str(weight), str(reports)]
        done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return "".join((reports / f"rank{rank}.txt").read_text() for rank in (0, 1))

    first = launch(0.5)
    assert "rank 0/2 resumed=False" in first and "rank 1/2 resumed=False" in first
    assert "rank 1/2 resumed=True" in launch(0.5)
    refused = launch(2.0)
    for rank in (0, 1):
        lines = [x for x in refused.splitlines() if x.startswith(f"rank {rank} refused")]
        assert lines, refused
        line = lines[0]
        assert "weight: 0.5 -> 2.0" in line
        assert float(line.split("after ")[1].split("s:")[0]) < 30  # no collective timeout


# ----------------------------------------------------------------------------------------------- fingerprints


def test_model_fingerprint_sees_weights_dtype_and_generation_config(tiny_lm):
    base = model_fingerprint(tiny_lm)
    assert base == model_fingerprint(tiny_lm) and base["revision"] is None and "weights" in base
    tiny_lm.generation_config.repetition_penalty = 1.3
    changed = model_fingerprint(tiny_lm)
    assert changed["generation_config"]["repetition_penalty"] == 1.3 and changed["weights"] == base["weights"]
    with torch.no_grad():
        # A change deep inside one tensor (not at a sampled stride position) still moves the digest.
        weight = tiny_lm.model.layers[1].mlp.down_proj.weight
        weight.view(-1)[7] += 0.5
    assert model_fingerprint(tiny_lm)["weights"] != changed["weights"]
    assert model_fingerprint(tiny_lm.to(torch.bfloat16))["dtype"] == "torch.bfloat16"
    # A Hub checkpoint is identified by id + commit, without reading its weights.
    tiny_lm.config._commit_hash = "0123abc"
    hub = model_fingerprint(tiny_lm)
    assert hub["revision"] == "0123abc" and "weights" not in hub


def test_a_local_model_is_identified_by_its_weights_not_its_path(tiny_lm, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("a", "b"):
        tiny_lm.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    assert model_fingerprint(a) == model_fingerprint(b) and model_fingerprint(a)["name_or_path"] is None
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path / "a")) == tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(tmp_path / "b"))


def test_tokenizer_fingerprint_sees_the_chat_template(tokenizer):
    import copy

    base = tokenizer_fingerprint(tokenizer)
    other = copy.deepcopy(tokenizer)
    other.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_fingerprint(other)["chat_template"] != base["chat_template"]
    assert tokenizer_fingerprint(copy.deepcopy(tokenizer)) == base


def test_reward_fingerprints_tell_callables_apart(tmp_path, monkeypatch, tiny_rm_model, tokenizer):
    for package in ("rewards_a", "rewards_b"):
        (tmp_path / f"{package}.py").write_text(
            f"def score(response):\n    return len(response) * {1 if package == 'rewards_a' else 2}\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    a, b = load_reward("rewards_a:score", trust_remote_code=True), load_reward("rewards_b:score", trust_remote_code=True)
    assert a.name_or_path == b.name_or_path == "score"
    fa, fb = reward_fingerprint(a), reward_fingerprint(b)
    assert fa != fb and fa["fn"]["module"] == "rewards_a" and fa["fn"]["qualname"] == "score"
    assert reward_fingerprint(load_reward("rewards_a:score", trust_remote_code=True)) == fa
    # An explicit version replaces the source digest; a plain callable goes through as_reward_function.
    assert reward_fingerprint(CallableReward(len, version="v2"))["fn"] == {"version": "v2"}
    assert reward_fingerprint(len)["fn"]["qualname"] == "len"
    with pytest.raises(ValueError, match="version"):
        CallableReward(len, version="")

    def make(scale):
        return lambda response: scale * len(response)

    assert reward_fingerprint(make(1)) != reward_fingerprint(make(2))  # captured values count

    rm = HFRewardModel(tiny_rm_model, tokenizer)

    class Logged(HFRewardModel):
        pass

    assert reward_fingerprint(Logged(tiny_rm_model, tokenizer)) == reward_fingerprint(rm)
    assert reward_fingerprint(HFRewardModel(tiny_rm_model, tokenizer, max_length=64)) != reward_fingerprint(rm)


def test_prompts_fingerprint():
    assert prompts_fingerprint(["a", "b"]) == prompts_fingerprint(["a", "b"])
    assert prompts_fingerprint(["a", "b"]) != prompts_fingerprint(["b", "a"])
    assert prompts_fingerprint(["a"])["count"] == 1


def test_overwrite_never_deletes_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "precious.txt").write_text("keep")
    monkeypatch.chdir(tmp_path)
    for output in (".", str(tmp_path.parent)):
        with pytest.raises(RunMismatchError, match="current or home directory"):
            with open_run(output, FP, overwrite=True):
                pass
    assert (tmp_path / "precious.txt").read_text() == "keep"


# ------------------------------------------------------------------ legacy fingerprints (one VADER, pinned identities)

# The built-in callable rewards as earlier versions wrote them, verbatim (23c5d14: flat modules `hf_stackshape.rewards`
# and `hf_stackshape.demo_assets`; f1ed294: the layered package, before the identities were pinned).
_OLD_SOURCES = {
    "vader@23c5d14": ("hf_stackshape.rewards", "vader", '''
_VADER = None


def _vader_compound(response: str) -> float:
    """VADER sentiment of the response: the ``compound`` score in [-1, 1]."""
    global _VADER
    if _VADER is None:
        from ._extras import needs

        _VADER = needs("vaderSentiment.vaderSentiment", "The 'vader' reward").SentimentIntensityAnalyzer()
    return _VADER.polarity_scores(response)["compound"]
''', "_vader_compound"),
    "vader@f1ed294": ("hf_stackshape.rewards.adapters", "vader", '''
_VADER = None


def _vader_compound(response: str) -> float:
    """VADER sentiment of the response: the ``compound`` score in [-1, 1]."""
    global _VADER
    if _VADER is None:
        from ..utils._extras import needs

        _VADER = needs("vaderSentiment.vaderSentiment", "The 'vader' reward").SentimentIntensityAnalyzer()
    return _VADER.polarity_scores(response)["compound"]
''', "_vader_compound"),
    "demo_vader@23c5d14": ("hf_stackshape.demo_assets", "vader_compound", '''
def vader_reward():
    analyzer = object()

    def vader_compound(response: str) -> float:
        return analyzer.polarity_scores(response)["compound"]

    return vader_compound
''', "vader_reward()"),
    "demo_vader@f1ed294": ("hf_stackshape.assets.demo", "vader_compound", None, "demo_vader@23c5d14"),
    "length@23c5d14": ("hf_stackshape.rewards", "length", '''
def _word_count(response: str) -> float:
    """Number of whitespace words of the response."""
    return float(len(response.split()))
''', "_word_count"),
    "length@f1ed294": ("hf_stackshape.rewards.adapters", "length", None, "length@23c5d14"),
}


def _old_fingerprint(key, tmp_path):
    """``CallableReward(fn, name=...).fingerprint()`` of the old function, rebuilt from its verbatim source."""
    import importlib.util

    module, name, source, attr = _OLD_SOURCES[key]
    if source is None:  # the same source as another version, in another module
        _, _, source, attr = _OLD_SOURCES[attr]
    path = tmp_path / f"old_{key.replace('@', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    fn = loaded.vader_reward() if attr == "vader_reward()" else getattr(loaded, attr)
    fn.__module__ = module
    return CallableReward(fn, name=name).fingerprint()


@pytest.mark.parametrize("key", sorted(_OLD_SOURCES))
def test_runs_recorded_with_an_old_builtin_reward_fingerprint_resume(key, tmp_path):
    from hf_stackshape.assets.demo import vader_reward
    from hf_stackshape.utils.runs import fingerprint_digest

    old = _old_fingerprint(key, tmp_path)
    assert old["fn"]["module"] == _OLD_SOURCES[key][0] and "source_sha256" in old["fn"]
    current = (load_reward("length") if key.startswith("length") else load_reward("vader")).fingerprint()
    assert old != current
    out = tmp_path / "run"
    with open_run(out, {"reward": old, "weight": 0.5}, kind="calibrate"):  # as the old version wrote it
        (out / "chunk-00000.jsonl").write_text("{}\n")
    with open_run(out, {"reward": current, "weight": 0.5}, kind="calibrate") as run:
        assert run.resumed
        # Results the old run stamped with its digest stay valid (the calibrator's chunks compare it).
        assert run.digest == fingerprint_digest({"reward": old, "weight": 0.5}) != fingerprint_digest(run.fingerprint)
    if "vader" in key:  # the demo's gold judge and load_reward("vader") are one reward
        with open_run(out, {"reward": vader_reward().fingerprint(), "weight": 0.5}, kind="calibrate") as run:
            assert run.resumed
    # Another setting still differs, named as usual.
    with pytest.raises(RunMismatchError, match="weight: 0.5 -> 1.0"):
        open_run(out, {"reward": current, "weight": 1.0}, kind="calibrate").__enter__()


def test_unrelated_fingerprints_still_mismatch(tmp_path):
    from hf_stackshape.utils.runs import canonical_fingerprint, register_legacy_fingerprint

    old_vader = _old_fingerprint("vader@23c5d14", tmp_path)
    edited = json.loads(json.dumps(old_vader))
    edited["fn"]["source_sha256"] = "0" * 24  # the old function with another body: other rewards
    out = tmp_path / "run"
    with open_run(out, {"reward": edited}, kind="generate"):
        pass
    with pytest.raises(RunMismatchError, match="reward.fn"):
        open_run(out, {"reward": load_reward("vader").fingerprint()}, kind="generate").__enter__()
    # An old "length" is not VADER, and an old VADER is not "length".
    for old, new in ((_old_fingerprint("length@23c5d14", tmp_path), "vader"), (old_vader, "length")):
        other = tmp_path / f"run-{new}"
        with open_run(other, {"reward": old}, kind="generate"):
            pass
        with pytest.raises(RunMismatchError, match="reward"):
            open_run(other, {"reward": load_reward(new).fingerprint()}, kind="generate").__enter__()
    # The mechanism is generic but strict: dicts only, and never a fingerprint mapped to itself.
    assert canonical_fingerprint({"a": [1, {"b": 2}]}) == {"a": [1, {"b": 2}]}
    with pytest.raises(ValueError, match="dicts"):
        register_legacy_fingerprint("old", {"a": 1})
    with pytest.raises(ValueError, match="current one"):
        register_legacy_fingerprint({"a": 1}, {"a": 1})


def test_a_calibration_recorded_with_the_old_vader_is_accepted(tmp_path):
    from hf_stackshape.calibration.thresholds import check_calibration_reward

    for key, name in (("vader@23c5d14", "vader"), ("demo_vader@23c5d14", "vader_compound")):
        folder = tmp_path / key
        folder.mkdir()
        record = {"reward": {"name": name, "fingerprint": _old_fingerprint(key, tmp_path)}}
        (folder / "calibration_config.json").write_text(json.dumps(record))
        check_calibration_reward(folder, load_reward("vader"), spec="vader")  # no error
        with pytest.raises(ValueError, match="calibrated with the reward"):
            check_calibration_reward(folder, load_reward("length"), spec="length")
