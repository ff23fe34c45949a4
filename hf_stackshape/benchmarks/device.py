"""``stackshape bench device``: the device check -- every method at realistic model shapes, time and memory.

Builds random-weight models from configs alone (nothing to download): a 1B-class (Llama-3.2-1B) and an 8B-class
(Llama-3.1-8B) shape in bf16, each as the policy (``LlamaForCausalLM``) and as the reward model (the same shape
with a one-output sequence-classification head, as Skywork-Reward-Llama-3.1-8B). The paper's setting (Wang et
al., 2026) is an 8B policy and an 8B reward model in bf16. Per shape, method and batch size (1 and 8 prompts) it
times a greedy generation of exactly ``max_new_tokens`` tokens (``min_new_tokens == max_new_tokens``) and
reports:

* ``ms_per_token``: wall time / new tokens (per decoding step; the batch decodes its rows together);
* ``ratio_to_greedy``: time / time of plain greedy ``generate`` at the same batch size;
* ``peak_memory_mib``: the peak during that run (``torch.cuda.max_memory_allocated`` on CUDA, peak RSS on CPU),
  models included;
* for ARGS: the reward model's KV cache per generation row (``rm_cache_bytes_per_row``) at the end.

Methods: ``greedy``; ``args`` (ARGS, Khanov et al. 2024: raw rewards, k candidates, the cached fast path);
``srs_args`` (SRS-ARGS: Stackelberg-shaped rewards); ``cd_value`` (CD, Mudgal et al. 2023, a value head on a
backbone of the policy's size: the policy's own weights, run in a second cached pass, k candidates);
``cd_q`` (a q head on the policy's own hidden states); ``bon`` and ``srs_bon`` (best-of-N, N samples per prompt,
argmax of the raw reward / SRS soft selection: sampling, reward scoring and selection).

Then ``args_fast_equals_naive``: on the smallest shape in float32, ARGS's cached fast path against the naive
loop that re-runs the reward model on every full candidate sequence (batch 1), token for token.

Tokens outside the tokenizer (the shapes keep Llama 3's 128,256-row vocabulary) and special tokens other than
EOS are suppressed for every method alike, so random weights decode text the reward model can read. The
tokenizer: ``--tokenizer DIR``, else ``$TOKENIZER_DIR`` / ``$STACKSHAPE_TEST_TOKENIZER``, else the cached
SmolLM2 tokenizer when it is on disk, else a byte-level tokenizer built in memory (256 bytes + 3 chat tokens).
Nothing is downloaded. ``--device cpu --tiny`` runs a tiny shape in seconds (CI: 4 tokens, batches 1 and 2,
N=2); the full check is sized to
finish well under 8 minutes on one H100/H200. ``python -m hf_stackshape.benchmarks.device`` runs it too.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .args import BENCH_PROMPTS  # the same eight prompts as bench args

DESCRIPTION = "The device check: every method at 1B- and 8B-class Llama shapes in bf16 (random weights), time and memory."

METHODS = ("greedy", "args", "srs_args", "cd_value", "cd_q", "bon", "srs_bon")

#: Llama-3.2-1B and Llama-3.1-8B shapes (their config.json values); ``tiny`` for CI.
SHAPES: Dict[str, dict] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=None, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}


#: Score-head scale of the equality check: rewards then change ARGS's choice at some steps (reported), so
#: "fast equals naive" is not met trivially by rewards too small to matter.
_EQUALITY_REWARD_SCALE = 300.0
#: What ``--tiny`` caps: tokens, best-of-N samples, equality tokens, and the batch sizes (CI: seconds).
_TINY = dict(max_new_tokens=4, n=2, equality_tokens=6, batch_sizes="1,2")

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class BenchArgs:
    device: str = field(default="auto", metadata={"help": "cuda, cuda:N, cpu or auto (CUDA when available)."})
    tiny: bool = field(default=False, metadata={"help": "Tiny shapes only (CI: seconds on a CPU)."})
    shapes: str = field(default="1b,8b", metadata={"help": "Comma-separated shapes: tiny, 1b, 8b."})
    methods: str = field(default=",".join(METHODS), metadata={"help": f"Comma-separated subset of {','.join(METHODS)}."})
    batch_sizes: str = field(default="1,8", metadata={"help": "Comma-separated batch sizes (prompts, <= 8)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated by every timed run."})
    k: int = field(default=10, metadata={"help": "ARGS / CD candidates per step."})
    n: int = field(default=8, metadata={"help": "Best-of-N samples per prompt."})
    dtype: str = field(default="bfloat16", metadata={"help": "bfloat16, float16 or float32 (the timed models)."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "sdpa or eager (ARGS's 4D mask needs one of them)."})
    rm_device: Optional[str] = field(default=None, metadata={"help": "Put the reward model on another device (default: --device)."})
    equality_tokens: int = field(default=16, metadata={"help": "Tokens of the float32 fast-vs-naive ARGS check (0: skip)."})
    tokenizer: Optional[str] = field(default=None, metadata={"help": "Tokenizer folder (default: see the module docstring)."})
    output: Optional[str] = field(
        default=None,
        metadata={"help": "Also write the result as JSON to this file (atomically, after each shape: `complete` false "
                          "until the end)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})


# ------------------------------------------------------------------------------------------------ tokenizer


def byte_tokenizer():
    """A byte-level tokenizer built in memory: 256 byte tokens, ``<|endoftext|>`` (pad), ``<|im_start|>``,
    ``<|im_end|>`` (EOS) and a ChatML template. Every text round-trips through it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], padding_side="left",
    )
    tok.chat_template = _CHAT_TEMPLATE
    return tok


def load_tokenizer(folder: Optional[str] = None):
    """``(tokenizer, where it came from)``: ``folder``, else ``$TOKENIZER_DIR`` / ``$STACKSHAPE_TEST_TOKENIZER``, else
    the cached SmolLM2 folder when complete on disk (nothing is built or downloaded), else :func:`byte_tokenizer`."""
    from transformers import AutoTokenizer

    folder = folder or os.environ.get("TOKENIZER_DIR") or os.environ.get("STACKSHAPE_TEST_TOKENIZER")
    if not folder:
        from ..assets.defaults import CACHE_VERSION, cache_root

        cached = cache_root() / f"smollm2-135m-instruct-{CACHE_VERSION}"
        if (cached / "COMPLETE").is_file() and (cached / "tokenizer_config.json").is_file():
            folder = str(cached)
    if not folder:
        return byte_tokenizer(), "byte-level (built in memory)"
    if not Path(folder).is_dir():
        raise ValueError(f"The tokenizer folder {folder!r} does not exist; pass --tokenizer DIR with a saved tokenizer.")
    tok = AutoTokenizer.from_pretrained(folder, padding_side="left")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        tok.chat_template = _CHAT_TEMPLATE
    return tok, folder


# ------------------------------------------------------------------------------------------------ models


def llama_config(shape: str, tokenizer, attn_implementation: str = "sdpa", **overrides):
    """The ``LlamaConfig`` of a named shape, with the tokenizer's special tokens (vocab at least the tokenizer's)."""
    from transformers import LlamaConfig

    if shape not in SHAPES:
        raise ValueError(f"Unknown shape {shape!r}; choose from {', '.join(SHAPES)}.")
    values = dict(SHAPES[shape])
    vocab = len(tokenizer)
    values["vocab_size"] = max(values["vocab_size"] or 0, -(-vocab // 64) * 64)
    values.update(overrides)
    config = LlamaConfig(
        max_position_embeddings=8192, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, **values,
    )
    config._attn_implementation = attn_implementation
    return config


def _suppressed(tokenizer, vocab_size: int) -> List[int]:
    """Ids no method may emit: rows past the tokenizer, special tokens other than EOS."""
    special = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id}
    return sorted(special | set(range(len(tokenizer), vocab_size)))


def build_models(shape: str, tokenizer, device, dtype, attn_implementation="sdpa", rm_device=None, seed=0):
    """``(policy, reward model)`` with random weights, built on their devices (no CPU copy of 8B weights)."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    from ..rewards.adapters import HFRewardModel

    config = llama_config(shape, tokenizer, attn_implementation)
    torch.manual_seed(seed)
    # Built in `dtype` on the device itself: an 8B float32 copy first would need 32 GB more at the peak.
    with torch.device(device):
        policy = LlamaForCausalLM._from_config(config, dtype=dtype).eval()
    rm_config = llama_config(shape, tokenizer, attn_implementation, num_labels=1, tie_word_embeddings=False)
    with torch.device(rm_device or device):
        rm = LlamaForSequenceClassification._from_config(rm_config, dtype=dtype).eval()
        # Rewards of order 1 (the final norm's states have entries of order 1): they move ARGS's choices.
        generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        weight = torch.randn(1, config.hidden_size, generator=generator) / math.sqrt(config.hidden_size)
        with torch.no_grad():
            rm.score.weight.copy_(weight.to(rm.score.weight))
    gen = policy.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id, None
    gen.suppress_tokens = _suppressed(tokenizer, config.vocab_size)
    gen.do_sample, gen.temperature, gen.top_p, gen.top_k = False, 1.0, 1.0, None
    reward = HFRewardModel(rm, tokenizer, batch_size=64, max_length=4096)
    return policy, reward


# ------------------------------------------------------------------------------------------------ runs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Runner:
    """Runs one method on a batch of prompts (a fresh processor per run, as a user's call would build it)."""

    def __init__(self, policy, reward, tokenizer, args: BenchArgs):
        self.policy, self.reward, self.tok, self.args = policy, reward, tokenizer, args
        self.device = policy.device
        self._heads = {}

    def inputs(self, batch: int):
        from ..utils.prompts import encode_prompts, format_prompts

        texts = format_prompts(self.tok, BENCH_PROMPTS[:batch])
        return encode_prompts(self.tok, texts, None, 0).to(self.device)

    def head(self, kind: str):
        from ..qhead.modeling_qhead import QHeadModel

        if kind not in self._heads:
            self._heads[kind] = QHeadModel.from_backbone(self.policy, head_type=kind, seed=self.args.seed).eval()
        return self._heads[kind]

    def processor(self, method: str, batch: int):
        from ..guidance.args import ARGSLogitsProcessor
        from ..guidance.cd import CDLogitsProcessor

        a = self.args
        if method in ("args", "srs_args"):
            return ARGSLogitsProcessor(self.reward, tokenizer=self.tok, k=a.k, weight=0.5, use_cache=True,
                                       transform="raw" if method == "args" else "srs", prompts=BENCH_PROMPTS[:batch])
        if method == "cd_value":
            return CDLogitsProcessor(self.head("value"), k=a.k, weight=1.5, base_model=self.policy,
                                     share_hidden_states=False)
        if method == "cd_q":
            return CDLogitsProcessor(self.head("q"), k=a.k, weight=1.5, base_model=self.policy)
        return None

    @torch.inference_mode()
    def run(self, method: str, batch: int, tokens: int):
        """Generate ``tokens`` tokens for ``batch`` prompts; returns the processor used (or ``None``)."""
        from transformers import LogitsProcessorList

        if method in ("bon", "srs_bon"):
            from ..bon import StackelbergBestOfN

            bon = StackelbergBestOfN.from_method(
                "bon" if method == "bon" else "srs-bon", self.policy, self.tok, self.reward, weight=2.0,
                num_samples=self.args.n,
                max_new_tokens=tokens, min_new_tokens=tokens, batch_size=batch, seed=self.args.seed,
                show_progress=False,
            )
            bon.generate(BENCH_PROMPTS[:batch])
            return None
        proc = self.processor(method, batch)
        enc = self.inputs(batch)
        try:
            self.policy.generate(**enc, logits_processor=LogitsProcessorList([proc] if proc is not None else []),
                                 do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
        finally:
            if proc is not None and method.startswith("cd"):
                proc.close()  # detach its hooks from the policy
        return proc


def _time_methods(policy, reward, tokenizer, args: BenchArgs, methods, batches) -> List[dict]:
    from ..utils.memory import PeakMemory

    runner = _Runner(policy, reward, tokenizer, args)
    device = policy.device
    rows = []
    for method in methods:
        runner.run(method, 1, 2)  # warm-up: kernels, allocations, heads
    for batch in batches:
        greedy = None
        for method in methods:
            gc.collect()
            _sync(device)
            with PeakMemory(device) as peak:
                start = time.perf_counter()
                proc = runner.run(method, batch, args.max_new_tokens)
                _sync(device)
                elapsed = time.perf_counter() - start
            if method == "greedy":
                greedy = elapsed
            row = {
                "method": method,
                "batch": batch,
                "ms_per_token": 1000.0 * elapsed / args.max_new_tokens,
                "ratio_to_greedy": None if greedy is None else elapsed / greedy,
                "peak_memory_mib": peak.mib,
            }
            cache = getattr(proc, "prefix_cache", None)
            if cache is not None:
                row["rm_cache_bytes_per_row"] = cache.bytes_per_row
                row["rm_cache_columns"] = cache.seq_length
                proc.close()
            rows.append(row)
    return rows


@torch.inference_mode()
def fast_equals_naive(shape: str, tokenizer, device, args: BenchArgs) -> dict:
    """ARGS's cached fast path vs the naive full re-scoring loop, float32, batch 1, token for token."""
    from transformers import LogitsProcessorList

    from ..guidance.args import ARGSLogitsProcessor
    from .args import NaiveARGS

    policy, reward = build_models(shape, tokenizer, device, torch.float32, args.attn_implementation,
                                  args.rm_device, args.seed)
    with torch.no_grad():  # random backbones barely tell candidates apart: large rewards make them decide
        reward.model.score.weight.mul_(_EQUALITY_REWARD_SCALE)
    enc = _Runner(policy, reward, tokenizer, args).inputs(1)
    tokens = args.equality_tokens

    def generate(proc=None):
        procs = LogitsProcessorList([proc] if proc is not None else [])
        out = policy.generate(**enc, logits_processor=procs, do_sample=False, max_new_tokens=tokens,
                              min_new_tokens=tokens)
        return out[0, enc["input_ids"].shape[1] :].cpu()

    fast = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=args.k, weight=0.5, use_cache=True, prompts=BENCH_PROMPTS[:1])
    ours = generate(fast)
    naive = generate(NaiveARGS(reward, BENCH_PROMPTS[0], args.k, 0.5, fast.transform))
    greedy = generate()
    same = ours == naive
    result = {
        "args_fast_equals_naive": bool(same.all()),
        "args_equality_shape": shape,
        "args_equality_dtype": "float32",
        "args_equality_tokens": tokens,
        "args_equality_first_difference": None if bool(same.all()) else int((~same).nonzero()[0]),
        # How many steps the reward changed the greedy choice: the check is not trivially met by rewards ~ 0.
        "args_steps_differing_from_greedy": int((ours != greedy).sum()),
    }
    del policy, reward
    return result


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _parse_list(text: str, allowed, what: str) -> List[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if not items or bad:
        raise ValueError(f"`{what}` must be a comma-separated subset of {', '.join(allowed)}; got {text!r}.")
    return items


def run(args: BenchArgs) -> dict:
    if args.dtype not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {', '.join(_DTYPES)}, got {args.dtype!r}.")
    if args.attn_implementation not in ("sdpa", "eager"):
        raise ValueError(
            f"`attn_implementation` {args.attn_implementation!r} cannot take ARGS's 4D candidate mask; use sdpa or eager."
        )
    if min(args.max_new_tokens, args.k, args.n) < 1 or args.equality_tokens < 0:
        raise ValueError("`max_new_tokens`, `k` and `n` must be >= 1 and `equality_tokens` >= 0.")
    if args.tiny:
        args = dataclasses.replace(
            args, max_new_tokens=min(args.max_new_tokens, _TINY["max_new_tokens"]), n=min(args.n, _TINY["n"]),
            equality_tokens=min(args.equality_tokens, _TINY["equality_tokens"]),
            batch_sizes=_TINY["batch_sizes"] if args.batch_sizes == BenchArgs.batch_sizes else args.batch_sizes,
        )
    methods = _parse_list(args.methods, METHODS, "methods")
    if "greedy" in methods:
        methods = ["greedy"] + [m for m in methods if m != "greedy"]
    shapes = ["tiny"] if args.tiny else _parse_list(args.shapes, list(SHAPES), "shapes")
    try:
        batches = sorted({int(b) for b in str(args.batch_sizes).split(",") if b.strip()})
    except ValueError:
        batches = []
    if not batches or not all(1 <= b <= len(BENCH_PROMPTS) for b in batches):
        raise ValueError(f"`batch_sizes` must be integers in [1, {len(BENCH_PROMPTS)}], got {args.batch_sizes!r}.")
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device} but CUDA is not available here; use --device cpu --tiny.")
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
    dtype = _DTYPES[args.dtype]
    tokenizer, tokenizer_source = load_tokenizer(args.tokenizer)

    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "attn_implementation": args.attn_implementation,
        "rm_device": args.rm_device or str(device),
        "tokenizer": tokenizer_source,
        "tokenizer_size": len(tokenizer),
        "new_tokens": args.max_new_tokens,
        "k": args.k,
        "n": args.n,
        "runs": [],
    }
    started = time.perf_counter()
    for shape in shapes:
        t0 = time.perf_counter()
        policy, reward = build_models(shape, tokenizer, device, dtype, args.attn_implementation, args.rm_device, args.seed)
        params = sum(p.numel() for p in policy.parameters())
        build_s = time.perf_counter() - t0
        for row in _time_methods(policy, reward, tokenizer, args, methods, batches):
            result["runs"].append({"shape": shape, "policy_params": params, **row})
        result[f"build_{shape}_s"] = build_s
        del policy, reward
        _release(device)
        _write(args.output, {**result, "complete": False})  # a run cut short by a timeout keeps what it measured
    if args.equality_tokens:
        result.update(fast_equals_naive(shapes[0], tokenizer, device, args))
        _release(device)
    result["total_s"] = time.perf_counter() - started
    result["complete"] = True
    _write(args.output, result)
    return result


def _write(path: Optional[str], result: dict) -> None:
    if path:
        from ..utils.io import atomic_write_json

        atomic_write_json(path, result)


def format_result(result: dict) -> str:
    """A table of the runs, then the other fields."""
    lines = [f"benchmark: {result.get('benchmark', 'device')}"]
    for key, value in result.items():
        if key not in ("benchmark", "runs"):
            lines.append(f"  {key}: {f'{value:.4g}' if isinstance(value, float) else value}")
    header = f"  {'shape':<6}{'method':<10}{'batch':>6}{'ms/token':>11}{'x greedy':>10}{'peak MiB':>11}{'RM cache/row':>14}"
    lines += ["", header]
    for row in result.get("runs", []):
        ratio = "" if row["ratio_to_greedy"] is None else f"{row['ratio_to_greedy']:.2f}"
        cache = row.get("rm_cache_bytes_per_row")
        cache = "" if cache is None else f"{cache / 1024:.0f} KiB"
        lines.append(
            f"  {row['shape']:<6}{row['method']:<10}{row['batch']:>6}{row['ms_per_token']:>11.2f}{ratio:>10}"
            f"{row['peak_memory_mib']:>11.0f}{cache:>14}"
        )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m hf_stackshape.benchmarks.device [options]``: the same as ``stackshape bench device``."""
    import sys

    from ..commands.bench import main as bench_main

    return bench_main(["device", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
