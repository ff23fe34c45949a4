"""The ``stackshape`` command line: one subcommand per pipeline stage.

Each subcommand lives in ``hf_stackshape/commands/<name>.py`` and declares its arguments as dataclasses
parsed with ``transformers.HfArgumentParser`` (the TRL convention), so every option also works from a
JSON/YAML file (``stackshape calibrate config.yaml``) and from Python.

A command module defines either ``main(argv) -> int`` (full control, e.g. ``bench``), or
``DATACLASSES`` (a tuple of dataclass types), ``DESCRIPTION`` and ``run(*parsed) -> int``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import List, Optional

COMMANDS = {
    "calibrate": "Sample N base responses per prompt, score them, and compute the threshold m*(x).",
    "train-qhead": "Train a value/Q head on (shaped) rewards of calibration rollouts (SRS-CD).",
    "generate": "Generate with ARGS or CD guidance (vanilla, SRS or a baseline transform).",
    "evaluate": "Score generations: reward, diversity, coherence, win-tie rate.",
    "sweep": "Run methods over a grid of 1/beta; write a table and a Figure-2 style plot.",
    "demo": "The whole pipeline on the embedded SmolLM2 default, offline, in minutes.",
    "bench": "Benchmarks that print speed ratios measured side by side (threshold, calibrate, args, cd).",
}

USAGE = """usage: stackshape <command> [options]   (stackshape <command> --help for its options)

Stackelberg reward shaping (Wang et al., 2026) for inference-time alignment with Transformers.

commands:
{commands}

Typical pipeline:
  stackshape calibrate --prompts prompts.jsonl --output_dir runs/calib
  stackshape train-qhead --calibration_dir runs/calib --output_dir runs/qhead
  stackshape generate --method srs-args --prompts prompts.jsonl --output_file out.jsonl
  stackshape evaluate --generations out.jsonl
Set STACKSHAPE_DEBUG=1 to see full tracebacks.
"""


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _module_name(command: str) -> str:
    return "hf_stackshape.commands." + command.replace("-", "_")


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    return USAGE.format(commands="\n".join(f"  {c.ljust(width)}  {h}" for c, h in COMMANDS.items()))


def run_dataclass_command(command: str, module, argv: List[str]) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(module.DATACLASSES, prog=f"stackshape {command}", description=module.DESCRIPTION)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")) and os.path.isfile(argv[0]):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        parsed = loader(os.path.abspath(argv[0]))
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    return int(module.run(*parsed) or 0)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hf_stackshape import __version__

        print(f"hf_stackshape {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"stackshape: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    debug = os.environ.get("STACKSHAPE_DEBUG", "") not in ("", "0")
    try:
        module = importlib.import_module(_module_name(command))
        if hasattr(module, "main"):
            return int(module.main(rest) or 0)
        return run_dataclass_command(command, module, rest)
    except KeyboardInterrupt:
        print(f"stackshape {command}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, KeyError, ImportError, OSError) as err:
        if debug:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, KeyError):
            message = f"missing key {message}"
        print(f"stackshape {command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
