"""QHeadTrainer under 2 real CPU processes (torchrun, gloo) follows the same loss curve as 1 process with the
same global batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from test_qhead import good_bad_dataset

from hf_stackshape import QHeadModel, QHeadTrainer, QHeadTrainerConfig

WORKER = r'''
import json, os, sys
import torch
from datasets import load_from_disk
from transformers import AutoTokenizer, LlamaForCausalLM
from hf_stackshape import QHeadModel, QHeadTrainer, QHeadTrainerConfig

work, per_device = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
tokenizer = AutoTokenizer.from_pretrained(os.path.join(work, "tokenizer"))
backbone = LlamaForCausalLM.from_pretrained(os.path.join(work, "backbone")).eval()
torch.manual_seed(1)
qhead = QHeadModel.from_backbone(backbone, head_type="value", head_hidden_size=16)
args = QHeadTrainerConfig(**json.load(open(os.path.join(work, "args.json"))), per_device_train_batch_size=per_device,
                          ddp_backend="gloo")
trainer = QHeadTrainer(qhead, args, train_dataset=load_from_disk(os.path.join(work, "data")),
                       processing_class=tokenizer)
trainer.train()
rank = int(os.environ.get("RANK", 0))
record = {"rank": rank, "world_size": trainer.args.world_size,
          "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
with open(os.path.join(work, f"rank{rank}.json"), "w") as fh:
    json.dump(record, fh)
# What a torchrun script should end with: exiting with the gloo group alive can abort a rank at teardown.
trainer.accelerator.end_training()
'''


def _torchrun():
    exe = shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.distributed
def test_two_processes_match_one_process(tmp_path, tiny_lm, tokenizer):
    work = tmp_path
    tiny_lm.save_pretrained(work / "backbone")
    tokenizer.save_pretrained(work / "tokenizer")
    good_bad_dataset(8, 4, seed=0).save_to_disk(str(work / "data"))
    settings = dict(
        output_dir=str(work / "out"), learning_rate=3e-3, num_train_epochs=2, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, transform="srs", bound=1.0, alpha=5.0, beta=0.5, safeguards="none",
        loss_type="fudge+consistency", seed=0, train_sampling_strategy="sequential", use_cpu=True,
        validation_split=0.0,
    )
    (work / "args.json").write_text(json.dumps(settings))
    (work / "worker.py").write_text(WORKER)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = _torchrun() + ["--standalone", "--nproc_per_node", "2", str(work / "worker.py"), str(work), "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)

    # One process, same global batch (4 = 2 ranks x 2), same data order.
    from datasets import load_from_disk

    torch.manual_seed(1)
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="value", head_hidden_size=16)
    args = QHeadTrainerConfig(**settings, per_device_train_batch_size=4)
    trainer = QHeadTrainer(qhead, args, train_dataset=load_from_disk(str(work / "data")), processing_class=tokenizer)
    trainer.train()
    single = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(single) == len(ranks[0]["losses"]) == 16
    assert single[-1] < single[0]
    assert ranks[0]["losses"] == pytest.approx(single, rel=1e-3, abs=1e-5)
