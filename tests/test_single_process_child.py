"""Running a function as one process would from a rank of a torchrun launch (utils.distributed.run_alone): the
launch variables are removed from the child's environment, the rest is kept, results and errors come back."""

import os
import subprocess

import pytest

from hf_stackshape.utils.distributed import (
    Processes, SingleProcessError, run_alone, single_process_env,
)

# What torchrun 2.x, accelerate launch and mpirun set in a rank's environment (a torchrun rank's real list).
LAUNCH = {
    "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500", "GROUP_RANK": "0", "GROUP_WORLD_SIZE": "1", "ROLE_RANK": "1", "ROLE_WORLD_SIZE": "2",
    "ROLE_NAME": "default", "TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_RESTART_COUNT": "0",
    "TORCHELASTIC_MAX_RESTARTS": "0", "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_ERROR_FILE": "/tmp/e",
    "ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_CPU": "true", "OMPI_COMM_WORLD_SIZE": "2",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1", "PMI_RANK": "1", "PMI_SIZE": "2",
}
KEEP = {"OMP_NUM_THREADS": "1", "MKL_CBWR": "AUTO,STRICT", "PYTHONPATH": "/x", "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "2,3", "RANKING": "keep me", "MY_WORLD_SIZE": "3"}


def test_single_process_env_removes_the_launch_and_keeps_the_rest():
    assert single_process_env({**LAUNCH, **KEEP}) == KEEP
    # One GPU: rank 0's device (cuda:i) is the child's only one, whatever the parent saw.
    assert single_process_env(KEEP, device="cuda:1")["CUDA_VISIBLE_DEVICES"] == "3"
    assert single_process_env({}, device="cuda:1")["CUDA_VISIBLE_DEVICES"] == "1"
    assert single_process_env(KEEP, device="cpu")["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_run_alone_runs_in_a_child_without_launch_variables(monkeypatch):
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STACKSHAPE_TEST_MARK", "kept")
    # The child runs `env` (which prints the environment it inherits from the child); arguments travel pickled.
    printed = run_alone(subprocess.check_output, ["env", "-0"])
    child_env = dict(item.split("=", 1) for item in printed.decode().split("\0") if item)
    assert child_env["STACKSHAPE_TEST_MARK"] == "kept" and child_env["PATH"] == os.environ["PATH"]
    assert not set(LAUNCH) & set(child_env)


def test_run_alone_reports_the_childs_error():
    with pytest.raises(SingleProcessError, match=r"listdir failed in its single-process child.*FileNotFoundError"):
        run_alone(os.listdir, "/no/such/folder")


def test_map_alone_in_one_process_calls_here_in_order():
    assert Processes(None).map_alone(pow, [(2, 3), (3, 2), (5, 1)]) == [8, 9, 5]
