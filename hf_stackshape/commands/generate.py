"""``stackshape generate``: answer prompts with ARGS or CD guidance (vanilla, SRS or a baseline transform).

Examples:

    stackshape generate --prompts prompts.jsonl --method srs-args --reward_model demo --output_file srs.jsonl
    stackshape generate --prompts prompts.jsonl --method srs-cd --qhead runs/qhead-srs --output_file cd.jsonl
    stackshape generate --preset paper --prompts prompts.jsonl --method srs-args --output_file paper.jsonl

Each response is a JSON line holding the prompt, the response and every setting that made it (method, the
guidance weight actually used, k, bound, alpha, beta, threshold source, model, reward, seed, max_new_tokens,
sampling), so files can be compared and combined by ``stackshape evaluate``. Responses are appended batch by
batch; rerunning the same command resumes. The settings, the model, tokenizer and reward identities and the
content digests of the input folders (``--thresholds_from``, a local ``--qhead``) are kept in
``OUTPUT_FILE.run.json``: a rerun with other settings, or after an input folder changed, stops and names them
(``--overwrite`` starts over). Every argument is validated before that file is written, so a command that fails
on a bad value leaves nothing behind. Thresholds calibrated with another reward than ``--reward_model`` are
refused: ``m*(x)`` is on the scale of the reward it was solved from (Wang et al., 2026).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ._common import TRUST_REMOTE_CODE_HELP, EvalPromptSourceArguments

DESCRIPTION = __doc__.strip().splitlines()[0]

#: Components of :mod:`hf_stackshape.core.presets` that ``--preset`` applies (see :mod:`hf_stackshape.cli`): the ARGS
#: and CD settings (chosen per method; ``--weight`` left unset takes the preset's value for the method's decoder)
#: and the generation length.
PRESET_COMPONENTS = ("args", "cd", "generation")


@dataclass
class GenerateArguments(EvalPromptSourceArguments):
    output_file: str = field(default="generations.jsonl", metadata={"help": "JSONL file the responses go to."})
    overwrite: bool = field(
        default=False, metadata={"help": "Delete OUTPUT_FILE's earlier run (made with other settings) and start over."}
    )
    method: str = field(
        default="srs-args",
        metadata={
            "help": "base | args | srs-args | minmax-args | meanstd-args | meansoft-args | cap-args | hard-args | cd | "
            "srs-cd | bon | soft-bon | srs-bon"
        },
    )
    model: Optional[str] = field(
        default=None, metadata={"help": "Base model path / Hub id (default: the embedded SmolLM2-135M-Instruct)."}
    )
    reward_model: str = field(
        default="demo",
        metadata={
            "help": "ARGS / best-of-N reward: 'demo' (the bundled RM), 'vader', 'length', 'module:function' (with "
            "--trust_remote_code) or an RM path / Hub id. The demo RM guides; VADER is the demo's independent judge."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": TRUST_REMOTE_CODE_HELP})
    qhead: Optional[str] = field(default=None, metadata={"help": "CD: a saved Q-head folder or Hub id (QHeadModel)."})
    weight: Optional[float] = field(
        default=None,
        metadata={"help": "Guidance weight lambda = 1/beta (default: the method's, ARGS 0.5, CD 1.5, or the preset's)."},
    )
    k: Optional[int] = field(default=None, metadata={"help": "Candidates per step, top-k of the base model (default 10)."})
    num_samples: int = field(default=8, metadata={"help": "Best-of-N methods: samples N per prompt (beta = 1/weight)."})
    bound: Optional[float] = field(default=None, metadata={"help": "ARGS: reward bound B of shaped transforms (default 12)."})
    alpha: Optional[float] = field(default=None, metadata={"help": "ARGS: SRS sigmoid sharpness (default 1.5)."})
    beta: Optional[float] = field(default=None, metadata={"help": "ARGS: KL strength in the threshold (default 1/weight)."})
    cd_temperature: Optional[float] = field(
        default=None, metadata={"help": "CD: temperature of the base log-probs it ranks (default 0.7)."}
    )
    thresholds_from: Optional[str] = field(
        default=None, metadata={"help": "Calibration output dir: use its per-prompt m*(x) for srs-args instead of per-step thresholds."}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens to generate per response (the authors' ARGS length)."})
    max_prompt_length: Optional[int] = field(
        default=None,
        metadata={
            "help": "Prompt tokens kept; longer prompts lose their start, with a warning (default: the model's "
            "context minus max_new_tokens)."
        },
    )
    dialogue_prompts_as_text: bool = field(
        default=False,
        metadata={"help": "Feed a prompt that already holds 'Human:'/'Assistant:' turns (HH-RLHF) as plain text, "
                  "without the chat template (on in the paper preset)."},
    )
    stop_at_new_turn: bool = field(
        default=False,
        metadata={"help": "Stop each response where a new 'Human:'/'User:' turn begins and cut that turn off."},
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (stochastic ARGS / CD) instead of greedy."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with --do_sample)."})
    seed: int = field(default=0, metadata={"help": "Random seed (with --do_sample)."})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16."})
    preset: Optional[str] = field(
        default=None, metadata={"help": "Named settings, e.g. 'paper' (the authors' scripts); explicit options win."}
    )

    def decoding_settings(self):
        """The decoding settings these options name (:class:`~hf_stackshape.core.decoding.DecodingSettings`,
        built from the fields of the same names; validated there)."""
        from ..core.decoding import DecodingSettings

        return DecodingSettings.from_options(self)


#: Row keys that are not settings.
ROW_FIELDS = ("id", "prompt", "response")


def _read_rows(path: Path) -> List[dict]:
    """The finished rows of OUTPUT_FILE; a line that is not a JSON object is an error naming the line."""
    from ..utils.io import jsonl_lines

    rows = []
    for number, row in jsonl_lines(path, complete_lines_only=True):
        if not isinstance(row, dict) or not all(key in row for key in ROW_FIELDS):
            kind = "an object without id/prompt/response" if isinstance(row, dict) else f"a JSON {type(row).__name__}"
            raise ValueError(
                f"{path}: line {number} is {kind}, not a generation row; fix or delete that line, or start over "
                "with --overwrite."
            )
        rows.append(row)
    return rows


def _done_count(path: Path, rows: List[dict], prompts: List[str]) -> int:
    """How many leading prompts the rows answer (they must answer the first prompts, in order)."""
    for i, row in enumerate(rows):
        if i >= len(prompts) or row["prompt"] != prompts[i]:
            raise ValueError(
                f"{path}: line {i + 1} answers another prompt than prompt {i} of this run; the file belongs to "
                "another prompt list. Pass a new --output_file, or --overwrite to start over."
            )
    return len(rows)


def _model_name(args: GenerateArguments) -> str:
    if args.model is None or str(args.model).lower() in ("smollm2", "default"):
        return "smollm2"
    from ..utils.runs import path_setting

    return path_setting(args.model)  # a local folder by its real path: its spelling is not a setting


def row_settings(args: GenerateArguments, method, decoder: Dict[str, Any], qhead=None) -> Dict[str, Any]:
    """Everything that made a row, flat (the keys :mod:`hf_stackshape.commands.evaluate` groups rows by)."""
    from ..utils.runs import path_setting

    decoding = args.decoding_settings()
    settings: Dict[str, Any] = {"method": method.label, "weight": decoder["weight"], "k": decoder.get("k")}
    if method.decoder == "cd" and qhead is not None:
        shaping = dict(getattr(qhead.config, "shaping", {}) or {})
        settings.update(bound=shaping.get("bound"), alpha=shaping.get("alpha"), beta=shaping.get("beta"))
        settings["threshold_source"] = "qhead" if method.transform != "raw" else None
        settings["reward"] = getattr(qhead.config, "reward_model_name_or_path", None)
        settings["qhead"] = path_setting(args.qhead)
    else:
        settings.update(bound=decoder.get("bound"), alpha=decoder.get("alpha"), beta=decoder.get("beta"))
        if method.decoder in ("args", "bon"):
            settings["threshold_source"] = (
                f"calibration:{path_setting(args.thresholds_from)}" if args.thresholds_from else "per-step"
            )
            settings["reward"] = str(args.reward_model)
        else:
            settings["threshold_source"] = None
            settings["reward"] = None
        settings["qhead"] = None
    if method.decoder == "args":
        settings.update(safeguards=decoder.get("safeguards"), rm_input=decoder.get("rm_input"), cap=decoder.get("cap"))
    if method.decoder == "cd":
        settings["cd_temperature"] = decoder.get("temperature")
    if method.decoder == "bon":
        settings["num_samples"] = int(decoding.num_samples)
    settings.update(
        model=_model_name(args),
        seed=int(decoding.seed),
        max_new_tokens=int(decoding.max_new_tokens),
        do_sample=bool(decoding.do_sample),
        temperature=float(decoding.temperature) if decoding.do_sample else None,
        preset=decoding.preset,
    )
    # Listed only when on, so the runs made before these switches existed keep their settings.
    for key in ("dialogue_prompts_as_text", "stop_at_new_turn"):
        if getattr(decoding, key):
            settings[key] = True
    return settings


def _load_thresholds(folder: str, prompts: List[str]):
    import datasets
    import torch

    path = Path(folder) / "dataset"
    if not path.is_dir():
        raise FileNotFoundError(f"No calibrated dataset at {path}; run `stackshape calibrate --output_dir {folder}` first.")
    calib = datasets.load_from_disk(str(path))
    by_prompt = dict(zip(calib["prompt"], calib["threshold"]))
    missing = [p for p in prompts if p not in by_prompt]
    if missing:
        raise ValueError(f"{len(missing)} prompts have no threshold in {folder} (first: {missing[0][:60]!r}).")
    return torch.tensor([by_prompt[p] for p in prompts], dtype=torch.float32)


def input_digests(args: GenerateArguments) -> Dict[str, str]:
    """Content digests of the input folders the run reads (:func:`hf_stackshape.utils.runs.content_digest`): the
    calibrated dataset of ``--thresholds_from`` and a local ``--qhead`` folder. Recorded in the run manifest and
    compared on resume, so a folder changed in between (recalibrated with another beta, a retrained head) is
    refused by name instead of guiding the remaining rows with other inputs than the finished ones."""
    from ..utils.runs import content_digest

    digests = {}
    if args.thresholds_from:
        digests["thresholds_from"] = content_digest(Path(args.thresholds_from) / "dataset")
    if args.qhead and os.path.isdir(os.path.expanduser(args.qhead)):
        digests["qhead"] = content_digest(args.qhead)
    return digests


def run(args: GenerateArguments) -> int:
    from ..calibration.thresholds import check_calibration_reward
    from ..pipeline.generation import check_generation, generate_responses, parse_method
    from ..rewards import reward_fingerprint
    from ..utils.distributed import Processes, launch_device, launch_state
    from ..utils.io import append_jsonl
    from ..utils.runs import model_fingerprint, open_run, tokenizer_fingerprint
    from ..utils.sharded_output import ShardedRows
    from ._common import load_base_model, load_qhead, load_reward_spec

    method = parse_method(args.method)
    if args.thresholds_from and not (method.decoder == "args" and method.transform == "srs"):
        raise ValueError(f"--thresholds_from is for srs-args (per-prompt m*(x)); method {args.method!r} does not use it.")
    if method.decoder == "cd" and not args.qhead:
        raise ValueError(f"Method {args.method!r} needs --qhead (a Q-head folder from `stackshape train-qhead`).")
    prompts = args.load_prompts()
    decoding = args.decoding_settings()
    decoder = decoding.resolve(method)
    state = launch_state()  # torchrun / accelerate launch: prompts are shared over the ranks
    model, tokenizer = load_base_model(args.model, args.dtype, launch_device(state))
    device = str(next(model.parameters()).device)
    reward = None
    if method.decoder in ("args", "bon"):
        reward = load_reward_spec(args.reward_model, args.dtype, device, trust_remote_code=args.trust_remote_code)
    qhead = load_qhead(args.qhead, model) if method.decoder == "cd" else None
    all_thresholds = None
    if args.thresholds_from:
        check_calibration_reward(args.thresholds_from, reward, args.reward_model)
        all_thresholds = _load_thresholds(args.thresholds_from, prompts)
    # Every argument is checked before the run is opened: a bad value writes nothing (no manifest either).
    check_generation(
        model, tokenizer, method, reward=reward, qheads={method.transform: qhead} if qhead is not None else None,
        settings=decoding,
    )
    settings = row_settings(args, method, decoder, qhead)
    fingerprint = {
        "settings": settings,
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "reward": reward_fingerprint(reward) if reward is not None else None,
        "qhead": model_fingerprint(qhead.head if hasattr(qhead, "head") else qhead) if qhead is not None else None,
        "max_prompt_length": decoding.max_prompt_length,
        "top_p": decoding.top_p,
    }
    inputs = input_digests(args)
    if inputs:  # only when the run reads input folders, so runs without any keep their old fingerprint
        fingerprint["inputs"] = inputs
    out_path = Path(args.output_file)
    options = dict(
        method=method,
        reward=reward,
        qheads={method.transform: qhead} if qhead is not None else None,
        settings=decoding,
    )
    with open_run(out_path, fingerprint, kind="generate", overwrite=args.overwrite, single_file=True, state=state):
        procs = Processes(state)
        shards = ShardedRows(out_path, procs, _read_rows)
        rows = _read_rows(out_path) if out_path.is_file() else []
        done = _done_count(out_path, rows, prompts)
        if done == len(prompts) and not shards.shard_paths():
            if procs.is_main:
                print(f"All {done} prompts already answered in {out_path} ({method.label}, weight {settings['weight']:g}).")
            return 0
        if procs.world > 1 or shards.shard_paths():
            _generate_sharded(model, tokenizer, prompts, shards, settings, options, args, all_thresholds)
            if procs.is_main:
                print(f"Wrote {len(prompts)} responses ({method.label}, weight {settings['weight']:g}) to {out_path} "
                      f"({procs.world} process{'es' if procs.world > 1 else ''})")
            return 0
        if done:
            print(f"Resuming {out_path}: {done} of {len(prompts)} prompts already answered.")
        thresholds = all_thresholds[done:] if all_thresholds is not None else None

        def write(start, responses):
            append_jsonl(
                out_path,
                [
                    {"id": done + start + i, "prompt": prompts[done + start + i], "response": response, **settings}
                    for i, response in enumerate(responses)
                ],
            )

        generate_responses(model, tokenizer, prompts[done:], thresholds=thresholds, on_batch=write, first_index=done,
                           **options)
    print(f"Wrote {len(prompts) - done} responses ({method.label}, weight {settings['weight']:g}) to {out_path}")
    return 0


def _generate_sharded(model, tokenizer, prompts, shards, settings, options, args, thresholds=None) -> None:
    """The batches not yet done, shared over the ranks; each rank appends to its shard, rank 0 merges.

    Batches are those of one process (``[0, B), [B, 2B), ...``) and every draw is keyed by the global prompt
    index, so the merged file is the one a single process writes, whatever the world size.
    """
    from ..pipeline.generation import generate_responses

    pending = shards.pending(prompts, int(args.batch_size))
    shards.procs.barrier()  # every rank has read the same done rows before any rank appends
    mine = shards.procs.share(pending)
    if mine:
        print(f"rank {shards.procs.rank}/{shards.procs.world}: {sum(map(len, mine))} of {len(prompts)} prompts "
              f"({len(pending)} batches pending in all)")
    for batch in mine:
        responses = generate_responses(
            model, tokenizer, [prompts[i] for i in batch], indices=batch,
            thresholds=thresholds[batch] if thresholds is not None else None, show_progress=False, **options,
        )
        shards.append([{"id": i, "prompt": prompts[i], "response": r, **settings} for i, r in zip(batch, responses)])
    shards.merge(prompts)


DATACLASSES = (GenerateArguments,)
