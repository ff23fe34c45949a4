"""Re-solving and mapping thresholds: ``m*(x)`` from stored rewards, onto other datasets.

The threshold itself always comes from :func:`hf_stackshape.core.shaping.solve_threshold` (Wang et al., 2026,
arXiv 2602.02572); this module only feeds it a calibration dataset's rewards and moves the result around.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

import torch
from transformers.utils import logging

from ..core.shaping import check_positive, solve_threshold
from ..utils.io import prompts_from_dataset

logger = logging.get_logger(__name__)

#: The key of ``calibration_config.json`` that records the reward the calibration scored with.
REWARD_KEY = "reward"

__all__ = ["recompute_thresholds", "map_thresholds", "reward_record", "check_calibration_reward"]


def short_text(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters with ``...`` (prompts quoted in messages)."""
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


_short = short_text  # the old private name, kept


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
    samples; this re-runs :func:`~hf_stackshape.core.shaping.solve_threshold` on the ``rewards`` column and
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
    beta = check_positive("beta", beta)
    bound = check_positive("bound", bound)
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
            f"Prompt {i} ({short_text(prompts[i])!r}) has a non-finite reward {rows[i]}; fix the reward function."
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
            raise ValueError(f"Row {i} prompt {short_text(prompt)!r} has no calibrated threshold; calibrate it.")
        values.append(table[prompt])
    out = dataset.remove_columns(column) if column in dataset.column_names else dataset
    return out.add_column(column, values)


def reward_record(reward) -> Dict[str, Any]:
    """What a calibration records about its reward (``calibration_config.json``'s ``reward``): a readable name
    and the reward's fingerprint (:func:`hf_stackshape.rewards.reward_fingerprint`)."""
    from ..rewards.adapters import as_reward_function, reward_fingerprint

    reward = as_reward_function(reward)
    return {"name": str(reward.name_or_path), "fingerprint": reward_fingerprint(reward)}


def check_calibration_reward(folder, reward, spec: Optional[str] = None) -> None:
    """Refuse to guide with ``reward`` by the thresholds of a calibration made with another reward.

    ``m*(x)`` lives on the scale of the reward it was solved from (Wang et al., 2026): thresholds calibrated
    with one reward, used to shape another, put the sigmoid's midpoint at a meaningless place. The reward a
    calibration used is recorded in ``<folder>/calibration_config.json`` by
    :class:`~hf_stackshape.calibration.ThresholdCalibrator`; a folder without that record (made by hand or by an
    older version) is accepted with a warning.

    Raises:
        ValueError: naming both rewards, what differs, and the two ways out.
    """
    from ..rewards.adapters import reward_fingerprint
    from ..utils.io import read_json
    from ..utils.runs import manifest_differences

    path = os.path.join(os.fspath(folder), "calibration_config.json")
    record = None
    if os.path.isfile(path):
        config = read_json(path)
        record = config.get(REWARD_KEY) if isinstance(config, dict) else None
    if not isinstance(record, dict) or "fingerprint" not in record:
        logger.warning(
            "%s does not record the reward its thresholds were calibrated with (made by hand or by an older "
            "version); make sure it is the guiding reward %r.", folder, spec,
        )
        return
    current = reward_fingerprint(reward)
    changes = manifest_differences({"fingerprint": record["fingerprint"]}, {"fingerprint": current})
    if not changes:
        return
    ours = spec if spec is not None else getattr(reward, "name_or_path", type(reward).__name__)
    raise ValueError(
        f"The thresholds m*(x) in {folder} were calibrated with the reward {record.get('name')!r}, but the guiding "
        f"reward is {ours!r} (differs: {'; '.join(changes)}): m*(x) would be on the wrong reward's scale. "
        f"Calibrate with this reward (`stackshape calibrate --reward_model {ours} --output_dir NEW_DIR`) and pass "
        f"--thresholds_from NEW_DIR, or guide with the calibration's reward ({record.get('name')!r})."
    )
