"""Re-solving and mapping thresholds: ``m*(x)`` from stored rewards, onto other datasets.

The threshold itself always comes from :func:`hf_stackshape.shaping.solve_threshold` (Wang et al., 2026,
arXiv 2602.02572); this module only feeds it a calibration dataset's rewards and moves the result around.
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from ..io import prompts_from_dataset
from ..shaping import _check_positive, solve_threshold

__all__ = ["recompute_thresholds", "map_thresholds"]


def _short(text: str, width: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def recompute_thresholds(
    dataset,
    beta: float,
    bound: float,
    safeguards: str = "cd",
    column: str = "threshold",
    rewards_column: str = "rewards",
):
    """Re-solve ``m*(x)`` from stored rewards for another ``(B, beta)``, without resampling.

    Sweeps over ``1/beta`` (Figure 2 of Wang et al., 2026) need one threshold per ``beta`` for the same
    samples; this re-runs :func:`~hf_stackshape.shaping.solve_threshold` on the ``rewards`` column and
    writes (or replaces) ``column``. Also adds ``base_mean_reward`` when it is missing.

    Args:
        dataset (`datasets.Dataset`): a calibration dataset (``prompt`` and ``rewards`` columns).
        beta (`float`): KL strength, > 0.
        bound (`float`): reward bound ``B``, > 0.
        safeguards (`str`, *optional*, defaults to `"cd"`): ``"cd"``, ``"args"`` or ``"none"``.
        column (`str`, *optional*, defaults to `"threshold"`): the output column.
        rewards_column (`str`, *optional*, defaults to `"rewards"`): where the N rewards per prompt are.

    Examples:

    ```python
    >>> from datasets import Dataset
    >>> from hf_stackshape.calibration import recompute_thresholds
    >>> ds = Dataset.from_dict({"prompt": ["hi"], "rewards": [[0.0, 1.0, 2.0]]})
    >>> round(recompute_thresholds(ds, beta=1.0, bound=1.0)["threshold"][0], 4)
    1.3642
    ```
    """
    beta = _check_positive("beta", beta)
    bound = _check_positive("bound", bound)
    if rewards_column not in dataset.column_names:
        raise ValueError(f"The dataset has no {rewards_column!r} column; columns: {dataset.column_names}.")
    rows = dataset[rewards_column]
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [str(i) for i in range(len(rows))]
    rewards = _rewards_tensor(rows, prompts)
    thresholds = solve_threshold(rewards, beta=beta, bound=bound, safeguards=safeguards).tolist()
    out = dataset
    if column in out.column_names:
        out = out.remove_columns(column)
    out = out.add_column(column, thresholds)
    if "base_mean_reward" not in out.column_names:
        out = out.add_column("base_mean_reward", rewards.mean(dim=-1).tolist())
    return out


def _rewards_tensor(rows: Sequence[Sequence[float]], prompts: Sequence[str]) -> torch.Tensor:
    if len(rows) == 0:
        raise ValueError("The calibration dataset is empty; there is nothing to compute a threshold for.")
    sizes = {len(r) for r in rows}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"Every prompt needs the same number N >= 1 of rewards, got sizes {sorted(sizes)}.")
    rewards = torch.tensor(rows, dtype=torch.float64)
    bad = ~torch.isfinite(rewards).all(dim=-1)
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"Prompt {i} ({_short(prompts[i])!r}) has a non-finite reward {rows[i]}; fix the reward function."
        )
    return rewards


def map_thresholds(
    dataset,
    calibration,
    prompt_column: str = "prompt",
    column: str = "threshold",
    source_column: str = "threshold",
):
    """Put the calibrated ``m*(x)`` of each prompt onto ``dataset[column]``.

    Rows are matched by prompt text (the first calibration row of a duplicated prompt wins); a prompt
    with no calibration row is an error naming it.

    Args:
        dataset (`datasets.Dataset`): rows with a ``prompt_column``.
        calibration (`datasets.Dataset`): the output of :meth:`ThresholdCalibrator.calibrate`.
        prompt_column (`str`, *optional*, defaults to `"prompt"`): the prompt column of ``dataset``.
        column (`str`, *optional*, defaults to `"threshold"`): the column to write.
        source_column (`str`, *optional*, defaults to `"threshold"`): the calibration column to read.
    """
    prompts = prompts_from_dataset(dataset, prompt_column)
    if source_column not in calibration.column_names:
        raise ValueError(f"The calibration has no {source_column!r} column: {calibration.column_names}.")
    table: Dict[str, float] = {}
    for prompt, value in zip(calibration["prompt"], calibration[source_column]):
        table.setdefault(prompt, value)
    values = []
    for i, prompt in enumerate(prompts):
        if prompt not in table:
            raise ValueError(f"Row {i} prompt {_short(prompt)!r} has no calibrated threshold; calibrate it.")
        values.append(table[prompt])
    out = dataset.remove_columns(column) if column in dataset.column_names else dataset
    return out.add_column(column, values)
