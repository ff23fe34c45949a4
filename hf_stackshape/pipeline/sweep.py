"""Sweeps over the guidance weight ``1/beta``, result tables, and the paper's Figure 2 plot.

For each method (``base``, ``args``, ``srs-args``, baselines, ``cd``, ``srs-cd``...) and each weight of the
grid, generate responses to the evaluation prompts, then measure (Wang et al., 2026, section 5):

* ``reward``: average guiding reward; ``gold_reward``: average of an independent gold reward, if given;
* ``diversity`` (``prod_{n=2..4} (1 - rep_n)``) and ``coherence`` (prompt/response embedding cosine);
* ``win_tie_vs_base`` and ``win_tie_vs_vanilla``: (wins + ties) / total through a judge, against the base
  policy and against the vanilla method of the same decoder at the same weight.

Every number comes with its seeded 95% bootstrap confidence interval over prompts, and each shaped method
with the paired CI of its difference to vanilla at the same weight.

Every (method, weight) cell writes its generations, with the settings that made them, to
``<output_dir>/generations/<cell>.jsonl`` atomically when it finishes; a rerun reuses a cell only when its
settings and prompts match, inside a run whose manifest pins the model, tokenizer, reward and Q-heads
(:func:`hf_stackshape.utils.runs.open_run`). The table is written as CSV and JSON, and :func:`plot_sweep` draws
reward and win-tie rate against ``1/beta`` with error bars (the paper's Figure 2).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..utils.io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_bytes
from ..utils.plotting import save_figure
from ..core.decoding import DecodingSettings
from .generation import Method, generate_responses, parse_method

logger = logging.get_logger(__name__)

__all__ = ["SweepConfig", "run_sweep", "plan_cells", "run_cells", "score_cells", "score_cell", "plot_sweep", "write_table",
           "format_table"]


@dataclass
class SweepConfig:
    """Settings of a sweep over the guidance weight.

    Args:
        methods: method names (see :func:`hf_stackshape.pipeline.generation.parse_method`); ``base`` is always added.
        weights: the grid of ``1/beta`` (the guidance weight ``lambda``).
        k: candidates per step for ARGS and CD.
        max_new_tokens, batch_size: generation settings (greedy decoding).
        judge_tolerance: a gold-reward difference within this is a tie.
        seed: seed of the bootstrap confidence intervals and of sampling methods (best-of-N).
    """

    methods: List[str] = field(
        default_factory=lambda: ["args", "srs-args"],
        metadata={"help": "Methods: args, srs-args, minmax-args, meanstd-args, meansoft-args, hard-args, cd, srs-cd."},
    )
    weights: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "Grid of 1/beta (guidance weight)."})
    k: int = field(default=10, metadata={"help": "Candidates per step (top-k of the base model)."})
    num_samples: int = field(default=8, metadata={"help": "Samples N per prompt of best-of-N methods (bon, soft-bon, srs-bon)."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens per response (greedy; the authors' ARGS length)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    bound: Optional[float] = field(default=None, metadata={"help": "Reward bound B of shaped ARGS transforms (default 12)."})
    alpha: Optional[float] = field(default=None, metadata={"help": "SRS sigmoid sharpness for ARGS (default 1.5)."})
    judge_tolerance: float = field(default=0.0, metadata={"help": "Gold-reward difference counted as a tie."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap intervals (and of sampling methods)."})

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
        self.decoding_settings()  # the generation settings, validated with messages naming the value

    def decoding_settings(self, weight: Optional[float] = None) -> DecodingSettings:
        """The decoding settings of a cell at ``weight`` (:class:`~hf_stackshape.core.decoding.DecodingSettings`
        built from this config's fields of the same names: ``k``, ``bound``, ``alpha``, ``num_samples``,
        ``max_new_tokens``, ``batch_size``, ``seed``; greedy)."""
        return DecodingSettings.from_options(self, weight=weight)


def _cell_name(method: Method, weight: Optional[float]) -> str:
    return method.label if weight is None else f"{method.label}_w{weight:g}"


def _cell_settings(method: Method, weight: Optional[float], config: SweepConfig, thresholds=None) -> Dict[str, object]:
    """What makes a cell's generations: the method, its resolved decoder settings, the threshold source (per-step
    or a digest of the calibrated ``m*(x)``), the generation length and, for sampled (best-of-N) cells, N and
    the seed."""
    decoder = config.decoding_settings(weight).resolve(method)
    settings: Dict[str, object] = {"method": method.label, **decoder, "max_new_tokens": int(config.max_new_tokens)}
    if method.decoder == "args" and method.transform == "srs":
        if thresholds is None:
            settings["threshold_source"] = "per-step"
        else:
            values = json.dumps([round(float(t), 8) for t in thresholds]).encode("utf-8")
            settings["threshold_source"] = "calibrated:" + sha256_bytes(values)[:16]
    if method.decoder == "bon":
        # Best-of-N samples: the cell depends on the seed and N, so a cell made with another seed is redone,
        # never reused under a new label.
        settings["num_samples"] = int(config.num_samples)
        settings["seed"] = int(config.seed)
    return settings


def _best_of_n_cell(grid, cells, method, weight, model, tokenizer, reward, prompts, config, procs) -> List[str]:
    """A best-of-N cell's responses. Every best-of-N cell draws the same samples (same seed), so the first one
    samples and scores once for all of them (:func:`~hf_stackshape.bon.best_of_n_grid`, one batch of the
    single-process grid at a time, shared over the ranks) and fills ``grid``."""
    from ..bon import best_of_n_grid
    from ..utils.distributed import batch_grid

    if not grid:
        methods = sorted({m.label for m, _ in cells if m.decoder == "bon"})
        weights = sorted({float(w) for m, w in cells if m.decoder == "bon"})

        def one_batch(batch):
            out = best_of_n_grid(
                model, tokenizer, reward, [prompts[i] for i in batch], methods=methods, weights=weights, indices=batch,
                num_samples=config.num_samples, bound=config.bound, alpha=config.alpha, max_new_tokens=config.max_new_tokens,
                batch_size=len(batch), seed=config.seed, show_progress=False,
            )
            return {key: result.responses for key, result in out.items()}

        parts = procs.map(batch_grid(range(len(prompts)), config.batch_size), one_batch)
        grid.update({key: [r for part in parts for r in part[key]] for key in parts[0]})
    return grid[(method.label, float(weight))]


def _stored_cell(path: Path, prompts: List[str], settings: Dict[str, object]) -> Optional[List[str]]:
    """The responses of a finished cell whose prompts and settings match, else ``None`` (with the reason logged)."""
    if not path.is_file():
        return None
    rows = read_jsonl(path)
    if [r.get("prompt") if isinstance(r, dict) else None for r in rows] != prompts:
        logger.warning("Regenerating %s: it answers other prompts.", path)
        return None
    stored = {k: v for k, v in rows[0].items() if k not in ("id", "prompt", "response")}
    if stored != json.loads(json.dumps(settings)):
        changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        logger.warning("Regenerating %s: its settings differ (%s).", path, ", ".join(changed))
        return None
    return [r["response"] for r in rows]


def _sweep_fingerprint(model, tokenizer, reward, qheads) -> Dict[str, object]:
    """What every cell shares: the base model (weights, generation_config), tokenizer, guiding reward, Q-heads."""
    from ..rewards.adapters import reward_fingerprint
    from ..utils.runs import model_fingerprint, tokenizer_fingerprint

    return {
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "reward": reward_fingerprint(reward),
        "qheads": {t: model_fingerprint(q) for t, q in sorted((qheads or {}).items())},
    }


def _with_ci(row: Dict[str, object], name: str, out: Dict[str, object], key: str) -> None:
    row[name] = out[key]
    row[f"{name}_ci_low"] = out[f"{key}_ci_low"]
    row[f"{name}_ci_high"] = out[f"{key}_ci_high"]


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
    overwrite: bool = False,
    state=None,
) -> List[Dict[str, object]]:
    """Run every method at every weight, evaluate, and write ``results.csv``/``results.json``.

    Every number of the table comes with its seeded 95% bootstrap confidence interval over prompts
    (``<column>_ci_low`` / ``<column>_ci_high``); a shaped method's row also carries the paired bootstrap CI
    of its per-prompt difference to the vanilla method at the same weight (``reward_vs_vanilla``,
    ``gold_reward_vs_vanilla``), the comparison the paper makes.

    Resuming: ``output_dir`` is a run (:func:`hf_stackshape.utils.runs.open_run`) whose manifest holds what every
    cell shares (base model weights and ``generation_config``, tokenizer, guiding reward, Q-heads); a rerun
    with another of those stops with the differing keys (``overwrite=True`` starts over). A cell's file
    records its own settings (method, resolved weight, k, bound, alpha, beta, length): it is reused only when
    they and the prompts match, else regenerated. Adding weights or methods to the grid reuses the rest.

    Args:
        reward: the guiding reward (ARGS) and the ``reward`` column.
        gold_reward (*optional*): an independent reward for the ``gold_reward`` column (and the default judge).
        judge (*optional*): a :class:`~hf_stackshape.evaluation.judges.Judge`; default a reward-model judge on
            the gold reward (or the guiding reward when no gold one is given).
        qheads (*optional*): ``{transform: QHeadModel}`` for CD methods.
        overwrite (`bool`, *optional*, defaults to `False`): remove an earlier sweep in ``output_dir`` made with
            another model, tokenizer, reward or Q-heads, instead of refusing.
        state (`accelerate.PartialState`, *optional*): under ``torchrun`` / ``accelerate launch`` (default:
            ``torch.distributed`` when initialised), every cell's batches (those of one process: ``[0, B),
            [B, 2B), ...``) are shared over the ranks and gathered; rank 0 writes the cell files and scores the
            table, which every rank returns. Draws are keyed by the global prompt index, so the files and the
            table are those of one process.

    Returns:
        One dict per row of the table.
    """
    from ..evaluation.embeddings import SentenceEmbedder
    from ..evaluation.judges import RewardModelJudge
    from ..utils.distributed import Processes
    from ..utils.runs import open_run

    prompts = list(prompts)
    if not prompts:
        raise ValueError("No prompts to sweep over.")
    out = Path(output_dir)
    if judge is None:
        judge = RewardModelJudge(gold_reward if gold_reward is not None else reward, tolerance=config.judge_tolerance)
    if embedder is None:
        embedder = SentenceEmbedder()

    cells = plan_cells(config)
    fingerprint = _sweep_fingerprint(model, tokenizer, reward, qheads)
    with open_run(out, fingerprint, kind="sweep", overwrite=overwrite, state=state):
        procs = Processes(state)
        generations = run_cells(cells, model, tokenizer, prompts, reward, config, out, qheads=qheads,
                                thresholds=thresholds, procs=procs, show_progress=show_progress and procs.is_main)
        if not procs.is_main:
            return procs.broadcast(None)  # rank 0 scores the table (the metrics are cheap next to generation)
        table = score_cells(cells, generations, prompts, reward, config, judge, embedder, gold_reward=gold_reward)
        write_table(table, out)
        procs.broadcast(table)
    return table


Cell = Tuple[Method, Optional[float]]


def plan_cells(config: SweepConfig) -> List[Cell]:
    """The sweep's cells ``(method, weight)``, in the order they run: ``base`` (no weight), every guided method
    at every weight, then the vanilla method of each shaped one at every weight it lacks (the comparison's
    baseline, :func:`~hf_stackshape.evaluation.compare.compare_to_baseline`)."""
    methods = [parse_method(m) for m in config.methods]
    cells: List[Cell] = [(parse_method("base"), None)]
    cells += [(m, float(w)) for m in methods if m.decoder is not None for w in config.weights]
    # The vanilla method of each decoder is needed for win_tie_vs_vanilla.
    for m in methods:
        if m.decoder is not None and m.transform != "raw":
            vanilla = parse_method(m.vanilla)
            cells += [(vanilla, float(w)) for w in config.weights if (vanilla, float(w)) not in cells]
    return cells


def run_cells(cells: Sequence[Cell], model, tokenizer, prompts: List[str], reward, config: SweepConfig, output_dir,
              qheads=None, thresholds=None, procs=None, show_progress: bool = True) -> Dict[str, List[str]]:
    """Every cell's responses, by cell name: reused from ``<output_dir>/generations/<cell>.jsonl`` when its
    settings and prompts match, else generated (batches shared over ``procs``' ranks) and written atomically by
    the main process. Every rank returns the same responses."""
    from ..utils.distributed import Processes

    procs = procs if procs is not None else Processes(None)
    out = Path(output_dir)
    if procs.is_main:
        (out / "generations").mkdir(parents=True, exist_ok=True)
    procs.barrier()
    generations: Dict[str, List[str]] = {}
    bon_grid: Dict[tuple, object] = {}
    for method, weight in tqdm(cells, desc="sweep", disable=not show_progress):
        name = _cell_name(method, weight)
        path = out / "generations" / f"{name}.jsonl"
        settings = _cell_settings(method, weight, config, thresholds if method.transform == "srs" else None)
        stored = _stored_cell(path, prompts, settings)
        if stored is not None:
            generations[name] = stored
            continue
        if method.decoder == "bon":
            responses = _best_of_n_cell(bon_grid, cells, method, weight, model, tokenizer, reward, prompts, config, procs)
        else:
            responses = _generated_cell(method, weight, model, tokenizer, prompts, reward, config, qheads,
                                        thresholds if method.transform == "srs" else None, procs)
        if procs.is_main:
            atomic_write_jsonl(
                path,
                [{"id": i, "prompt": p, "response": r, **settings} for i, (p, r) in enumerate(zip(prompts, responses))],
            )
        generations[name] = responses
    return generations


def _generated_cell(method, weight, model, tokenizer, prompts, reward, config, qheads, thresholds, procs) -> List[str]:
    """A guided (ARGS / CD) cell's responses: the single-process batches ``[0, B), [B, 2B), ...`` shared over the
    ranks, each drawn with seeds keyed by its prompts' indices."""
    from ..utils.distributed import batch_grid

    def one_batch(batch):
        return generate_responses(
            model,
            tokenizer,
            [prompts[i] for i in batch],
            indices=batch,
            method=method,
            reward=reward,
            qheads=qheads,
            thresholds=None if thresholds is None else torch.as_tensor(thresholds)[batch],
            settings=config.decoding_settings(weight),
            show_progress=False,
        )

    parts = procs.map(batch_grid(range(len(prompts)), config.batch_size), one_batch)
    return [r for part in parts for r in part]


def score_cells(cells: Sequence[Cell], generations: Dict[str, List[str]], prompts: List[str], reward,
                config: SweepConfig, judge, embedder, gold_reward=None) -> List[Dict[str, object]]:
    """The table: one row per cell (:func:`score_cell`), raw-reward cells first, since a shaped cell's paired
    difference reads its vanilla cell's per-prompt scores."""
    table: List[Dict[str, object]] = []
    per_prompt: Dict[str, Dict[str, List[float]]] = {}
    for method, weight in sorted(cells, key=lambda cell: cell[0].decoder is not None and cell[0].transform != "raw"):
        table.append(score_cell(method, weight, generations, prompts, reward, config, judge, embedder, per_prompt,
                                gold_reward=gold_reward))
    return table


def score_cell(method: Method, weight: Optional[float], generations: Dict[str, List[str]], prompts: List[str], reward,
               config: SweepConfig, judge, embedder, per_prompt: Dict[str, Dict[str, List[float]]],
               gold_reward=None) -> Dict[str, object]:
    """One row of the table: diversity, coherence, reward (and gold reward) with their bootstrap CIs; for a guided
    method its win-tie rate against ``base``; for a shaped one its comparison with the vanilla method at the same
    weight (:func:`~hf_stackshape.evaluation.compare.compare_to_baseline`). Records the cell's per-prompt
    rewards in ``per_prompt``, where a shaped cell finds its vanilla cell's."""
    from ..evaluation.compare import compare_to_baseline
    from ..evaluation.scores import coherence_scores, diversity_scores, reward_scores

    stats = dict(seed=config.seed)
    name = _cell_name(method, weight)
    responses = generations[name]
    row: Dict[str, object] = {"method": method.label, "decoder": method.decoder or "none", "weight": weight}
    _with_ci(row, "diversity", diversity_scores(responses, **stats), "diversity")
    _with_ci(row, "coherence", coherence_scores(prompts, responses, embedder=embedder, **stats), "coherence")
    scored = {"reward": reward_scores(prompts, responses, reward, **stats)}
    if gold_reward is not None:
        scored["gold_reward"] = reward_scores(prompts, responses, gold_reward, **stats)
    for column, result in scored.items():
        _with_ci(row, column, result, "average_reward")
    per_prompt[name] = {column: result["rewards"] for column, result in scored.items()}
    if method.decoder is not None:
        row.update(compare_to_baseline({}, {}, prompts, responses, generations["base"], judge, **stats).columns("_vs_base"))
        if method.transform != "raw":
            vanilla_name = _cell_name(parse_method(method.vanilla), weight)
            vs_vanilla = compare_to_baseline(per_prompt[name], per_prompt[vanilla_name], prompts, responses,
                                             generations[vanilla_name], judge, **stats)
            row.update(vs_vanilla.columns("_vs_vanilla"))
    return row


_METRICS = ["diversity", "coherence", "reward", "gold_reward", "win_tie_vs_base", "win_tie_vs_vanilla",
            "reward_vs_vanilla", "gold_reward_vs_vanilla"]
_COLUMNS = ["method", "decoder", "weight"] + [f"{m}{s}" for m in _METRICS for s in ("", "_ci_low", "_ci_high")]


def write_table(table: Sequence[Dict[str, object]], output_dir) -> Dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` atomically (every metric with its CI columns); return their paths."""
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
    """A plain-text table in the paper's layout; each number with its 95% CI as ``mean [low, high]``."""
    header = {
        "weight": "1/beta",
        "gold_reward": "gold",
        "win_tie_vs_base": "win-tie/base",
        "win_tie_vs_vanilla": "win-tie/vanilla",
        "reward_vs_vanilla": "reward-vanilla",
        "gold_reward_vs_vanilla": "gold-vanilla",
    }
    columns = ["method", "weight"] + [m for m in _METRICS if any(m in row for row in table)]
    cells = [[header.get(c, c) for c in columns]]
    for row in table:
        line = []
        for c in columns:
            v = row.get(c)
            if v is None:
                line.append("-")
            elif c == "weight":
                line.append(f"{v:g}")
            elif isinstance(v, float):
                low, high = row.get(f"{c}_ci_low"), row.get(f"{c}_ci_high")
                ci = f" [{low:.2f},{high:.2f}]" if isinstance(low, float) and isinstance(high, float) else ""
                line.append(f"{v:.3f}{ci}")
            else:
                line.append(str(v))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    rendered = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    rendered.insert(1, "  ".join("-" * w for w in widths))
    rendered.append("(95% bootstrap CIs over prompts in brackets; x-vanilla: paired difference to vanilla at the same 1/beta)")
    return "\n".join(rendered)


def _error_bars(rows: Sequence[Dict[str, object]], key: str) -> List[List[float]]:
    """Asymmetric error bars ``[[mean - low], [high - mean]]`` from a column's CI (zero where it has none)."""
    lower, upper = [], []
    for r in rows:
        mean, low, high = r.get(key), r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
        ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, low, high))
        lower.append(mean - low if ok else 0.0)
        upper.append(high - mean if ok else 0.0)
    return [lower, upper]


#: Figure 2's panels: one column per decoding family, in this order.
_FAMILIES = (("args", "ARGS"), ("cd", "CD"), ("bon", "best-of-N"))


def _family(row: Dict[str, object]) -> Optional[str]:
    decoder = row.get("decoder")
    if decoder is None:
        try:
            decoder = parse_method(str(row["method"])).decoder
        except ValueError:
            return None
    return str(decoder) if decoder else None


def _method_style(method: str) -> Dict[str, object]:
    """Vanilla (raw reward) and SRS stand out; the paper's other baselines are thinner, dashed."""
    name = method.split("-")[0]
    if method == "bon":  # classic best-of-N (argmax): a baseline of its own next to soft-bon
        return {"color": "tab:green", "marker": "D", "linestyle": "-", "linewidth": 1.4}
    if name in ("vanilla", "args", "cd") or method == "soft-bon":
        return {"color": "tab:blue", "marker": "o", "linestyle": "-", "linewidth": 1.8}
    if name == "srs":
        return {"color": "tab:red", "marker": "s", "linestyle": "-", "linewidth": 1.8}
    return {"marker": "^", "linestyle": "--", "linewidth": 1.0, "alpha": 0.8}


def sweep_figure(table: Sequence[Dict[str, object]], reward_key: Optional[str] = None):
    """The matplotlib figure of :func:`plot_sweep` (not saved): a column per decoding family (ARGS, CD,
    best-of-N) present in ``table``, average reward on top and win-tie rate vs base below, against ``1/beta``;
    each family's methods side by side with their 95% CIs, the base policy as a band, the legend under the
    column, outside the data."""
    from ..utils._extras import needs

    matplotlib = needs("matplotlib", "The sweep's figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if reward_key is None:
        reward_key = "gold_reward" if any("gold_reward" in r for r in table) else "reward"
    guided = [r for r in table if r.get("weight") is not None and _family(r) is not None]
    families = [(key, label) for key, label in _FAMILIES if any(_family(r) == key for r in guided)]
    if not families:
        raise ValueError("The sweep table has no guided method (rows with a weight) to plot.")
    base = next((r for r in table if r.get("method") == "base"), None)
    fig, axes = plt.subplots(
        2, len(families), figsize=(4.2 * len(families), 7.0), sharex="col", squeeze=False
    )
    for col, (family, label) in enumerate(families):
        rows = [r for r in guided if _family(r) == family]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        weights = sorted({float(r["weight"]) for r in rows})
        gaps = [b - a for a, b in zip(weights, weights[1:])] or [1.0]
        # Side by side within a weight: the methods share at most 40% of the smallest gap, so no bar hides another.
        step = 0.4 * min(gaps) / max(1, len(methods))
        ax_r, ax_w = axes[0, col], axes[1, col]
        if base is not None and isinstance(base.get(reward_key), (int, float)):
            ax_r.axhline(base[reward_key], color="gray", linestyle="--", linewidth=1, label="base policy")
            low, high = base.get(f"{reward_key}_ci_low"), base.get(f"{reward_key}_ci_high")
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                ax_r.axhspan(low, high, color="gray", alpha=0.15, label="base 95% CI")
        ax_w.axhline(0.5, color="gray", linestyle=":", linewidth=1)
        for i, method in enumerate(methods):
            mrows = sorted((r for r in rows if r["method"] == method), key=lambda r: r["weight"])
            shift = (i - (len(methods) - 1) / 2) * step
            xs = [float(r["weight"]) + shift for r in mrows]
            style = _method_style(method)
            for ax, key in ((ax_r, reward_key), (ax_w, "win_tie_vs_base")):
                ys = [r.get(key, float("nan")) for r in mrows]
                ax.errorbar(xs, ys, yerr=_error_bars(mrows, key), capsize=2.5, label=method, **style)
        ax_r.set_title(label)
        ax_r.set_ylabel("average gold reward" if reward_key == "gold_reward" else "average reward")
        ax_w.set_ylabel("win-tie rate vs base")
        ax_w.set_ylim(0, 1.05)
        ax_w.set_xlabel("1/beta (guidance weight)")
        ax_w.set_xticks(weights)
        for ax in (ax_r, ax_w):
            ax.grid(alpha=0.3)
        handles, labels = ax_r.get_legend_handles_labels()
        ax_w.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    return fig


def plot_sweep(table: Sequence[Dict[str, object]], path, reward_key: Optional[str] = None, title: str = "") -> Path:
    """Figure 2 of the paper, one panel per method family: average reward (top) and win-tie rate vs base
    (bottom) against ``1/beta`` for ARGS, CD and best-of-N (the columns present), vanilla against SRS.

    Error bars are the 95% bootstrap CIs over prompts of the table (``<column>_ci_low`` / ``_ci_high``); the
    methods of a family sit side by side at each weight; the base policy is a dashed line with its interval
    shaded; legends sit under the panels. Written atomically as PNG (see :func:`sweep_figure`).
    """
    return save_figure(sweep_figure(table, reward_key), path, title)
