"""``stackshape bench NAME [--json] [options]``: speed ratios measured side by side in one run.

Each benchmark is a module ``hf_stackshape.benchmarks.<name>`` with a dataclass ``BenchArgs``, a
``DESCRIPTION`` and ``run(args) -> dict``; the dict holds the timings, the ratios, and each ratio's
target under ``targets``. Every result also carries ``run_peak_memory_mib`` and ``run_peak_memory_source``: the
peak memory of the whole run (:class:`~hf_stackshape.utils.memory.PeakMemory`: CUDA peak on a GPU, peak RSS on a
CPU). Timings are never pass/fail: the ratios are printed for a person (or CI
log) to read.
"""

from __future__ import annotations

import importlib
import json
from typing import List

from ..utils.memory import PeakMemory

BENCHMARKS = {
    "threshold": "exact threshold solver vs a per-prompt scalar bisection loop (10,000 prompts x 16)",
    "calibrate": "ThresholdCalibrator vs plain generate sampling on SmolLM2 (8 prompts x 8 samples)",
    "args": "ARGSLogitsProcessor vs plain greedy and vs a naive ARGS on SmolLM2 (64 tokens)",
    "cd": "CDLogitsProcessor (q head on shared states; value head, k=10) vs plain greedy",
    "bon": "SRS best-of-N end to end vs the same N-sample generate alone on SmolLM2 (8 prompts x 8 samples)",
    "device": "the device check: every method at 1B and 8B Llama shapes in bf16 (random weights), time, memory",
    "scaling": "the same sweep on 1 and on N torchrun ranks: speedup, and whether the outputs are identical",
}


def _usage() -> str:
    lines = [f"  {name.ljust(10)} {text}" for name, text in BENCHMARKS.items()]
    return "usage: stackshape bench NAME [--json] [options]\n\nbenchmarks:\n" + "\n".join(lines)


def main(argv: List[str]) -> int:
    from transformers import HfArgumentParser

    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], list(argv[1:])
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    as_json = "--json" in rest
    rest = [a for a in rest if a != "--json"]
    module = importlib.import_module(f"hf_stackshape.benchmarks.{name}")
    parser = HfArgumentParser(module.BenchArgs, prog=f"stackshape bench {name}", description=module.DESCRIPTION)
    (args,) = parser.parse_args_into_dataclasses(args=rest)
    with PeakMemory() as peak:  # every bench: peak memory beside its timings (CUDA peak on a GPU, RSS on CPU)
        result = module.run(args)
    result = {"benchmark": name, **result, **peak.as_dict("run_peak_memory")}
    if as_json:
        print(json.dumps(result, sort_keys=False))
    else:
        print(getattr(module, "format_result", format_result)(result))  # a bench may lay out its own table
    return 0


def format_result(result: dict) -> str:
    targets = result.get("targets", {})
    lines = [f"benchmark: {result['benchmark']}"]
    for key, value in result.items():
        if key in ("benchmark", "targets"):
            continue
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        if key in targets:
            text += f"   (target {targets[key]})"
        lines.append(f"  {key}: {text}")
    return "\n".join(lines)
