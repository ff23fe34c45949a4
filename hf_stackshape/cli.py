"""The ``stackshape`` command line: one subcommand per pipeline stage.

Each subcommand lives in ``hf_stackshape/commands/<name>.py`` and declares its arguments as dataclasses
parsed with ``transformers.HfArgumentParser`` (the TRL convention). Defaults can come from three places,
each overriding the one before (the way TRL's scripts take ``--config``):

1. the dataclass defaults;
2. ``--preset NAME``: the values of :func:`hf_stackshape.core.presets.get_preset` for each component listed in the
   command module's ``PRESET_COMPONENTS``; a preset key becomes the default of the dataclass field named
   ``<component>_<key>`` if there is one, else of the field named ``<key>``; keys with no field are ignored,
   and a field two components would set to different values is left to the command (it receives the preset
   name in its ``preset`` field, if it has one, and resolves it per method);
3. ``--config FILE`` (``.json``/``.yaml``): the file's keys are option names (a ``preset:`` key works like
   ``--preset``);

and flags on the command line override all of them::

    stackshape generate --config run.yaml --weight 2
    stackshape generate --preset paper --method srs-args --output_file paper.jsonl

A command module defines either ``main(argv) -> int`` (full control, e.g. ``bench``), or
``DATACLASSES`` (a tuple of dataclass types), ``DESCRIPTION`` and ``run(*parsed) -> int``; optionally
``PRESET_COMPONENTS`` (component names of :mod:`hf_stackshape.core.presets`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

COMMANDS = {
    "calibrate": "Sample N base responses per prompt, score them, and compute the threshold m*(x).",
    "train-qhead": "Train a value/Q head on (shaped) rewards of calibration rollouts (SRS-CD).",
    "generate": "Generate with ARGS or CD guidance (vanilla, SRS or a baseline transform).",
    "evaluate": "Score generations: reward, diversity, coherence, win-tie rate, with 95% bootstrap CIs.",
    "sweep": "Run methods over a grid of 1/beta; write a table and a Figure-2 style plot.",
    "demo": "The whole pipeline on the embedded SmolLM2 default, offline, in minutes.",
    "export-generate": "Write a custom_generate folder (srs-args, srs-cd, srs-bon) usable without hf_stackshape.",
    "bench": "Benchmarks that print speed ratios measured side by side (threshold, calibrate, args, cd).",
}

USAGE = """usage: stackshape <command> [options]   (stackshape <command> --help for its options)

Stackelberg reward shaping (Wang et al., 2026) for inference-time alignment with Transformers.

commands:
{commands}

Every command also takes --config FILE (.json/.yaml: option values) and --preset NAME (e.g. paper:
the authors' settings); flags given on the command line override both.

Typical pipeline:
  stackshape calibrate --prompts prompts.jsonl --output_dir runs/calib
  stackshape train-qhead --calibration_dir runs/calib --output_dir runs/qhead
  stackshape generate --method srs-args --prompts prompts.jsonl --output_file out.jsonl
  stackshape evaluate --generations out.jsonl
Set STACKSHAPE_DEBUG=1 to see full tracebacks.
"""


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _module_name(command: str) -> str:
    return "hf_stackshape.commands." + command.replace("-", "_")


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    return USAGE.format(commands="\n".join(f"  {c.ljust(width)}  {h}" for c, h in COMMANDS.items()))


# ----------------------------------------------------------------------------------------------- help


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: not when the help already states it, not for unset (``None``) or required
    options, never for the ``--no_X`` switches; a default set by ``--preset``/``--config`` is shown with its source."""

    def _get_help_string(self, action):
        text = action.help or ""
        source = getattr(action, "_stackshape_default_from", None)
        if source:  # set by --preset / --config: that value, not the one the help text states
            text = re.sub(r"\s*\(default[^)]*\)", "", text)
            return text + f" (default: %(default)s, from {source})"
        if "default" in text.lower() or getattr(action, "_stackshape_no_default", False):
            return text
        # Unset optional values (None) and required options have no default worth printing.
        if action.default in (argparse.SUPPRESS, None) or action.required or action.option_strings == []:
            return text
        return text + " (default: %(default)s)"


_NOT_VERBS = {"a", "an", "the", "with", "without", "when", "if", "for", "in", "on", "at", "by", "whether", "true", "false"}

#: Trainer options every training command needs: shown by the short ``--help`` too.
_ESSENTIAL_TRAINER_OPTIONS = ("output_dir", "num_train_epochs", "per_device_train_batch_size", "seed")


def _negated_help(text: str, dest: str) -> str:
    """A ``--no_X`` switch's help from ``X``'s ("Show a bar." -> "Do not show a bar.")."""
    text = (text or "").strip()
    for prefix in ("Whether or not to ", "Whether to ", "If set, ", "If True, "):
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :]
            break
    first = text.split(" ", 1)[0].lower().strip(",.;:")
    if not text or first in _NOT_VERBS or not first.isalpha():
        return f"Turn --{dest} off." + (f" ({text})" if text else "")
    return "Do not " + text[0].lower() + text[1:]


def _trainer_only_fields(dataclass_types: Sequence[type]) -> set:
    """Fields a dataclass inherits from ``transformers.TrainingArguments`` without re-declaring them."""
    try:
        from transformers import TrainingArguments
    except ImportError:  # pragma: no cover
        return set()
    hidden = set()
    for dtype in dataclass_types:
        if not (isinstance(dtype, type) and issubclass(dtype, TrainingArguments)):
            continue
        ours = set()
        for klass in dtype.__mro__:
            if klass is TrainingArguments:
                break
            ours.update(getattr(klass, "__annotations__", {}))
        hidden.update(f.name for f in dataclasses.fields(TrainingArguments) if f.name not in ours)
    return hidden - set(_ESSENTIAL_TRAINER_OPTIONS)


def build_parser(command: str, module) -> Tuple[argparse.ArgumentParser, set]:
    """The command's ``HfArgumentParser``, our options first; returns it and the Trainer-only option names."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        module.DATACLASSES,
        prog=f"stackshape {command}",
        description=module.DESCRIPTION,
        formatter_class=_HelpFormatter,
        add_help=False,
    )
    trainer_only = _trainer_only_fields(module.DATACLASSES)
    helps = {a.dest: a.help for a in parser._actions if not a.option_strings[0].startswith("--no_")}
    for action in parser._actions:
        if action.option_strings and action.option_strings[0].startswith("--no_"):
            action.help = _negated_help(helps.get(action.dest, ""), action.dest)
            action._stackshape_no_default = True
    # Our own options first, then the essential Trainer ones, then the rest (a stable sort keeps each's order).
    def rank(action) -> int:
        if action.dest in _ESSENTIAL_TRAINER_OPTIONS and trainer_only:
            return 1
        return 2 if action.dest in trainer_only else 0

    for group in parser._action_groups:
        group._group_actions.sort(key=rank)
    parser._actions.sort(key=rank)
    group = parser.add_argument_group("configuration")
    group.add_argument("-h", "--help", action="store_true", help="Show our options and exit.")
    if trainer_only:
        group.add_argument(
            "--help-all", "--help_all", action="store_true", help="Also show the transformers.TrainingArguments options."
        )
    group.add_argument("--config", metavar="FILE", help="JSON/YAML file of option values; flags override them.")
    if "preset" not in {a.dest for a in parser._actions}:  # else the command's own `preset` field is the flag
        group.add_argument("--preset", metavar="NAME", help="Named settings, e.g. 'paper' (the authors' scripts).")
    for action in group._group_actions:
        action._stackshape_no_default = True
    return parser, trainer_only


def _print_help(parser: argparse.ArgumentParser, trainer_only: set, show_all: bool) -> None:
    if trainer_only and not show_all:
        hidden = []
        for action in parser._actions:
            if action.dest in trainer_only:
                hidden.append((action, action.help))
                action.help = argparse.SUPPRESS
        parser.epilog = (
            f"{len({a.dest for a, _ in hidden})} more options inherited from transformers.TrainingArguments "
            "(save_strategy, logging_dir, report_to, ...) are hidden: see --help-all."
        )
        try:
            parser.print_help()
        finally:
            for action, text in hidden:
                action.help = text
            parser.epilog = None
    else:
        parser.print_help()


# ----------------------------------------------------------------------------------------- defaults


def _load_config_file(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise CLIError(f"--config {path!r}: no such file.")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith(".json"):
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CLIError(f"--config {path!r}: invalid JSON at line {err.lineno}: {err.msg}.") from None
    elif path.endswith((".yaml", ".yml")):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CLIError(f"--config {path!r}: invalid YAML: {err}") from None
    else:
        raise CLIError(f"--config {path!r}: use a .json, .yaml or .yml file.")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CLIError(f"--config {path!r} must hold a mapping of option names to values, got a {type(data).__name__}.")
    return data


def preset_defaults(name: str, components: Sequence[str], fields: Sequence[str]) -> Dict[str, Any]:
    """The defaults preset ``name`` gives a command's fields (see the module docstring for the mapping).

    Examples:

    ```python
    >>> from hf_stackshape.cli import preset_defaults
    >>> preset_defaults("paper", ["generation"], ["max_new_tokens", "output_file"])
    {'max_new_tokens': 128}
    ```
    """
    from .core.presets import get_preset

    fields = set(fields)
    values: Dict[str, Any] = {}
    conflicts = set()
    for component in components:
        for key, value in get_preset(name, component).items():
            field = f"{component}_{key}" if f"{component}_{key}" in fields else key
            if field not in fields:
                continue
            if field in values and values[field] != value:
                conflicts.add(field)
            values[field] = value
    for field in conflicts:
        del values[field]
    return values


#: Options only the command line (or the Python argument) may set: each one lets a run execute code, and a
#: config file written by someone else must not switch that on unnoticed (as transformers' remote code).
COMMAND_LINE_ONLY_OPTIONS = ("trust_remote_code",)


def _refuse_config_grants(config: Dict[str, Any], path: str) -> None:
    """Refuse a config file that sets an option of :data:`COMMAND_LINE_ONLY_OPTIONS` (to any value)."""
    keys = sorted(str(k) for k in config if str(k).replace("-", "_") in COMMAND_LINE_ONLY_OPTIONS)
    if keys:
        flags = " ".join(f"--{k.replace('-', '_')}" for k in keys)
        raise CLIError(
            f"--config {path!r} sets {keys}, which only the command line may grant: it lets the run import and "
            f"execute code. Remove it from the file and pass {flags} on the command line if you trust that code."
        )


def _expected_type(action) -> Optional[Tuple[str, Any]]:
    """``(name, check)`` of the value type an option takes from a config file, or ``None`` if not checked."""
    from transformers.hf_argparser import string_to_bool

    if action.type is string_to_bool:
        return "true or false", lambda v: isinstance(v, bool)
    if action.type is int:
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if action.type is float:
        return "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if action.type is str:
        return "a string", lambda v: isinstance(v, str)
    return None


def _check_config_types(
    parser: argparse.ArgumentParser, config: Dict[str, Any], path: str, dataclass_types: Sequence[type], skip: set
) -> None:
    """A config value of the wrong type (``weight: [1, 2]``, ``weights: 0.5``, ``methods: srs-args``,
    ``max_new_tokens: true``) is an error naming the key, the value and the type expected, instead of a
    traceback later or a silently wrong setting (a string iterated letter by letter, ``true`` read as 1).

    Options inherited from ``transformers.TrainingArguments`` (``skip``) are left to their own checks."""
    nullable = {f.name for d in dataclass_types for f in dataclasses.fields(d) if f.default is None}
    actions = {a.dest: a for a in parser._actions if a.option_strings and not a.option_strings[0].startswith("--no_")}
    for raw_key, value in config.items():
        key = str(raw_key).replace("-", "_")
        action = actions.get(key)
        if action is None or key in skip:
            continue  # unknown keys are reported by _apply_defaults
        if value is None and key in nullable:
            continue
        expected = _expected_type(action)
        if expected is None:
            continue
        name, check = expected
        if action.nargs in ("+", "*"):
            ok = isinstance(value, list) and all(check(v) for v in value) and (value or action.nargs == "*")
            name = f"a list of {name.replace('an ', '').replace('a ', '')}s" if "true" not in name else "a list of booleans"
            example = "; e.g. [0.5, 1.0]" if action.type is float else ""
        else:
            ok = check(value)
            example = ""
        if not ok and action.choices is not None and value in action.choices:
            ok = True
        if not ok:
            raise CLIError(
                f"--config {path!r}: {raw_key}: {value!r} is a {type(value).__name__}, but {raw_key} takes {name}"
                f"{example}. Fix the value in the file."
            )
        if action.choices is not None and not action.nargs and value not in action.choices:
            raise CLIError(
                f"--config {path!r}: {raw_key}: {value!r} is not one of {sorted(map(str, action.choices))}."
            )


def _apply_defaults(parser: argparse.ArgumentParser, values: Dict[str, Any], source: str) -> None:
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    actions = {a.dest: a for a in parser._actions if a.option_strings and not a.option_strings[0].startswith("--no_")}
    unknown = sorted(k for k in values if k not in actions)
    if unknown:
        raise CLIError(
            f"{source} sets unknown option(s) {unknown}; see `{parser.prog} --help` for the valid names."
        )
    for key, value in values.items():
        actions[key].default = value
        actions[key].required = False
        actions[key]._stackshape_default_from = source
    parser.set_defaults(**values)


def _renamed_options(argv: List[str], config: Dict[str, Any], renames: Dict[str, str], source: str):
    """``argv`` and ``config`` with each deprecated option (:func:`hf_stackshape.utils.deprecation.deprecated_field`)
    replaced by its new name, with a ``FutureWarning``; the old and new name both given is an error."""
    from .utils.deprecation import warn_renamed

    argv, config = list(argv), dict(config)
    flags = {"--" + a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    for old, new in renames.items():
        spellings = {f"--{old}", f"--{old.replace('_', '-')}"}
        used = [i for i, a in enumerate(argv) if a.split("=", 1)[0] in spellings]
        if used:
            if f"--{new}" in flags:
                raise CLIError(f"--{old} is the deprecated name of --{new}; pass only --{new}.")
            warn_renamed(f"--{old}", f"--{new}")
            for i in used:
                argv[i] = f"--{new}" + argv[i][len(argv[i].split("=", 1)[0]):]
        keys = [k for k in config if str(k).replace("-", "_") == old]
        if keys:
            if any(str(k).replace("-", "_") == new for k in config):
                raise CLIError(f"{source}: {old} is the deprecated name of {new}; set only {new}.")
            warn_renamed(old, new, source)
            config[new] = config.pop(keys[0])
    return argv, config


def parse_command_args(command: str, module, argv: List[str]):
    """Parse ``argv`` into the command's dataclasses, with ``--config``/``--preset`` defaults.

    Returns the tuple of dataclass instances, or ``None`` when help was printed.
    """
    argv = list(argv)
    # The old form `stackshape <cmd> run.yaml` (a config file as the only argument) still works.
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")) and os.path.isfile(argv[0]):
        argv = ["--config", argv[0]]
    parser, trainer_only = build_parser(command, module)
    pre = argparse.ArgumentParser(add_help=False)
    for option in ("--config", "--preset"):
        pre.add_argument(option)
    for option in ("-h", "--help", "--help-all", "--help_all"):
        pre.add_argument(option, action="store_true", dest=option.lstrip("-").replace("-", "_"))
    known, rest = pre.parse_known_args(argv)
    config = _load_config_file(known.config) if known.config else {}
    from .utils.deprecation import renamed_fields

    renames = renamed_fields(*module.DATACLASSES)
    if renames:  # old option names (deprecated aliases) mean the new ones, before any default applies
        rest, config = _renamed_options(rest, config, renames, f"--config {known.config}")
    preset = known.preset or config.pop("preset", None)
    config.pop("preset", None)
    fields = [f.name for dtype in module.DATACLASSES for f in dataclasses.fields(dtype) if f.init]
    if preset:
        components = tuple(getattr(module, "PRESET_COMPONENTS", ()))
        if not components:
            raise CLIError(f"`stackshape {command}` takes no --preset (it has no preset components).")
        try:
            values = preset_defaults(preset, components, fields)
        except ValueError as err:
            raise CLIError(f"--preset: {err}") from None
        if "preset" in fields:
            values["preset"] = preset
        _apply_defaults(parser, values, f"--preset {preset}")
    if config:
        _refuse_config_grants(config, known.config)
        _check_config_types(parser, config, known.config, module.DATACLASSES, trainer_only)
        _apply_defaults(parser, config, f"--config {known.config}")
    if known.help or known.help_all:
        _print_help(parser, trainer_only, show_all=known.help_all)
        return None
    namespace = parser.parse_args(rest)
    for name in ("help", "help_all", "config", "preset"):
        if name not in fields and hasattr(namespace, name):
            delattr(namespace, name)
    if "preset" in fields:
        namespace.preset = preset
    outputs = []
    for dtype in module.DATACLASSES:
        keys = {f.name for f in dataclasses.fields(dtype) if f.init}
        outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in keys}))
    return tuple(outputs)


def run_dataclass_command(command: str, module, argv: List[str]) -> int:
    parsed = parse_command_args(command, module, argv)
    if parsed is None:
        return 0
    return int(module.run(*parsed) or 0)


def _user_facing(err: BaseException) -> bool:
    """Errors about the user's input or environment (printed, exit 2); anything else is a bug (traceback).

    A ``KeyError`` is a bug, not a "missing key" in the user's input: our code reports missing columns and
    options with a ValueError that names them.
    """
    if isinstance(err, (CLIError, ValueError, FileNotFoundError, ImportError, OSError)):
        return True
    # The run manifest's refusals (RunMismatchError, RunLockedError) and similar errors of this package.
    return type(err).__module__.startswith("hf_stackshape.") and type(err).__name__.endswith("Error")


def _error_message(err: BaseException) -> str:
    """The whole message of ``err`` (every line), without KeyError's quoting."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    else:
        text = str(err)
    text = text.strip()
    return text or type(err).__name__


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
    from .utils.distributed import end_process_group, process_group_initialized

    caller_group = process_group_initialized()  # a group set up by whoever called us is theirs to end
    try:
        module = importlib.import_module(_module_name(command))
        if hasattr(module, "main"):
            return int(module.main(rest) or 0)
        return run_dataclass_command(command, module, rest)
    except KeyboardInterrupt:
        print(f"stackshape {command}: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not _user_facing(err):
            raise
        from .utils._extras import missing_extra_message

        install = missing_extra_message(err)
        if install:
            print(f"stackshape {command}: error: {install}", file=sys.stderr)
            return 2
        kind = "" if isinstance(err, (CLIError, ValueError, FileNotFoundError)) else f"{type(err).__name__}: "
        print(f"stackshape {command}: error: {kind}{_error_message(err)}", file=sys.stderr)
        return 2
    finally:
        # Under torchrun, a rank that exits with its gloo process group alive can abort at interpreter teardown.
        if not caller_group and process_group_initialized():
            end_process_group()


if __name__ == "__main__":
    sys.exit(main())
