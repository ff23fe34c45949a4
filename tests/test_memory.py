"""Memory on the books (hf_stackshape.utils.memory): a batch that runs out of memory is retried in halves, one item that
does not fit fails naming the memory it asked for, and peak memory is measured per block. The out-of-memory
errors are injected (torch.OutOfMemoryError, what CUDA raises), so this runs on a CPU; tests/test_gpu.py provokes
a real one on a GPU."""

import pytest
import torch

from hf_stackshape.utils.memory import BatchMemoryError, is_out_of_memory, map_batches

OOM_TEXT = "CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has a total capacity of 79.19 GiB"


def oom_above(limit, calls):
    def fn(batch):
        calls.append(list(batch))
        if len(batch) > limit:
            raise torch.OutOfMemoryError(OOM_TEXT)
        return [x * 10 for x in batch]

    return fn


def test_map_batches_halves_a_batch_that_does_not_fit_and_keeps_the_smaller_size():
    calls = []
    out = map_batches(oom_above(2, calls), list(range(11)), 8)
    assert [x for chunk in out for x in chunk] == [x * 10 for x in range(11)]
    sizes = [len(c) for c in calls]
    assert sizes == [8, 4, 2, 2, 2, 2, 2, 1], sizes  # 8 and 4 fail; 2 is kept for the rest


def test_map_batches_without_oom_runs_the_given_batches():
    calls = []
    map_batches(oom_above(100, calls), list(range(5)), 2)
    assert [len(c) for c in calls] == [2, 2, 1]


def test_one_item_that_does_not_fit_names_the_memory_it_needed():
    with pytest.raises(BatchMemoryError, match=r"One pair alone does not fit.*asked for 3\.50 GiB"):
        map_batches(oom_above(0, []), [1, 2, 3], 4, what="pair")


def test_other_errors_are_not_retried():
    calls = []

    def fn(batch):
        calls.append(batch)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        map_batches(fn, [1, 2, 3, 4], 4)
    assert len(calls) == 1


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_map_batches_rejects_a_bad_batch_size(size):
    with pytest.raises(ValueError, match="batch_size"):
        map_batches(lambda b: b, [1], size)


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an accelerator error


def test_reward_model_scores_survive_an_out_of_memory_batch(reward, monkeypatch):
    prompts = ["Hi", "What is the sky?", "Tell me a story.", "Why?", "Name a color.", "Count to three."]
    responses = ["Hello there.", "Blue.", "Once upon a time.", "Because.", "Red", "One two three"]
    reward.batch_size = 4
    expected = reward.score(prompts, responses)
    real = type(reward).score_ids
    sizes = []

    def score_ids(self, input_ids, attention_mask=None):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 1:
            raise torch.OutOfMemoryError(OOM_TEXT)
        return real(self, input_ids, attention_mask)

    monkeypatch.setattr(type(reward), "score_ids", score_ids)
    got = reward.score(prompts, responses)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert sizes[:3] == [4, 2, 1] and set(sizes[3:]) == {1}


def test_grouped_reward_scores_survive_an_out_of_memory_batch(reward, monkeypatch):
    prompts, groups = ["Hi", "What is the sky?", "Why?"], [["Hello.", "Hey"], ["Blue.", "Grey"], ["Because.", "So"]]
    expected = reward.score_grouped(prompts, groups)
    real = type(reward)._score_shared_prefix
    sizes = []

    def shared(self, ids, batch, n, pad):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError(OOM_TEXT)
        return real(self, ids, batch, n, pad)

    monkeypatch.setattr(type(reward), "_score_shared_prefix", shared)
    torch.testing.assert_close(reward.score_grouped(prompts, groups), expected, rtol=1e-5, atol=1e-5)
    assert sizes[0] == 3 and sizes[-1] == 1 and len(sizes) >= 4


def test_reward_model_names_the_memory_when_one_pair_does_not_fit(reward, monkeypatch):
    def score_ids(self, input_ids, attention_mask=None):
        raise torch.OutOfMemoryError(OOM_TEXT)

    monkeypatch.setattr(type(reward), "score_ids", score_ids)
    with pytest.raises(BatchMemoryError, match="One pair alone.*3.50 GiB"):
        reward.score(["Hi"], ["Hello"])


_PEAK_PROBE = """
import torch
from hf_stackshape.utils.memory import PeakMemory

with PeakMemory("cpu") as before:
    pass
with PeakMemory("cpu") as peak:
    block = torch.ones(64 * 1024 * 1024, dtype=torch.uint8)  # 64 MiB, touched
    del block
assert peak.bytes >= 64 * 1024**2, peak.bytes
if "VmHWM" in peak.source:  # the peak is reset on entry: the next block does not see this one's
    assert before.bytes + 60 * 1024**2 <= peak.bytes, (before.bytes, peak.bytes)
    with PeakMemory("cpu") as after:
        pass
    assert after.bytes + 60 * 1024**2 <= peak.bytes, (after.bytes, peak.bytes)
row = peak.as_dict("run_peak_memory")
assert row["run_peak_memory_mib"] >= 64 and row["run_peak_memory_source"] == peak.source, row
print("ok", peak.source)
"""


@pytest.mark.slow  # a fresh Python process
def test_peak_memory_on_cpu_sees_an_allocation_inside_the_block():
    # In a fresh process: a long-lived one (the test session) may serve the 64 MiB from memory it already
    # holds, and then no peak moves, whatever PeakMemory does.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]
