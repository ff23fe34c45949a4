"""``stackshape bench scaling``: the same sweep on 1 and on N ranks (torchrun, gloo on CPU, NCCL on GPUs).

Runs ``stackshape sweep`` twice through ``torch.distributed.run`` (``--nproc_per_node 1``, then ``N``), each
rank with ``--threads`` intra-op threads (default 1: N ranks on N cores), into two fresh folders, and reports:

* ``sweep_1_rank_s`` / ``sweep_N_ranks_s``: the sweep itself, from its run manifest's creation (models
  loaded) to its table's write (cells generated, gathered, scored), from the files' modification times;
* ``wall_1_rank_s`` / ``wall_N_ranks_s``: the whole command, process start and model loading included;
* ``speedup = sweep_1_rank_s / sweep_N_ranks_s`` (target >= 1.8 on 2 ranks);
* ``identical_outputs``: every generation file and the table of the N-rank run equal the 1-rank run's, byte for
  byte (draws keyed by the global prompt index; batches those of one process; ``MKL_CBWR=AUTO,STRICT`` so
  MKL's results do not depend on memory alignment).

The workload defaults to the embedded SmolLM2 with the bundled demo RM guiding SRS-ARGS and vanilla ARGS at
one weight, plus the base policy; ``--model`` / ``--reward_model`` take any folder (e.g. tiny test models).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

DESCRIPTION = "the same sweep on 1 and on N torchrun ranks: speedup, and whether the outputs are identical"


@dataclass
class BenchArgs:
    """Settings of the scaling benchmark."""

    ranks: int = field(default=2, metadata={"help": "Ranks of the parallel run (compared with 1 rank)."})
    threads: int = field(default=1, metadata={"help": "Intra-op threads per rank (OMP_NUM_THREADS)."})
    prompts: int = field(default=8, metadata={"help": "Demo test prompts swept."})
    methods: List[str] = field(default_factory=lambda: ["srs-args"], metadata={"help": "Sweep methods."})
    weights: List[float] = field(default_factory=lambda: [1.0], metadata={"help": "Sweep weights 1/beta."})
    k: int = field(default=10, metadata={"help": "ARGS / CD candidates per step."})
    num_samples: int = field(default=4, metadata={"help": "Best-of-N samples (bon methods)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens per response."})
    batch_size: int = field(default=2, metadata={"help": "Prompts per generate call (the unit shared over ranks)."})
    model: Optional[str] = field(default=None, metadata={"help": "Base model folder (default: the embedded SmolLM2)."})
    reward_model: str = field(default="demo", metadata={"help": "Guiding reward (default: the bundled demo RM)."})
    output_dir: Optional[str] = field(default=None, metadata={"help": "Where both sweeps go (default: a temporary folder)."})


def _sweep_argv(args: BenchArgs, prompts: Path, out: Path) -> List[str]:
    argv = ["sweep", "--prompts", str(prompts), "--reward_model", args.reward_model, "--methods", *args.methods,
            "--weights", *map(str, args.weights), "--k", str(args.k), "--num_samples", str(args.num_samples),
            "--max_new_tokens", str(args.max_new_tokens), "--batch_size", str(args.batch_size),
            "--output_dir", str(out)]
    return argv + (["--model", args.model] if args.model else [])


def _launch(args: BenchArgs, ranks: int, prompts: Path, out: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_CBWR="AUTO,STRICT", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
           "-m", "hf_stackshape.cli", *_sweep_argv(args, prompts, out)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"The {ranks}-rank sweep failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def _outputs(out: Path) -> dict:
    files = sorted((out / "generations").glob("*.jsonl")) + [out / "results.json"]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def _sweep_seconds(out: Path) -> float:
    return (out / "results.json").stat().st_mtime - (out / "run.json").stat().st_mtime


def run(args: BenchArgs) -> dict:
    from ..assets.demo import demo_prompts

    if args.ranks < 2:
        raise ValueError(f"`ranks` must be >= 2 (compared with 1 rank), got {args.ranks!r}.")
    if min(args.threads, args.prompts, args.max_new_tokens, args.batch_size) < 1:
        raise ValueError("`threads`, `prompts`, `max_new_tokens` and `batch_size` must all be >= 1.")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.output_dir) if args.output_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        pool = demo_prompts("test")
        prompts = root / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": pool[i % len(pool)]}) + "\n" for i in range(args.prompts)))
        one, many = root / "ranks-1", root / f"ranks-{args.ranks}"
        for folder in (one, many):
            if folder.exists():
                raise ValueError(f"{folder} exists; pass an empty --output_dir (the bench times fresh sweeps).")
        wall_one = _launch(args, 1, prompts, one)
        wall_many = _launch(args, args.ranks, prompts, many)
        sweep_one, sweep_many = _sweep_seconds(one), _sweep_seconds(many)
        identical = _outputs(one) == _outputs(many)
    return {
        "ranks": args.ranks,
        "threads_per_rank": args.threads,
        "prompts": args.prompts,
        "methods": list(args.methods),
        "max_new_tokens": args.max_new_tokens,
        "sweep_1_rank_s": round(sweep_one, 3),
        f"sweep_{args.ranks}_ranks_s": round(sweep_many, 3),
        "wall_1_rank_s": round(wall_one, 3),
        f"wall_{args.ranks}_ranks_s": round(wall_many, 3),
        "speedup": round(sweep_one / max(sweep_many, 1e-9), 3),
        "identical_outputs": identical,
        "targets": {"speedup": ">= 1.8 (2 ranks)"},
    }
