"""Calibration across real processes: 2 torchrun ranks over gloo, and a SIGKILLed run that resumes.

Both compare against an in-process single run with the same seed, exactly (one intra-op thread everywhere,
so floating point sums are bitwise reproducible)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tiny_llama_config
from datasets import load_from_disk

from hf_stackshape.calibration import ThresholdCalibrator
from hf_stackshape.cli import main as cli_main
from hf_stackshape.utils.io import load_prompts
from hf_stackshape.rewards import HFRewardModel

PROMPTS = ["Hi!", "Tell me a joke.", "Hi!", "What is 2+2?", "Name a color.", "Say something nice.", "Bye"]
SETTINGS = dict(num_samples=3, max_new_tokens=6, chunk_size=2, top_p=1.0, seed=7)
CLI_SETTINGS = [f"--{k}={v}" for k, v in SETTINGS.items()]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("STACKSHAPE_DEBUG", None)
    return env


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer):
    """Tiny random LM and RM saved as HF folders, a prompt file, and the single-process reference run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    root = tmp_path_factory.mktemp("calib-mp")
    torch.manual_seed(0)
    special = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                   bos_token_id=tokenizer.bos_token_id)
    lm = LlamaForCausalLM(tiny_llama_config(len(tokenizer), **special))
    torch.manual_seed(1)
    rm = LlamaForSequenceClassification(tiny_llama_config(len(tokenizer), num_labels=1,
                                                          pad_token_id=tokenizer.pad_token_id))
    for model, name in ((lm, "lm"), (rm, "rm")):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = AutoModelForCausalLM.from_pretrained(root / "lm", dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(root / "lm", padding_side="left")
        reward = HFRewardModel.from_pretrained(str(root / "rm"), dtype=torch.float32)
        cal = ThresholdCalibrator(model, tok, reward, show_progress=False, **SETTINGS)
        reference = cal.calibrate(load_prompts(root / "prompts.jsonl"), output_dir=root / "ref").to_list()
    finally:
        torch.set_num_threads(before)
    return root, reference


def _metas(out):
    return {int(p.name[6:11]): json.loads(p.read_text()) for p in sorted(out.glob("chunk-*.json"))}


def _cli_args(root, out):
    return ["calibrate", "--prompts", str(root / "prompts.jsonl"), "--model", str(root / "lm"),
            "--reward_model", str(root / "rm"), "--output_dir", str(out), "--show_progress", "false",
            *CLI_SETTINGS]


@pytest.mark.distributed
def test_torchrun_two_ranks_resume_and_match_single_process(setup):
    root, reference = setup
    out = root / "dist"
    shutil.copytree(root / "ref", out)
    ref_metas = _metas(out)
    # Chunk 0 truncated, chunk 2 gone, chunk 3 never finished (no sidecar): only chunk 1 is reusable.
    data = out / "chunk-00000.jsonl"
    data.write_bytes(data.read_bytes()[:50])
    (out / "chunk-00002.jsonl").unlink()
    (out / "chunk-00002.json").unlink()
    (out / "chunk-00003.json").unlink()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "hf_stackshape.cli", *_cli_args(root, out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metas = _metas(out)
    assert metas[1] == ref_metas[1]  # reused, not recomputed
    # Rank r of 2 took chunks r, r + 2: both ranks really ran and wrote their own chunks.
    ranks = {k: (metas[k]["rank"], metas[k]["world_size"]) for k in (0, 2, 3)}
    assert ranks == {0: (0, 2), 2: (0, 2), 3: (1, 2)}
    assert metas[0]["run_id"] == metas[2]["run_id"] != metas[3]["run_id"]
    # Rank 0 gathered one dataset, identical to the single-process run.
    assert load_from_disk(str(out / "dataset")).to_list() == reference
    assert [json.loads(line) for line in (out / "calibration.jsonl").read_text().splitlines()] == reference


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hf_stackshape.calibration import ThresholdCalibrator
    from hf_stackshape.utils.io import load_prompts
    from hf_stackshape.rewards import HFRewardModel

    root, out, kill_at, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), eval(sys.argv[4])

    class KilledMidRun(HFRewardModel):
        calls = 0

        # The calibrator scores an HFRewardModel's chunk with one `score_grouped` call; hooking that (not
        # `score`) keeps the very code path of the reference run, so the comparison below stays exact.
        def score_grouped(self, prompts, responses):
            KilledMidRun.calls += 1
            if KilledMidRun.calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return super().score_grouped(prompts, responses)

    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, "lm"), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(os.path.join(root, "lm"), padding_side="left")
    reward = KilledMidRun.from_pretrained(os.path.join(root, "rm"), dtype=torch.float32)
    ThresholdCalibrator(model, tok, reward, show_progress=False, **settings).calibrate(
        load_prompts(os.path.join(root, "prompts.jsonl")), output_dir=out)
    """
)


@pytest.mark.slow  # a killed calibrate process
def test_sigkill_mid_run_resumes_without_recomputing_finished_chunks(setup, monkeypatch, capsys):
    root, reference = setup
    out = root / "killed"
    script = root / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run([sys.executable, str(script), str(root), str(out), "3", repr(SETTINGS)],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    before = _metas(out)
    assert sorted(before) == [0, 1]  # killed while scoring chunk 2

    computed = []
    original = ThresholdCalibrator.sample_and_score

    def counting(self, prompts, chunk_index, first_index):
        computed.append(chunk_index)
        return original(self, prompts, chunk_index, first_index)

    monkeypatch.setattr(ThresholdCalibrator, "sample_and_score", counting)
    assert cli_main(_cli_args(root, out)) == 0, capsys.readouterr().err  # rerunning the command resumes
    assert computed == [2, 3]
    after = _metas(out)
    assert [after[k]["run_id"] for k in (0, 1)] == [before[k]["run_id"] for k in (0, 1)]
    assert load_from_disk(str(out / "dataset")).to_list() == reference
    assert [json.loads(line) for line in (out / "calibration.jsonl").read_text().splitlines()] == reference
