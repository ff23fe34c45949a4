"""``stackshape evaluate``: score generation files with the metrics of Wang et al. (2026), section 5.

Input: one or more JSON Lines files of generations (``prompt`` and ``response`` columns; the rows of
``stackshape generate`` also carry the settings that made them). Rows are grouped by their **full settings**
(every column except id, prompt and response: method, weight, k, bound, model, reward, seed, ...), so two runs
of one method with different weights are never mixed; the report names each group by the settings that tell
it apart and prints which rows it compares.

Every number comes with a seeded 95% bootstrap confidence interval over prompts
(:func:`hf_stackshape.evaluation.stats.bootstrap_ci`). Against a baseline, each group also gets the **paired**
bootstrap CI of the per-prompt difference of every metric (:func:`~hf_stackshape.evaluation.stats.paired_bootstrap_ci`)
and the judge's win-tie rate. The baseline is a file (``--baseline_file``), a group (``--baseline_method``,
narrowed by ``--baseline_weight`` when the method ran at several weights), or a column holding a baseline
answer on each row (``--baseline_column``). A win-tie rate needs a judge: ``--judge llm`` (an OpenAI-compatible
endpoint, the paper's protocol) or a reward (``--judge vader``); without ``--judge`` the ``--reward`` judges
(said in the report), and with neither, asking for win_tie is an error.

Output: ``<name>.metrics.json`` (``--json`` prints it) and ``<name>.per_sample.jsonl`` (every input row with
its group and per-sample scores), written atomically; LLM judgements go to ``<name>.judge_cache.jsonl`` as
they finish, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from ..evaluation.report import format_report
from ..utils.io import atomic_write_json, atomic_write_jsonl, read_jsonl
from ._common import TRUST_REMOTE_CODE_HELP

DESCRIPTION = "Score generations: average reward, diversity, coherence and judge win-tie rate, with 95% bootstrap CIs."

#: ``--preset paper``: the paper's diversity definition and judge protocol (see :mod:`hf_stackshape.cli`).
PRESET_COMPONENTS = ("metrics", "judge")

ALL_METRICS = ("reward", "diversity", "coherence", "win_tie")

@dataclass
class EvaluateArguments:
    """Options of ``stackshape evaluate``."""

    generations: List[str] = field(
        metadata={"help": "One or more JSON Lines files of generations (one object per line); rows are grouped by settings."}
    )
    baseline_file: Optional[str] = field(
        default=None, metadata={"help": "A generations file whose rows are the baseline of every group (same prompt)."}
    )
    baseline_method: Optional[str] = field(
        default=None, metadata={"help": "The group of this method is every other group's baseline (same prompt)."}
    )
    baseline_weight: Optional[float] = field(
        default=None, metadata={"help": "With --baseline_method: the weight of the baseline group, when it ran at several."}
    )
    baseline_column: Optional[str] = field(
        default=None, metadata={"help": "Column with a baseline answer on each row, for the win-tie rate."}
    )
    metrics: str = field(
        default="auto",
        metadata={
            "help": "Comma list of reward,diversity,coherence,win_tie; 'auto' = diversity and coherence, plus reward "
            "when --reward is set and win_tie when a baseline is set."
        },
    )
    reward: Optional[str] = field(
        default=None,
        metadata={"help": "average_reward's reward: 'vader', 'length', 'demo', 'module:function' or a reward model id."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": TRUST_REMOTE_CODE_HELP})
    reward_batch_size: int = field(
        default=16, metadata={"help": "Pairs per reward-model forward pass (under torchrun, batches go to the ranks)."}
    )
    judge: Optional[str] = field(
        default=None,
        metadata={
            "help": "'llm' (an OpenAI-compatible endpoint) or a reward spec for a reward-model judge "
            "(default: --reward, when a baseline is set)."
        },
    )
    diversity: str = field(
        default="paper",
        metadata={"help": "'paper' (the authors' metrics script) or 'ours' (whitespace words).", "choices": ["paper", "ours"]},
    )
    embedder: Optional[str] = field(
        default=None,
        metadata={"help": "Sentence-transformers model id/folder for coherence (default: the bundled MiniLM)."},
    )
    output_dir: Optional[str] = field(
        default=None, metadata={"help": "Where the report files go (default: next to the first generations file)."}
    )
    output_name: Optional[str] = field(
        default=None,
        metadata={"help": "Report file name stem (default: the generations file's stem, or 'evaluation' for several)."},
    )
    json: bool = field(default=False, metadata={"help": "Print the JSON report instead of the table."})
    prompt_column: str = field(default="prompt", metadata={"help": "Column holding the prompt."})
    response_column: str = field(default="response", metadata={"help": "Column holding the response."})
    method_column: Optional[str] = field(default="method", metadata={"help": "Column naming the method."})
    confidence: float = field(default=0.95, metadata={"help": "Coverage of the bootstrap confidence intervals."})
    judge_tolerance: float = field(default=0.0, metadata={"help": "Reward judge: tie when |r(a) - r(b)| <= this."})
    judge_base_url: Optional[str] = field(
        default=None, metadata={"help": "LLM judge endpoint, up to /v1 (default: $STACKSHAPE_JUDGE_BASE_URL)."}
    )
    judge_model: Optional[str] = field(
        default=None, metadata={"help": "LLM judge model (default: $STACKSHAPE_JUDGE_MODEL)."}
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
    judge_score_parser: str = field(
        default="ours",
        metadata={
            "help": "LLM judge reply parser: 'ours' (two 1-10 scores on the first non-empty line, commas and markdown "
            "allowed) or 'paper' (the authors' gpt4-eval.py: any two floats split on single spaces).",
            "choices": ["ours", "paper"],
        },
    )
    judge_strip_answers: bool = field(
        default=False,
        metadata={"help": "LLM judge: strip blank space (and a copied prompt) around each answer, as the authors did."},
    )
    judge_template_file: Optional[str] = field(
        default=None,
        metadata={"help": "LLM judge: a text file with the user message template ({question}, {answer_1}, "
                  "{answer_2}; or the authors' {answer1}, {answer2})."},
    )
    judge_system_prompt_file: Optional[str] = field(
        default=None, metadata={"help": "LLM judge: a text file with the instructions (system message)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap resampling and of the LLM judge's order swaps."})
    limit: Optional[int] = field(default=None, metadata={"help": "Score only the first N rows of each file."})

    def __post_init__(self):
        if isinstance(self.generations, str):
            self.generations = [self.generations]
        if not self.generations:
            raise ValueError("Pass at least one generations file: --generations FILE [FILE ...].")
        baselines = [name for name in ("baseline_file", "baseline_method", "baseline_column") if getattr(self, name)]
        if len(baselines) > 1:
            raise ValueError(f"Pass one baseline, got {', '.join('--' + b for b in baselines)}.")
        if self.baseline_weight is not None and not self.baseline_method:
            raise ValueError("--baseline_weight narrows --baseline_method; pass --baseline_method too.")
        if not (0.0 < float(self.confidence) < 1.0):
            raise ValueError(f"--confidence must be in (0, 1), got {self.confidence!r}.")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"--limit must be >= 0, got {self.limit}.")

    @property
    def has_baseline(self) -> bool:
        return bool(self.baseline_file or self.baseline_method or self.baseline_column)

    @property
    def judge_spec(self) -> Optional[str]:
        """The judge actually used: ``--judge``, else ``--reward`` (stated in the report)."""
        return self.judge or self.reward


DATACLASSES = (EvaluateArguments,)


def _resolve_metrics(args: EvaluateArguments) -> List[str]:
    if args.metrics.strip() == "auto":
        chosen = ["diversity", "coherence"]
        if args.reward:
            chosen.insert(0, "reward")
        if args.has_baseline:
            chosen.append("win_tie")
    else:
        chosen = [m.strip() for m in args.metrics.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in ALL_METRICS]
        if unknown or not chosen:
            choices = ", ".join(ALL_METRICS)
            raise ValueError(f"Unknown metric(s) {unknown or args.metrics!r}; choose from {choices} or 'auto'.")
    if "reward" in chosen and not args.reward:
        raise ValueError("The reward metric needs --reward (e.g. --reward vader or a reward model id).")
    if "win_tie" in chosen:
        if not args.has_baseline:
            raise ValueError(
                "The win_tie metric needs a baseline: --baseline_file, --baseline_method or --baseline_column."
            )
        if not args.judge_spec:
            raise ValueError(
                "A win-tie rate needs a judge and none was given: pass --judge llm (an OpenAI-compatible endpoint), "
                "--judge <reward> (e.g. --judge vader), or --reward (then the reward judges); or leave win_tie out "
                "of --metrics."
            )
    return chosen


def _check_rows(rows: List[Any], path: Path, args: EvaluateArguments, baseline: bool = False) -> List[dict]:
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        raise ValueError(f"{path}: no generations to evaluate (the file is empty).")
    required = [args.prompt_column, args.response_column]
    if args.baseline_column and not baseline:
        required.append(args.baseline_column)
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
    return rows


def _read(path_text: str, args: EvaluateArguments, baseline: bool = False) -> List[dict]:
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"Generations file not found: {path}")
    # Hand-written files often lack the last newline: keep their last line.
    return _check_rows(read_jsonl(path, complete_lines_only=False), path, args, baseline)


def _make_judge(args: EvaluateArguments, cache_file: Path, state=None):
    from ..evaluation.judges import LLMJudge, RewardModelJudge
    from ..rewards.adapters import ShardedReward
    from ..utils.distributed import launch_device
    from ._common import load_reward_spec

    if args.judge_spec.strip().lower() == "llm":
        if state is not None and state.num_processes > 1:
            raise ValueError(
                f"--judge llm under a {state.num_processes}-process launch would send every comparison from every "
                "rank; run `stackshape evaluate --judge llm` as one process (the endpoint does the work)."
            )
        return LLMJudge(
            base_url=args.judge_base_url,
            model=args.judge_model,
            max_tokens=args.judge_max_tokens,
            timeout=args.judge_timeout,
            max_retries=args.judge_max_retries,
            concurrency=args.judge_concurrency,
            api_error=args.judge_api_error,
            score_parser=args.judge_score_parser,
            strip_answers=args.judge_strip_answers,
            template_file=args.judge_template_file,
            system_prompt_file=args.judge_system_prompt_file,
            seed=args.seed,
            cache_file=cache_file,
            show_progress=True,
        )
    reward = load_reward_spec(args.judge_spec, device=launch_device(state), batch_size=args.reward_batch_size,
                              trust_remote_code=args.trust_remote_code)
    return RewardModelJudge(ShardedReward(reward, state), tolerance=args.judge_tolerance)


def _columns(args: EvaluateArguments):
    from ..evaluation.report import Columns

    return Columns(prompt=args.prompt_column, response=args.response_column, method=args.method_column,
                   baseline=args.baseline_column)


def _make_scorer(chosen: List[str], args: EvaluateArguments, state=None):
    """The :class:`~hf_stackshape.evaluation.report.Scorer` of the chosen metrics (the reward's batches shared
    over the ranks under ``torchrun``)."""
    from ..evaluation.embeddings import SentenceEmbedder
    from ..evaluation.report import Scorer
    from ..rewards.adapters import ShardedReward
    from ..utils.distributed import launch_device
    from ._common import load_reward_spec

    reward = None
    if "reward" in chosen:
        reward = ShardedReward(load_reward_spec(args.reward, device=launch_device(state), batch_size=args.reward_batch_size,
                                                trust_remote_code=args.trust_remote_code), state)
    embedder = SentenceEmbedder(args.embedder) if "coherence" in chosen else None
    return Scorer(reward=reward, diversity=args.diversity if "diversity" in chosen else None, embedder=embedder,
                  confidence=args.confidence, seed=args.seed)


def _baseline(rows: List[dict], groups, args: EvaluateArguments, baseline_rows=None):
    """The baseline the arguments name: a group (``--baseline_method``), a file, a column, or none."""
    from ..evaluation import report

    if args.baseline_method:
        return report.baseline_from_group(rows, groups, args.baseline_method, args.baseline_weight)
    if baseline_rows is not None:
        return report.baseline_from_rows(baseline_rows, args.baseline_file, _columns(args))
    if args.baseline_column:
        return report.baseline_from_column(args.baseline_column, args.generations)
    return None


def evaluate_rows(rows: List[dict], args: EvaluateArguments, cache_file: Optional[Path] = None, baseline_rows=None,
                  state=None):
    """Score ``rows`` per settings group; returns ``(report_groups, per_sample_rows, baseline_info)``.

    ``rows`` carry a ``_file`` key (their source); ``baseline_rows`` are the rows of ``--baseline_file``. Under
    ``torchrun`` (``state``), reward and reward-judge scoring is shared over the ranks (:class:`ShardedReward`);
    every rank returns the same result. The work is :func:`hf_stackshape.evaluation.report.evaluate_groups`'s.
    """
    from ..evaluation.report import evaluate_groups, group_rows

    chosen = _resolve_metrics(args)
    groups = group_rows(rows, _columns(args))
    scorer = _make_scorer(chosen, args, state)
    judge = _make_judge(args, cache_file, state) if "win_tie" in chosen else None
    judge_label = None
    if judge is not None:
        judge_label = args.judge_spec if args.judge else f"{args.judge_spec} (the --reward; pass --judge to change)"
    return evaluate_groups(rows, groups, scorer, _baseline(rows, groups, args, baseline_rows), judge=judge,
                           judge_label=judge_label, columns=_columns(args), confidence=args.confidence, seed=args.seed)


def run(args: EvaluateArguments) -> int:
    rows: List[dict] = []
    for path in args.generations:
        rows += [dict(row, _file=path) for row in _read(path, args)]
    baseline_rows = _read(args.baseline_file, args, baseline=True) if args.baseline_file else None
    first = Path(args.generations[0])
    out_dir = Path(args.output_dir) if args.output_dir else first.parent
    name = args.output_name or (first.stem if len(args.generations) == 1 else "evaluation")
    metrics_file = out_dir / f"{name}.metrics.json"
    samples_file = out_dir / f"{name}.per_sample.jsonl"
    cache_file = out_dir / f"{name}.judge_cache.jsonl"
    from ..utils.distributed import launch_state

    state = launch_state()  # torchrun / accelerate launch: reward scoring shared over the ranks
    results, samples, info = evaluate_rows(rows, args, cache_file, baseline_rows, state=state)
    if state is not None and not state.is_main_process:
        return 0
    report = {
        "generations": list(args.generations),
        "baseline": info or None,
        "confidence": args.confidence,
        "settings": asdict(args),
        "methods": results,
    }
    atomic_write_jsonl(samples_file, samples)
    atomic_write_json(metrics_file, report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(results, info))
        print(f"wrote {metrics_file} and {samples_file}")
    return 0
