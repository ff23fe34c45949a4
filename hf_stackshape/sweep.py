"""Sweeps over the guidance weight ``1/beta``, result tables, and the paper's Figure 2 plot.

For each method (``base``, ``args``, ``srs-args``, baselines, ``cd``, ``srs-cd``...) and each weight of the
grid, generate responses to the evaluation prompts, then measure (Wang et al., 2026, section 5):

* ``reward``: average guiding reward; ``gold_reward``: average of an independent gold reward, if given;
* ``diversity`` (``prod_{n=2..4} (1 - rep_n)``) and ``coherence`` (prompt/response embedding cosine);
* ``win_tie_vs_base`` and ``win_tie_vs_vanilla``: (wins + ties) / total through a judge, against the base
  policy and against the vanilla method of the same decoder at the same weight.

Every (method, weight) cell writes its generations to ``<output_dir>/generations/<cell>.jsonl`` atomically
when it finishes; a rerun skips finished cells (resume after an interrupt). The table is written as CSV
and JSON, and :func:`plot_sweep` draws reward and win-tie rate against ``1/beta`` (the paper's Figure 2).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm.auto import tqdm
from transformers.utils import logging

from .generation import Method, generate_responses, parse_method
from .io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl

logger = logging.get_logger(__name__)

__all__ = ["SweepConfig", "run_sweep", "plot_sweep", "write_table", "format_table"]


@dataclass
class SweepConfig:
    """Settings of a sweep over the guidance weight.

    Args:
        methods: method names (see :func:`hf_stackshape.generation.parse_method`); ``base`` is always added.
        weights: the grid of ``1/beta`` (the guidance weight ``lambda``).
        k: candidates per step for ARGS and CD.
        max_new_tokens, batch_size: generation settings (greedy decoding).
        judge_tolerance: a gold-reward difference within this is a tie.
    """

    methods: List[str] = field(
        default_factory=lambda: ["args", "srs-args"],
        metadata={"help": "Methods: args, srs-args, minmax-args, meanstd-args, meansoft-args, hard-args, cd, srs-cd."},
    )
    weights: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "Grid of 1/beta (guidance weight)."})
    k: int = field(default=10, metadata={"help": "Candidates per step (top-k of the base model)."})
    num_samples: int = field(default=8, metadata={"help": "Samples N per prompt of best-of-N methods (bon, soft-bon, srs-bon)."})
    max_new_tokens: int = field(default=48, metadata={"help": "Tokens per response (greedy)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    bound: Optional[float] = field(default=None, metadata={"help": "Reward bound B of shaped ARGS transforms (default 12)."})
    alpha: Optional[float] = field(default=None, metadata={"help": "SRS sigmoid sharpness for ARGS (default 1.5)."})
    judge_tolerance: float = field(default=0.0, metadata={"help": "Gold-reward difference counted as a tie."})

    def __post_init__(self):
        if not self.methods:
            raise ValueError("`methods` is empty; name at least one method, e.g. --methods args srs-args.")
        for m in self.methods:
            parse_method(m)  # raises a clear ValueError on a bad name
        if not self.weights:
            raise ValueError("`weights` is empty; give a grid of 1/beta values, e.g. --weights 0.5 1 2.")
        for w in self.weights:
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
                raise ValueError(f"Every weight (1/beta) must be a finite number >= 0, got {w!r}.")


def _cell_name(method: Method, weight: Optional[float]) -> str:
    return method.label if weight is None else f"{method.label}_w{weight:g}"


def run_sweep(
    model,
    tokenizer,
    prompts: Sequence[str],
    reward,
    config: SweepConfig,
    output_dir,
    gold_reward=None,
    judge=None,
    qheads=None,
    embedder=None,
    thresholds=None,
    show_progress: bool = True,
) -> List[Dict[str, object]]:
    """Run every method at every weight, evaluate, and write ``results.csv``/``results.json``.

    Args:
        reward: the guiding reward (ARGS) and the ``reward`` column.
        gold_reward (*optional*): an independent reward for the ``gold_reward`` column (and the default judge).
        judge (*optional*): a :class:`~hf_stackshape.evaluation.judges.Judge`; default a reward-model judge on
            the gold reward (or the guiding reward when no gold one is given).
        qheads (*optional*): ``{transform: QHeadModel}`` for CD methods.

    Returns:
        One dict per row of the table.
    """
    from .evaluation.embeddings import SentenceEmbedder
    from .evaluation.judges import RewardModelJudge
    from .evaluation.scores import coherence_scores, diversity_scores, reward_scores, win_tie_scores

    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts to sweep over.")
    out = Path(output_dir)
    (out / "generations").mkdir(parents=True, exist_ok=True)
    if judge is None:
        judge = RewardModelJudge(gold_reward if gold_reward is not None else reward, tolerance=config.judge_tolerance)
    if embedder is None:
        embedder = SentenceEmbedder()

    methods = [parse_method(m) for m in config.methods]
    cells = [(parse_method("base"), None)]
    cells += [(m, float(w)) for m in methods if m.decoder is not None for w in config.weights]
    # The vanilla method of each decoder is needed for win_tie_vs_vanilla.
    for m in methods:
        if m.decoder is not None and m.transform != "raw":
            vanilla = parse_method(m.vanilla)
            cells += [(vanilla, float(w)) for w in config.weights if (vanilla, float(w)) not in cells]

    generations: Dict[str, List[str]] = {}
    for method, weight in tqdm(cells, desc="sweep", disable=not show_progress):
        name = _cell_name(method, weight)
        path = out / "generations" / f"{name}.jsonl"
        if path.is_file():
            rows = read_jsonl(path)
            if len(rows) == len(prompts) and [r["prompt"] for r in rows] == prompts:
                generations[name] = [r["response"] for r in rows]
                continue
            logger.warning("Regenerating %s: the stored file does not match the prompts.", path)
        responses = generate_responses(
            model,
            tokenizer,
            prompts,
            method=method,
            reward=reward,
            qheads=qheads,
            weight=weight,
            k=config.k,
            bound=config.bound,
            alpha=config.alpha,
            thresholds=thresholds if method.transform == "srs" else None,
            num_samples=config.num_samples,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            show_progress=show_progress,
        )
        atomic_write_jsonl(
            path, [{"prompt": p, "response": r, "method": method.label, "weight": weight} for p, r in zip(prompts, responses)]
        )
        generations[name] = responses

    table: List[Dict[str, object]] = []
    base = generations["base"]
    for method, weight in cells:
        name = _cell_name(method, weight)
        responses = generations[name]
        row: Dict[str, object] = {"method": method.label, "decoder": method.decoder or "none", "weight": weight}
        row["diversity"] = diversity_scores(responses)["diversity"]
        row["coherence"] = coherence_scores(prompts, responses, embedder=embedder)["coherence"]
        row["reward"] = reward_scores(prompts, responses, reward)["average_reward"]
        if gold_reward is not None:
            row["gold_reward"] = reward_scores(prompts, responses, gold_reward)["average_reward"]
        if method.decoder is not None:
            row["win_tie_vs_base"] = win_tie_scores(prompts, responses, base, judge)["win_tie"]
            if method.transform != "raw":
                vanilla = generations[_cell_name(parse_method(method.vanilla), weight)]
                row["win_tie_vs_vanilla"] = win_tie_scores(prompts, responses, vanilla, judge)["win_tie"]
        table.append(row)
    write_table(table, out)
    return table


_COLUMNS = ["method", "decoder", "weight", "diversity", "coherence", "reward", "gold_reward", "win_tie_vs_base", "win_tie_vs_vanilla"]


def write_table(table: Sequence[Dict[str, object]], output_dir) -> Dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` atomically; return their paths."""
    out = Path(output_dir)
    columns = [c for c in _COLUMNS if any(c in row for row in table)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode("utf-8"))
    atomic_write_json(out / "results.json", list(table))
    return {"csv": out / "results.csv", "json": out / "results.json"}


def format_table(table: Sequence[Dict[str, object]]) -> str:
    """A plain-text table in the paper's layout (method, diversity, coherence, reward, gold, win-tie)."""
    columns = [c for c in _COLUMNS if c != "decoder" and any(c in row for row in table)]
    header = {"weight": "1/beta", "gold_reward": "gold", "win_tie_vs_base": "win-tie/base", "win_tie_vs_vanilla": "win-tie/vanilla"}
    cells = [[header.get(c, c) for c in columns]]
    for row in table:
        line = []
        for c in columns:
            v = row.get(c)
            if v is None:
                line.append("-")
            elif isinstance(v, float):
                line.append(f"{v:.3f}" if c != "weight" else f"{v:g}")
            else:
                line.append(str(v))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    rendered = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(rendered)


def plot_sweep(table: Sequence[Dict[str, object]], path, reward_key: Optional[str] = None, title: str = "") -> Path:
    """Figure 2 of the paper: average reward (left) and win-tie rate vs base (right) against ``1/beta``.

    The base policy is drawn as a horizontal line. Written atomically as PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if reward_key is None:
        reward_key = "gold_reward" if any("gold_reward" in r for r in table) else "reward"
    fig, (ax_r, ax_w) = plt.subplots(1, 2, figsize=(10, 4))
    methods = []
    for row in table:
        if row["weight"] is not None and row["method"] not in methods:
            methods.append(row["method"])
    for method in methods:
        rows = sorted((r for r in table if r["method"] == method), key=lambda r: r["weight"])
        xs = [r["weight"] for r in rows]
        style = "-o" if method.startswith("vanilla") else "-s"
        ax_r.plot(xs, [r[reward_key] for r in rows], style, label=method)
        ax_w.plot(xs, [r.get("win_tie_vs_base", float("nan")) for r in rows], style, label=method)
    for row in table:
        if row["method"] == "base":
            ax_r.axhline(row[reward_key], color="gray", linestyle="--", label="base")
    ax_w.axhline(0.5, color="gray", linestyle=":", linewidth=1)
    ax_r.set_xlabel("1/beta (guidance weight)")
    ax_r.set_ylabel("average gold reward" if reward_key == "gold_reward" else "average reward")
    ax_w.set_xlabel("1/beta (guidance weight)")
    ax_w.set_ylabel("win-tie rate vs base")
    ax_w.set_ylim(0, 1.05)
    for ax in (ax_r, ax_w):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def save_figure(fig, path, title: str = "") -> Path:
    """Title, lay out and close a matplotlib figure, and write it atomically as PNG; return the path."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
