"""Which ``checkpoint-N`` folders of a Q-head training run are complete, so a killed save never blocks a rerun.

``transformers.Trainer`` writes a checkpoint file by file (model, optimizer, scheduler, RNG state) and the
``trainer_state.json`` last; a ``SIGKILL`` in between leaves ``checkpoint-N`` with the model files only, and
``transformers.trainer_utils.get_last_checkpoint`` would still pick it, so every rerun fails on the missing
``trainer_state.json``. :func:`last_complete_checkpoint` skips such folders (and, asked to, removes them:
they hold nothing resumable), so training resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import List, Optional

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["checkpoint_problem", "last_complete_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


def checkpoint_problem(folder: str) -> Optional[str]:
    """Why ``folder`` cannot be resumed from (``None`` if it is complete).

    A checkpoint is complete when its ``trainer_state.json`` (written last by the Trainer, after the model,
    optimizer, scheduler and RNG files) is readable JSON with a ``global_step``, and model weights are there.
    """
    state_path = os.path.join(folder, TRAINER_STATE_NAME)
    if not os.path.isfile(state_path):
        return f"no {TRAINER_STATE_NAME} (the save was interrupted)"
    try:
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError) as err:
        return f"{TRAINER_STATE_NAME} is unreadable ({err})"
    if not isinstance(state, dict) or "global_step" not in state:
        return f"{TRAINER_STATE_NAME} has no global_step"
    names = set(os.listdir(folder))
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        return "no model weights"
    return None


def _checkpoints(output_dir: str) -> List[str]:
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), name))
    return [os.path.join(output_dir, name) for _, name in sorted(found)]


def last_complete_checkpoint(output_dir: str, remove_incomplete: bool = False) -> Optional[str]:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (``None`` if there is none).

    Args:
        output_dir (`str`): the training run's output folder.
        remove_incomplete (`bool`, *optional*, defaults to `False`): delete the incomplete checkpoints (left
            by a kill during a save); only call this while holding the run (see :func:`hf_stackshape.utils.runs.open_run`).
            Each skipped or removed folder is named in a warning.
    """
    last = None
    for folder in _checkpoints(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            last = folder
            continue
        action = "removing it" if remove_incomplete else "skipping it"
        logger.warning(f"{folder} is an incomplete checkpoint: {problem}; {action}, resuming from the last complete one.")
        if remove_incomplete:
            shutil.rmtree(folder, ignore_errors=True)
    return last
