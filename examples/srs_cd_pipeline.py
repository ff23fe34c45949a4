"""The whole SRS-CD pipeline (Wang et al., 2026, section 3; CD: Mudgal et al., 2023) on the bundled SmolLM2.

1. calibrate: N base-policy rollouts per prompt, scored by the reward, threshold m*(x) per prompt
   (``ThresholdCalibrator``);
2. train two Q-heads on those rollouts: one on SRS-shaped rewards ``B * sigmoid(alpha * (r - m*(x)))``, one on
   the raw rewards (vanilla CD);
3. decode held-out prompts with ``CDLogitsProcessor`` (each head, same lambda) and with plain greedy;
4. compare the average reward: each method's mean with its 95% bootstrap interval over the held-out prompts,
   and each CD method's paired difference to greedy (same prompts), so a gap inside the noise reads as such.

Small defaults run in a few minutes on 2 CPU cores; the paper's scale is ``--num_prompts 10000
--num_samples 10 --max_new_tokens 128 --epochs 15`` on a GPU. The q head sits on the base model itself, so
decoding reuses the base model's hidden states (one forward per step)::

    python examples/srs_cd_pipeline.py
    python examples/srs_cd_pipeline.py --reward_model OpenAssistant/reward-model-deberta-v3-large-v2 \\
        --prompts prompts.jsonl --num_prompts 2000 --num_samples 10 --max_new_tokens 128 --epochs 15
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from transformers import LogitsProcessorList

from hf_stackshape import (
    CDLogitsProcessor,
    QHeadModel,
    QHeadTrainer,
    QHeadTrainerConfig,
    ThresholdCalibrator,
    load_smollm2,
)
from hf_stackshape.calibration import CalibrationConfig
from hf_stackshape.evaluation.stats import bootstrap_ci, paired_bootstrap_ci
from hf_stackshape.utils.io import atomic_write_json
from hf_stackshape.rewards import load_reward

TOPICS = [
    "my weekend", "the weather", "a new job", "my neighbour", "learning to cook", "a long flight", "my old car",
    "a birthday party", "the city I live in", "studying for exams", "a rainy day", "my first marathon",
    "a trip to the beach", "moving house", "a visit to the dentist", "my garden", "a concert", "a team meeting",
    "a broken phone", "adopting a dog", "a family dinner", "a hiking trip", "the morning commute", "a new hobby",
]


def default_prompts(n: int):
    return [f"Tell me, in two sentences, how you feel about {TOPICS[i % len(TOPICS)]}." for i in range(n)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reward_model", default="vader", help="'vader' (default, offline) or an RM path / Hub id.")
    p.add_argument("--prompts", default=None, help="Prompt file (.jsonl/.txt/...); default: built-in prompts.")
    p.add_argument("--num_prompts", type=int, default=16, help="Calibration (training) prompts.")
    p.add_argument("--num_eval_prompts", type=int, default=8, help="Held-out prompts decoded with CD.")
    p.add_argument("--num_samples", type=int, default=6, help="Rollouts N per prompt (paper: 10).")
    p.add_argument("--max_new_tokens", type=int, default=32, help="Tokens per rollout and per decoded answer.")
    p.add_argument("--head_type", default="value", choices=["q", "value"], help="value: the paper's value MLP; q: vocabulary-wide.")
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--bound", type=float, default=15.0, help="B (paper's CD: 15).")
    p.add_argument("--alpha", type=float, default=1.0, help="alpha (paper's CD: 1).")
    p.add_argument("--beta", type=float, default=0.667, help="beta of the threshold (paper's CD: 0.667).")
    p.add_argument("--weight", type=float, default=1.5, help="CD lambda (paper: 1.5).")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--output_dir", default="runs/srs_cd")
    p.add_argument("--overwrite", action="store_true", help="Discard a calibration made with other settings.")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    model, tok = load_smollm2()
    reward = load_reward(args.reward_model)
    if args.prompts:
        from hf_stackshape.utils.io import load_prompts

        prompts = load_prompts(path=args.prompts, limit=args.num_prompts + args.num_eval_prompts)
    else:
        prompts = default_prompts(args.num_prompts + args.num_eval_prompts)
    train_prompts, eval_prompts = prompts[: args.num_prompts], prompts[args.num_prompts :]

    # 1. Calibrate m*(x) from N base rollouts per prompt (resumable: rerunning the same command reuses what was
    # written; other settings into the same --output_dir are refused, pass --overwrite to start over).
    calib_cfg = CalibrationConfig(
        num_samples=args.num_samples, max_new_tokens=args.max_new_tokens, beta=args.beta, bound=args.bound,
        safeguards="cd", output_dir=os.path.join(args.output_dir, "calibration"), overwrite=args.overwrite,
    )
    calibrator = ThresholdCalibrator(model, tok, reward, calib_cfg)
    rollouts = calibrator.calibrate(train_prompts)
    use_chat = calibrator.chat_template

    # 2. Train one head on SRS-shaped rewards and one on raw rewards (same everything else).
    heads = {}
    for transform in ("srs", "raw"):
        qhead = QHeadModel.from_backbone(model, head_type=args.head_type, seed=0)  # seeded initialisation
        # The paper's objective (last-token MSE + 1.0 x consistency), with a small run's epochs, lr and batch.
        config = QHeadTrainerConfig.from_preset(
            "paper", output_dir=os.path.join(args.output_dir, f"qhead-{transform}"), transform=transform, bound=args.bound,
            alpha=args.alpha, beta=args.beta, seed=0,
            num_train_epochs=args.epochs, learning_rate=args.learning_rate, per_device_train_batch_size=8,
            chat_template=use_chat, save_strategy="no", report_to="none", logging_steps=5,
            reward_model_name_or_path=args.reward_model, base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
        )
        start = time.perf_counter()
        trainer = QHeadTrainer(qhead, config, train_dataset=rollouts, processing_class=tok)
        summary = trainer.train()
        trainer.save_model(config.output_dir)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        curve = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}" if len(losses) > 1 else f"mean loss {summary.training_loss:.4f}"
        print(f"[{transform}] {trainer.state.global_step} steps in {time.perf_counter() - start:.1f}s; {curve}")
        heads[transform] = QHeadModel.from_pretrained(config.output_dir, backbone=model)

    # 3. Decode the held-out prompts: plain greedy, vanilla CD, SRS-CD.
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        if use_chat else p
        for p in eval_prompts
    ]
    inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not use_chat)

    def decode(processor=None):
        procs = LogitsProcessorList([processor] if processor is not None else [])
        with torch.inference_mode():
            out = model.generate(**inputs, logits_processor=procs, do_sample=False,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
        return tok.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    scores, results = {}, {}
    for name, head in [("greedy", None), ("cd-vanilla", heads["raw"]), ("cd-srs", heads["srs"])]:
        if head is None:
            responses = decode()
        else:
            # A processor hooks the base model's forward: `with` removes the hook when decoding is done.
            with CDLogitsProcessor(head, k=args.k, weight=args.weight, base_model=model) as processor:
                responses = decode(processor)
        scores[name] = reward.score(eval_prompts, responses).tolist()
        results[name] = bootstrap_ci(scores[name])
        if head is not None:
            results[name]["minus_greedy"] = paired_bootstrap_ci(scores[name], scores["greedy"])
        r = results[name]
        line = f"{name:>11}: average reward {r['mean']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        if head is not None:
            d = r["minus_greedy"]
            line += f"; minus greedy {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
        print(f"{line}   e.g. {responses[0][:60]!r}")
    print(f"(95% bootstrap intervals over {len(eval_prompts)} held-out prompts)")
    atomic_write_json(
        os.path.join(args.output_dir, "results.json"),
        {"settings": vars(args), "average_reward": results, "per_prompt_reward": scores},
    )
    return results


if __name__ == "__main__":
    main()
