"""``stackshape evaluate``: score a generations JSONL with the metrics of Wang et al. (2026), section 5.

Input: a JSON Lines file with one generation per line (columns ``prompt`` and ``response``, optionally
``method`` and a baseline response column). Output: ``<stem>.metrics.json`` (aggregates per method) and
``<stem>.per_sample.jsonl`` (every input row plus its per-sample scores), both written atomically.

Win-tie rates need a judge (``--judge llm`` or a reward such as ``--judge vader``) and a baseline: either a
column holding a baseline answer on each row (``--baseline_column``), or a method whose rows are the
baseline of every other method on the same prompt (``--baseline_method vanilla``). LLM judgements are
appended to ``<stem>.judge_cache.jsonl`` as they finish, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from transformers.utils import logging

from ..io import atomic_write_json, atomic_write_jsonl, read_jsonl

logger = logging.get_logger(__name__)

DESCRIPTION = "Score generations: average reward, diversity, coherence and judge win-tie rate (paper section 5)."

ALL_METRICS = ("reward", "diversity", "coherence", "win_tie")


@dataclass
class EvaluateArguments:
    """Options of ``stackshape evaluate``."""

    generations: str = field(metadata={"help": "JSON Lines file of generations (one object per line)."})
    output_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Where <stem>.metrics.json and <stem>.per_sample.jsonl go (default: next to the input)."},
    )
    prompt_column: str = field(default="prompt", metadata={"help": "Column holding the prompt."})
    response_column: str = field(default="response", metadata={"help": "Column holding the response."})
    method_column: Optional[str] = field(
        default="method", metadata={"help": "Column naming the method; rows are scored per method (if present)."}
    )
    baseline_column: Optional[str] = field(
        default=None, metadata={"help": "Column with a baseline answer on each row, for the win-tie rate."}
    )
    baseline_method: Optional[str] = field(
        default=None, metadata={"help": "Method whose responses are every other method's baseline (same prompt)."}
    )
    metrics: str = field(
        default="auto",
        metadata={
            "help": "Comma list of reward,diversity,coherence,win_tie; 'auto' = diversity and coherence, plus reward "
            "when --reward is set and win_tie when --judge and a baseline are set."
        },
    )
    reward: Optional[str] = field(
        default=None,
        metadata={"help": "average_reward's reward: vader, length, demo, 'module:function' or a reward model id."},
    )
    embedder: Optional[str] = field(
        default=None,
        metadata={"help": "Sentence-transformers model id/folder for coherence (default: bundled MiniLM)."},
    )
    judge: Optional[str] = field(
        default=None,
        metadata={"help": "'llm' (an OpenAI-compatible endpoint) or a reward spec for a reward-model judge."},
    )
    judge_tolerance: float = field(default=0.0, metadata={"help": "Reward judge: tie when |r(a) - r(b)| <= this."})
    judge_base_url: Optional[str] = field(
        default=None, metadata={"help": "LLM judge endpoint, up to /v1 (default $STACKSHAPE_JUDGE_BASE_URL)."}
    )
    judge_model: Optional[str] = field(
        default=None, metadata={"help": "LLM judge model (default $STACKSHAPE_JUDGE_MODEL)."}
    )
    judge_max_tokens: int = field(default=256, metadata={"help": "LLM judge reply budget."})
    judge_timeout: float = field(default=60.0, metadata={"help": "LLM judge seconds per request."})
    judge_max_retries: int = field(default=4, metadata={"help": "LLM judge retries per comparison."})
    judge_concurrency: int = field(default=4, metadata={"help": "LLM judge requests in flight."})
    judge_api_error: str = field(
        default="tie",
        metadata={
            "help": "LLM judge: a comparison the endpoint could not answer counts as a tie (the paper's tally) "
            "or is dropped from the win-tie rate; either way it is reported as api_errors.",
            "choices": ["tie", "drop"],
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the LLM judge's answer-order swaps."})
    limit: Optional[int] = field(default=None, metadata={"help": "Score only the first N rows."})


DATACLASSES = (EvaluateArguments,)


def _resolve_metrics(args: EvaluateArguments) -> List[str]:
    has_baseline = bool(args.baseline_column or args.baseline_method)
    if args.metrics.strip() == "auto":
        chosen = ["diversity", "coherence"]
        if args.reward:
            chosen.insert(0, "reward")
        if args.judge and has_baseline:
            chosen.append("win_tie")
        return chosen
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in ALL_METRICS]
    if unknown or not chosen:
        choices = ", ".join(ALL_METRICS)
        raise ValueError(f"Unknown metric(s) {unknown or args.metrics!r}; choose from {choices} or 'auto'.")
    if "reward" in chosen and not args.reward:
        raise ValueError("The reward metric needs --reward (e.g. --reward vader or a reward model id).")
    if "win_tie" in chosen and not (args.judge and has_baseline):
        raise ValueError("The win_tie metric needs --judge and a baseline (--baseline_column or --baseline_method).")
    return chosen


def _load_rows(args: EvaluateArguments) -> List[dict]:
    path = Path(args.generations)
    if not path.is_file():
        raise FileNotFoundError(f"Generations file not found: {path}")
    rows = read_jsonl(path)
    if args.limit is not None:
        if args.limit < 0:
            raise ValueError(f"--limit must be >= 0, got {args.limit}.")
        rows = rows[: args.limit]
    if not rows:
        raise ValueError(f"{path}: no generations to evaluate (the file is empty).")
    required = [args.prompt_column, args.response_column] + ([args.baseline_column] if args.baseline_column else [])
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {number} is a {type(row).__name__}, not a JSON object.")
        for column in required:
            if not isinstance(row.get(column), str):
                found = "missing" if column not in row else f"a {type(row[column]).__name__}"
                raise ValueError(
                    f"{path}: record {number} has no string column {column!r} ({found}; columns: {sorted(row)}); "
                    "pass --prompt_column / --response_column / --baseline_column."
                )
    if args.baseline_method and not any(_method(r, args) == args.baseline_method for r in rows):
        methods = sorted({_method(r, args) for r in rows})
        raise ValueError(f"--baseline_method {args.baseline_method!r} has no rows; the methods are {methods}.")
    return rows


def _method(row: dict, args: EvaluateArguments) -> str:
    if args.method_column and args.method_column in row:
        return str(row[args.method_column])
    return "all"


def _make_judge(args: EvaluateArguments, cache_file: Path):
    from ..evaluation.judges import LLMJudge, RewardModelJudge
    from ._common import load_reward_spec

    if args.judge.strip().lower() == "llm":
        return LLMJudge(
            base_url=args.judge_base_url,
            model=args.judge_model,
            max_tokens=args.judge_max_tokens,
            timeout=args.judge_timeout,
            max_retries=args.judge_max_retries,
            concurrency=args.judge_concurrency,
            api_error=args.judge_api_error,
            seed=args.seed,
            cache_file=cache_file,
            show_progress=True,
        )
    return RewardModelJudge(load_reward_spec(args.judge), tolerance=args.judge_tolerance)


def evaluate_rows(rows: List[dict], args: EvaluateArguments, cache_file: Optional[Path] = None):
    """Score ``rows`` per method; returns ``(metrics_by_method, per_sample_rows)``."""
    from ..evaluation import scores
    from ..evaluation.embeddings import SentenceEmbedder
    from ._common import load_reward_spec

    chosen = _resolve_metrics(args)
    groups: "OrderedDict[str, List[int]]" = OrderedDict()
    for i, row in enumerate(rows):
        groups.setdefault(_method(row, args), []).append(i)
    samples = [dict(row) for row in rows]
    reward = load_reward_spec(args.reward) if "reward" in chosen else None
    embedder = SentenceEmbedder(args.embedder) if "coherence" in chosen else None
    judge = _make_judge(args, cache_file) if "win_tie" in chosen else None
    baseline_by_prompt: Dict[str, str] = {}
    if args.baseline_method:
        for i in groups.get(args.baseline_method, []):
            baseline_by_prompt.setdefault(rows[i][args.prompt_column], rows[i][args.response_column])

    results: Dict[str, dict] = OrderedDict()
    for method, idx in groups.items():
        prompts = [rows[i][args.prompt_column] for i in idx]
        responses = [rows[i][args.response_column] for i in idx]
        out: Dict[str, object] = {"count": len(idx)}
        per_sample: Dict[str, List] = {}
        if reward is not None:
            r = scores.reward_scores(prompts, responses, reward)
            out.update(average_reward=r["average_reward"], reward_std=r["reward_std"])
            per_sample["reward"] = r["rewards"]
        if "diversity" in chosen:
            d = scores.diversity_scores(responses)
            out.update({k: v for k, v in d.items() if k != "diversities"})
            per_sample["diversity"] = d["diversities"]
        if embedder is not None:
            c = scores.coherence_scores(prompts, responses, embedder)
            out.update(coherence=c["coherence"], coherence_std=c["coherence_std"])
            per_sample["coherence"] = c["coherences"]
        if judge is not None and method != args.baseline_method:
            pairs = [
                (k, rows[i][args.baseline_column] if args.baseline_column else baseline_by_prompt.get(prompts[k]))
                for k, i in enumerate(idx)
            ]
            pairs = [(k, b) for k, b in pairs if b is not None]
            if pairs:
                w = scores.win_tie_scores(
                    [prompts[k] for k, _ in pairs], [responses[k] for k, _ in pairs], [b for _, b in pairs], judge
                )
                judgements = w.pop("judgements")
                w["failed_indices"] = [idx[pairs[j][0]] for j in w["failed_indices"]]  # rows of the input file
                out["win_tie"] = w
                for (k, _), j in zip(pairs, judgements):
                    samples[idx[k]]["judgement"] = j
            else:
                logger.warning("Method %r: no row has a baseline answer for its prompt; no win-tie rate.", method)
        for name, values in per_sample.items():
            for k, value in zip(idx, values):
                samples[k][name] = value
        results[method] = out
    return results, samples


def run(args: EvaluateArguments) -> int:
    rows = _load_rows(args)
    source = Path(args.generations)
    out_dir = Path(args.output_dir) if args.output_dir else source.parent
    stem = source.stem
    metrics_file = out_dir / f"{stem}.metrics.json"
    samples_file = out_dir / f"{stem}.per_sample.jsonl"
    cache_file = out_dir / f"{stem}.judge_cache.jsonl"
    results, samples = evaluate_rows(rows, args, cache_file)
    report = {"generations": str(source), "settings": asdict(args), "methods": results}
    atomic_write_jsonl(samples_file, samples)
    atomic_write_json(metrics_file, report)
    print(json.dumps(results, indent=2, default=str))
    print(f"wrote {metrics_file} and {samples_file}")
    return 0
