"""Train the demo reward model bundled in ``hf_stackshape/data/demo_rm`` (minutes on 2 free CPU cores).

Recipe (the proxy reward of the Stackelberg reward shaping demo, Wang et al. 2026, arXiv 2602.02572):

1. Sample ``--samples_per_prompt`` answers of the real SmolLM2-135M-Instruct to each bundled *train*
   prompt (chat template, temperature sampling, batched ``generate``). Answers are cached in a JSONL
   file written atomically after every batch, so an interrupted run resumes where it stopped.
2. Label them with VADER's compound sentiment (the independent gold judge) and form preference pairs
   within each prompt: chosen = the more positive answer; pairs closer than ``--min_margin`` are dropped.
   With ``--steered_samples N`` (default 1) SmolLM2 also answers each train prompt N times under a warm and
   under a cold tone-steering *system* prompt (:data:`STEERING_SYSTEM_PROMPTS`, used for sampling only,
   cached in ``steered_samples_{warm,cold}.jsonl``). These answers are labelled by VADER like the others
   (never by the steering tone) and paired, in the same plain ``[user, assistant]`` format, with the natural
   answers and each other (``--steered_pairs all``), which gives the RM pairs with wider sentiment gaps.
   Held-out prompts get no steered answers: evaluation is on natural answers only.
3. Hold out the pairs of ``--eval_fraction`` of the prompts; fine-tune a LoRA on SmolLM2 as an
   ``AutoModelForSequenceClassification`` (one logit, score head saved via ``modules_to_save``) with
   TRL's ``RewardTrainer``. Pairs are conversational (``[user, assistant]`` messages), so TRL applies the
   same chat template as :class:`hf_stackshape.rewards.HFRewardModel` at scoring time (checked below).
4. Report held-out pairwise accuracy and the Spearman correlation between reward and VADER on held-out
   answers, scored through :func:`hf_stackshape.assets.demo.load_demo_reward_model`, and save the
   adapter (a few MB) plus ``training_info.json`` with those numbers.

Run: ``python examples/train_demo_reward_model.py [--samples_per_prompt 4 --num_train_epochs 2 ...]``

Cost on 2 CPU cores: sampling 633 answers takes about 80 s on an idle machine (30-60 min when the cores
are shared with other jobs), the 338 steered answers about 3 min on 1 thread; training the default 1384
pairs (412 natural + 972 with a steered answer) for 1.5 epochs with LoRA on the last 16 layers about 10 min
on 1 thread.
On a busy machine pass ``--num_threads 1``: oversubscribed OpenMP threads made steps 10x slower there.
``--sample_only`` fills the answer cache (resumable) and ``--cached_only`` trains on what is cached.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser
from transformers.utils import logging

from hf_stackshape.assets.defaults import cache_root, load_smollm2, smollm2_path
from hf_stackshape.assets.demo import DEMO_RM_PATH, demo_prompt_records, load_demo_reward_model, vader_reward
from hf_stackshape.utils.io import atomic_write_json, atomic_write_jsonl, read_jsonl

BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
logger = logging.get_logger("train_demo_reward_model")


@dataclass
class DemoRMArguments:
    """Sizes of the demo reward model run."""

    samples_per_prompt: int = field(default=3, metadata={"help": "Answers sampled per train prompt (2-4)."})
    max_prompts: Optional[int] = field(
        default=None, metadata={"help": "Use only N train prompts (a seeded random subset, all categories)."}
    )
    max_new_tokens: int = field(default=40, metadata={"help": "Tokens per sampled answer."})
    temperature: float = field(default=0.95, metadata={"help": "Sampling temperature."})
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    min_margin: float = field(default=0.1, metadata={"help": "Drop pairs whose VADER compound differ by less."})
    eval_fraction: float = field(default=0.2, metadata={"help": "Fraction of prompts whose pairs are held out."})
    max_train_pairs: Optional[int] = field(
        default=None, metadata={"help": "Keep only the N training pairs with the largest VADER margins."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (attention projections)."})
    lora_last_layers: Optional[int] = field(
        default=16,
        metadata={"help": "LoRA only on the last N decoder layers (backward stops there: much cheaper on CPU)."},
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    num_train_epochs: float = field(default=1.5, metadata={"help": "Reward-model training epochs."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Learning rate."})
    train_batch_size: int = field(default=8, metadata={"help": "Pairs per optimisation step."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, the split and training."})
    samples_path: Optional[str] = field(
        default=None, metadata={"help": "Answer cache (default: <hf_stackshape cache>/demo_rm/samples.jsonl)."}
    )
    output_dir: str = field(default=str(DEMO_RM_PATH), metadata={"help": "Where the adapter is saved."})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads."})
    cached_only: bool = field(
        default=False, metadata={"help": "Sample nothing: train on the prompts already in the answer cache."}
    )
    sample_only: bool = field(default=False, metadata={"help": "Stop after sampling (fill the answer cache)."})
    steered_samples: int = field(
        default=1,
        metadata={
            "help": "Also sample N answers per train prompt under each tone-steering system prompt (warm and "
            "cold; used for sampling only, the RM never sees it); their VADER-labelled pairs join the "
            "natural ones. Held-out prompts get none: evaluation stays on natural answers."
        },
    )
    steered_pairs: str = field(
        default="all",
        metadata={
            "help": "Which pairs the steered answers add per train prompt: 'contrast' (steered vs steered) "
            "or 'all' (every pair of natural + steered answers not already a natural pair)."
        },
    )
    steered_samples_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Steered answer cache stem (default: <hf_stackshape cache>/demo_rm/"
            "steered_samples.jsonl); one file per tone, e.g. steered_samples_warm.jsonl."
        },
    )


# Tone-steering system prompts: used ONLY to sample contrastive answers. Pairs are labelled by VADER (never
# by the steering tone) and formatted with the plain prompt as the user turn, so the RM never sees these.
STEERING_SYSTEM_PROMPTS = {
    "warm": "You are a warm, upbeat and encouraging assistant. Answer kindly, with enthusiasm and optimism.",
    "cold": "You are a cold, gloomy and curt assistant. Answer bluntly and pessimistically, with no warmth.",
}


def sample_answers(
    args: DemoRMArguments,
    records: List[Dict[str, str]],
    path: Path,
    system: Optional[str] = None,
    num: Optional[int] = None,
    drop_missing: bool = True,
) -> Dict[str, List[str]]:
    """``{prompt id: [answers]}``; resumes from ``path`` and rewrites it atomically after each batch.

    ``system`` (a steering system prompt) is prepended for sampling only; ``num`` answers per prompt
    (default ``--samples_per_prompt``). With ``--cached_only`` nothing is sampled and unanswered prompts are
    removed from ``records`` in place (``drop_missing``) or left without answers.
    """
    num = args.samples_per_prompt if num is None else num
    cache = {row["id"]: row for row in read_jsonl(path)} if path.is_file() else {}
    key = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    if system is not None:
        key["system"] = system
    todo = [
        r
        for r in records
        if r["id"] not in cache
        or cache[r["id"]]["prompt"] != r["prompt"]
        or cache[r["id"]]["settings"] != key
        or len(cache[r["id"]]["answers"]) < num
    ]
    if todo and args.cached_only and not drop_missing:
        done = {r["id"] for r in records} - {r["id"] for r in todo}
        logger.warning("--cached_only: %d prompts have no cached answers in %s.", len(todo), path)
        return {i: cache[i]["answers"][:num] for i in done}
    if todo and args.cached_only:
        done = {r["id"] for r in records} - {r["id"] for r in todo}
        logger.warning("--cached_only: using the %d prompts already answered in %s.", len(done), path)
        records[:] = [r for r in records if r["id"] in done]
        todo = []
    if todo:
        model, tokenizer = load_smollm2()
        torch.manual_seed(args.seed)
        batches = range(0, len(todo), args.generation_batch_size)
        desc = "sampling SmolLM2 answers" + ("" if system is None else " (steered)")
        for start in tqdm(batches, desc=desc):
            batch = todo[start : start + args.generation_batch_size]
            prefix = [] if system is None else [{"role": "system", "content": system}]
            texts = [
                tokenizer.apply_chat_template(
                    prefix + [{"role": "user", "content": r["prompt"]}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                for r in batch
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=args.temperature,
                    top_p=1.0,
                    top_k=0,
                    max_new_tokens=args.max_new_tokens,
                    num_return_sequences=num,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, r in enumerate(batch):
                chunk = answers[i * num : (i + 1) * num]
                cache[r["id"]] = {
                    "id": r["id"],
                    "prompt": r["prompt"],
                    "settings": key,
                    "answers": [a.strip() for a in chunk],
                }
            atomic_write_jsonl(path, list(cache.values()))
    return {r["id"]: cache[r["id"]]["answers"][:num] for r in records}


def make_pairs(
    prompt: str, answers: List[str], scores: List[float], min_margin: float, keep=None
) -> List[dict]:
    """Conversational preference pairs (TRL implicit-prompt format), chosen = more positive VADER.

    ``keep(i, j)``, if given, selects which index pairs are considered.
    """
    pairs = []
    for i, j in itertools.combinations(range(len(answers)), 2):
        if keep is not None and not keep(i, j):
            continue
        if abs(scores[i] - scores[j]) < min_margin or answers[i] == answers[j]:
            continue
        hi, lo = (i, j) if scores[i] > scores[j] else (j, i)
        pairs.append(
            {
                "margin_vader": scores[hi] - scores[lo],
                "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answers[hi]}],
                "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answers[lo]}],
            }
        )
    return pairs


def check_layout(tokenizer, pair: dict) -> None:
    """The reward model must read at scoring time exactly the tokens TRL trained it on."""
    from trl.data_utils import _tokenize

    from hf_stackshape.rewards import HFRewardModel

    trained = _tokenize(tokenizer, pair["chosen"])["input_ids"]

    class _Cfg:  # HFRewardModel only needs the config of a one-logit model to format/encode
        num_labels, pad_token_id, max_position_embeddings = 1, tokenizer.pad_token_id, 8192

    class _Stub(torch.nn.Module):
        config = _Cfg()

    rm = HFRewardModel(_Stub(), tokenizer)
    user, assistant = pair["chosen"][0]["content"], pair["chosen"][1]["content"]
    scored = rm.encode([user], [assistant])["input_ids"][0].tolist()
    if scored != list(trained):
        raise RuntimeError(
            "HFRewardModel and TRL's RewardTrainer tokenise a pair differently; fix the formatting."
        )


def spearman(x: List[float], y: List[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def main(argv: Optional[List[str]] = None) -> int:
    (args,) = HfArgumentParser(DemoRMArguments).parse_args_into_dataclasses(args=argv)
    torch.set_num_threads(args.num_threads)
    t0 = time.time()
    # A seeded shuffle, so that any prefix (--max_prompts, or an interrupted sampling run) mixes categories.
    records = demo_prompt_records("train")
    random.Random(args.seed).shuffle(records)
    records = records[: args.max_prompts]
    default_samples = cache_root() / "demo_rm" / "samples.jsonl"
    samples_path = Path(args.samples_path) if args.samples_path else default_samples
    answers = sample_answers(args, records, samples_path)

    # Held-out split by prompt (unchanged by the steering option, so numbers stay comparable).
    rng = random.Random(args.seed)
    ids = [r["id"] for r in records]
    rng.shuffle(ids)
    n_eval = max(1, round(args.eval_fraction * len(ids)))
    eval_ids = set(ids[:n_eval])

    if args.steered_pairs not in ("contrast", "all"):
        raise ValueError(f"--steered_pairs must be 'contrast' or 'all', got {args.steered_pairs!r}.")
    steered: Dict[str, List[str]] = {}
    if args.steered_samples > 0:
        steered_path = Path(args.steered_samples_path or default_samples.with_name("steered_samples.jsonl"))
        train_records = [r for r in records if r["id"] not in eval_ids]  # held-out prompts: natural only
        for tone, system in STEERING_SYSTEM_PROMPTS.items():
            tone_path = steered_path.with_name(f"{steered_path.stem}_{tone}{steered_path.suffix}")
            got = sample_answers(
                args, train_records, tone_path, system, args.steered_samples, drop_missing=False
            )
            for i, outs in got.items():
                steered.setdefault(i, []).extend(outs)
    t_sample = time.time() - t0
    if args.sample_only:
        print(f"sampled answers for {len(answers)} prompts in {t_sample:.0f} s -> {samples_path}")
        return 0

    gold = vader_reward()
    train_pairs, eval_pairs, eval_answers = [], [], []
    n_natural_pairs = 0
    for r in records:
        outs = answers[r["id"]]
        scores = gold([r["prompt"]] * len(outs), outs).tolist()
        pairs = make_pairs(r["prompt"], outs, scores, args.min_margin)
        if r["id"] in eval_ids:
            eval_pairs += pairs
            eval_answers += [(r["prompt"], a, s) for a, s in zip(outs, scores)]
            continue
        train_pairs += pairs
        n_natural_pairs += len(pairs)
        extra = steered.get(r["id"], [])
        if extra:
            # Natural pairs are already in; add pairs touching a steered answer (or only steered-vs-steered).
            n = len(outs)
            both = outs + extra
            extra_scores = gold([r["prompt"]] * len(extra), extra).tolist()
            if args.steered_pairs == "contrast":
                keep = lambda i, j, n=n: i >= n and j >= n  # noqa: E731
            else:
                keep = lambda i, j, n=n: j >= n  # noqa: E731
            train_pairs += make_pairs(r["prompt"], both, scores + extra_scores, args.min_margin, keep)
    if steered:
        rng.shuffle(train_pairs)  # mix contrastive and natural pairs
    if args.max_train_pairs is not None and len(train_pairs) > args.max_train_pairs:
        train_pairs = sorted(train_pairs, key=lambda p: -p["margin_vader"])[: args.max_train_pairs]
        rng.shuffle(train_pairs)
    print(
        f"pairs: {len(train_pairs)} train ({n_natural_pairs} natural, {len(train_pairs) - n_natural_pairs} "
        f"with steered answers), {len(eval_pairs)} held out ({len(eval_ids)} prompts)"
    )

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    base_path = smollm2_path()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    check_layout(tokenizer, train_pairs[0])
    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=1, dtype=torch.float32, pad_token_id=tokenizer.pad_token_id
    )
    n_layers = model.config.num_hidden_layers
    layers = None
    if args.lora_last_layers is not None:
        if not 1 <= args.lora_last_layers <= n_layers:
            raise ValueError(f"--lora_last_layers must be in [1, {n_layers}], got {args.lora_last_layers}.")
        layers = list(range(n_layers - args.lora_last_layers, n_layers))
    peft_config = LoraConfig(
        task_type="SEQ_CLS",
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        layers_to_transform=layers,
        modules_to_save=["score"],
    )
    work = Path(tempfile.mkdtemp(prefix="demo_rm_"))
    config = RewardConfig(
        output_dir=str(work / "trainer"),
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.train_batch_size,
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        max_length=256,
        seed=args.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        gradient_checkpointing=False,  # LoRA on a 135M model fits easily; recomputation only costs CPU time
    )
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list([{k: p[k] for k in ("chosen", "rejected")} for p in train_pairs]),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train()
    t_train = time.time() - t0 - t_sample

    # Save to a temporary sibling first; the bundled folder is replaced only by a complete adapter.
    out_dir = Path(args.output_dir)
    staging = work / "adapter"
    trainer.model.save_pretrained(staging)
    cfg_path = staging / "adapter_config.json"
    adapter_cfg = json.loads(cfg_path.read_text())
    adapter_cfg["base_model_name_or_path"] = BASE_MODEL_ID  # portable; loaders use smollm2_path()
    atomic_write_json(cfg_path, adapter_cfg)

    # Scored through the public loader, exactly as the demo will use it; each answer once.
    rm = load_demo_reward_model(staging, batch_size=16)
    ans_scores = rm.score([a[0] for a in eval_answers], [a[1] for a in eval_answers]).tolist()
    by_pair = {(a[0], a[1]): s for a, s in zip(eval_answers, ans_scores)}

    def reward_of(messages):
        return by_pair[(messages[0]["content"], messages[1]["content"])]

    wins = [reward_of(p["chosen"]) > reward_of(p["rejected"]) for p in eval_pairs]
    accuracy = sum(wins) / len(wins) if wins else float("nan")
    rho = spearman(ans_scores, [a[2] for a in eval_answers])
    info = {
        "base_model": BASE_MODEL_ID,
        "gold_judge": "VADER compound (vaderSentiment)",
        "train_prompts": len(records) - len(eval_ids),
        "heldout_prompts": len(eval_ids),
        "train_pairs": len(train_pairs),
        "train_pairs_natural": n_natural_pairs,
        "train_pairs_with_steered_answers": len(train_pairs) - n_natural_pairs,
        "steering_system_prompts": STEERING_SYSTEM_PROMPTS if steered else None,
        "heldout_pairs": len(eval_pairs),
        "heldout_pairwise_accuracy": round(accuracy, 4),
        "heldout_spearman_vs_vader": round(rho, 4),
        "heldout_answers": len(eval_answers),
        "sampling_seconds": round(t_sample, 1),
        "training_seconds": round(t_train, 1),
        "total_seconds": round(time.time() - t0, 1),
        "args": {
            k: v
            for k, v in asdict(args).items()
            if k not in ("samples_path", "steered_samples_path", "output_dir")
        },
    }
    atomic_write_json(staging / "training_info.json", info)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "training_info.json"):
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(work, ignore_errors=True)
    size = (out_dir / "adapter_model.safetensors").stat().st_size
    print(json.dumps(info, indent=2))
    print(f"adapter saved to {out_dir} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
