"""Data-parallel `generate`, `sweep` and `evaluate` (issue 17, item 1): 2 gloo ranks under torchrun write exactly
the files one process writes and print what it prints; a rank killed mid-run, then a rerun (on another world
size), gives the same files.

Tiny random models, 4 new tokens, one intra-op thread everywhere (floating point sums are then bitwise
reproducible, see conftest.one_thread)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_llama_config


PROMPTS = ["Hi!", "Tell me a joke about a long road.", "What is 2+2?", "Name a color.", "Bye"]
GENERATE = {
    "base": ["--method", "base"],
    "base-sampled": ["--method", "base", "--do_sample", "true", "--temperature", "0.8", "--seed", "4"],
    "srs-args": ["--method", "srs-args", "--k", "3"],
    "srs-args-sampled": ["--method", "srs-args", "--k", "3", "--do_sample", "true"],
    "srs-cd": ["--method", "srs-cd", "--k", "3"],
    "srs-bon": ["--method", "srs-bon", "--num_samples", "2"],
}

pytestmark = [pytest.mark.usefixtures("one_thread")]

# Runs several commands under one torchrun launch (one process group, set up here and left to us by the CLI).
RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch.distributed as dist

    dist.init_process_group("gloo")
    import hf_stackshape.pipeline.generation as generation

    kill = os.environ.get("KILL_RANK_AFTER_BATCHES")
    original, calls = generation.generate_responses, []

    def logged(*args, **kwargs):  # which prompts each call answers; rank 1 may die before a given call
        if kill is not None and dist.get_rank() == 1 and len(calls) == int(kill):
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run: the batches done so far are in its shard
        calls.append(1)
        print("CALL", dist.get_rank(), json.dumps(kwargs.get("indices")), flush=True)
        return original(*args, **kwargs)

    generation.generate_responses = logged
    from hf_stackshape.cli import main

    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        if code:
            sys.exit(code)
    dist.destroy_process_group()
    """
)


def _env(**extra):
    # MKL_CBWR=AUTO,STRICT: MKL's results otherwise depend on the memory alignment of the operands, which differs
    # between processes with another allocation history (a rank that scored other batches first): last-bit
    # differences in a reward, seen here before this was set (MKL's "conditional numerical reproducibility").
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               MKL_CBWR="AUTO,STRICT", **extra)
    env.pop("STACKSHAPE_DEBUG", None)
    return env


def _torchrun(root, commands, nproc=2, **env):
    script = root / "runner.py"
    script.write_text(RUNNER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(script),
           json.dumps([[str(a) for a in argv] for argv in commands])]
    return subprocess.run(cmd, env=_env(**env), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer):
    """Tiny LM, RM and srs Q-head saved as folders, a prompt file, and every command's single-process output."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from hf_stackshape.qhead import QHeadModel

    root = tmp_path_factory.mktemp("data-parallel")
    special = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                   bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(tiny_llama_config(len(tokenizer), **special))
    torch.manual_seed(1)
    rm = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1,
                                                          pad_token_id=tokenizer.pad_token_id))
    with torch.no_grad():
        rm.score.weight.mul_(300.0)  # rewards that move ARGS's choice
    for model, name in ((lm, "lm"), (rm, "rm")):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    qhead = QHeadModel.from_backbone(str(root / "lm"), head_type="value", head_hidden_size=16,
                                     shaping={"transform": "srs", "bound": 12.0, "alpha": 1.5, "beta": 1.0})
    torch.manual_seed(3)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.normal_(0.0, 1.0)
    qhead.save_pretrained(root / "qhead")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))

    # The reference: one process, with the environment of the ranks (MKL_CBWR must be set before MKL starts).
    done = _torchrun(root, _commands(root, root / "ref") + [_evaluate_argv(root, root / "eval-ref")], nproc=1)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, done.stdout


def _evaluate_argv(root, out):
    ref = root / "ref"
    return ["evaluate", "--generations", ref / "srs-args.jsonl", ref / "srs-bon.jsonl", "--baseline_file",
            ref / "base.jsonl", "--reward", root / "rm", "--reward_batch_size", "2", "--metrics", "reward,win_tie",
            "--output_dir", out]


def _generate_argv(root, out, name, *extra):
    argv = ["generate", "--model", root / "lm", "--reward_model", root / "rm", "--prompts", root / "prompts.jsonl",
            "--max_new_tokens", "4", "--batch_size", "2", "--output_file", out / f"{name}.jsonl", *GENERATE[name]]
    if name == "srs-cd":
        argv += ["--qhead", root / "qhead"]
    return argv + list(extra)


def _sweep_argv(root, out):
    return ["sweep", "--model", root / "lm", "--reward_model", root / "rm", "--gold_reward", "length", "--prompts",
            root / "prompts.jsonl", "--methods", "srs-args", "srs-bon", "--weights", "1", "--k", "3",
            "--num_samples", "2", "--max_new_tokens", "4", "--batch_size", "2", "--output_dir", out / "sweep"]


def _commands(root, out):
    return [_generate_argv(root, out, name) for name in GENERATE] + [_sweep_argv(root, out)]


def _files(folder):
    """Every output file's bytes (run manifests hold a creation time: compared apart from it)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".png"):
            data = path.read_bytes()
            if path.name.endswith("run.json"):
                manifest = json.loads(data)
                manifest.pop("created")
                data = manifest
            out[str(path.relative_to(folder))] = data
    return out


@pytest.mark.distributed
@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes(setup):
    root, evaluate_printed = setup
    done = _torchrun(root, _commands(root, root / "dp") + [_evaluate_argv(root, root / "eval-dp")])
    assert done.returncode == 0, done.stderr[-3000:]
    # Both ranks really shared the work (each printed its share of the prompts).
    assert "rank 0/2" in done.stdout and "rank 1/2" in done.stdout
    reference, got = _files(root / "ref"), _files(root / "dp")
    assert sorted(got) == sorted(reference)
    for name in reference:
        assert got[name] == reference[name], name
    assert not list((root / "dp").glob("*.shard-*"))  # merged, shards removed
    # evaluate: the same report printed (once), the same metrics and per-sample files.
    expected = evaluate_printed[evaluate_printed.index("baseline: "):].replace(str(root / "eval-ref"), str(root / "eval-dp"))
    assert done.stdout.count(expected) == 1, done.stdout[-3000:]
    ref, got = ([json.loads(line) for line in (root / d / "evaluation.per_sample.jsonl").read_text().splitlines()]
                for d in ("eval-ref", "eval-dp"))
    assert got == ref
    ref, got = (json.loads((root / d / "evaluation.metrics.json").read_text()) for d in ("eval-ref", "eval-dp"))
    assert ref["settings"].pop("output_dir") != got["settings"].pop("output_dir")
    assert got == ref


@pytest.mark.distributed
@pytest.mark.slow
def test_killed_rank_then_rerun_on_another_world_size_gives_the_same_file(setup):
    root, _ = setup
    out = root / "killed"
    argv = _generate_argv(root, out, "srs-bon", "--batch_size", "1")
    reference = _generate_argv(root, root / "ref-b1", "srs-bon", "--batch_size", "1")
    assert _torchrun(root, [reference], nproc=1).returncode == 0
    # Rank 1 gets batches 1 and 3 of 0..4; it dies before its second batch.
    done = _torchrun(root, [argv], KILL_RANK_AFTER_BATCHES="1")
    assert done.returncode != 0
    shard = out / "srs-bon.jsonl.shard-00001.jsonl"
    assert [json.loads(line)["id"] for line in shard.read_text().splitlines()] == [1]
    assert not (out / "srs-bon.jsonl").exists()

    rerun = _torchrun(root, [argv], nproc=1)  # resumed by one process
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    redone = [i for line in rerun.stdout.splitlines() if line.startswith("CALL") for i in json.loads(line.split(" ", 2)[2])]
    assert 1 not in redone and 3 in redone  # the killed rank's finished batch is kept, its unfinished one redone
    assert (out / "srs-bon.jsonl").read_bytes() == (root / "ref-b1" / "srs-bon.jsonl").read_bytes()
    assert not list(out.glob("*.shard-*"))
