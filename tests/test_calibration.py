"""ThresholdCalibrator end to end on tiny random models: sampling, scoring, thresholds, cache and resume."""

import json
import logging
import math

import pytest
import torch
from datasets import Dataset

from hf_stackshape.calibration import (
    CalibrationConfig,
    ThresholdCalibrator,
    chunk_seed,
    map_thresholds,
    recompute_thresholds,
)
from hf_stackshape.rewards import CallableReward, HFRewardModel, RewardFunction
from hf_stackshape.core.shaping import solve_threshold

PROMPTS = ["Hello there", "Tell me a story about a cat.", "Hello there", "2 + 2 =", "Why is the sky blue?"]
# top_p=1.0 skips the vocabulary sort of nucleus sampling (most of the time on CPU); the reference test
# below checks the default top-p 0.9 path.
SMALL = dict(num_samples=3, max_new_tokens=6, chunk_size=2, top_p=1.0, show_progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def rm(tiny_rm_model, tokenizer):
    return HFRewardModel(tiny_rm_model, tokenizer, batch_size=8)


@pytest.fixture
def make(tiny_lm, tokenizer, rm):
    def build(reward=None, **kwargs):
        reward = reward if reward is not None else rm
        return ThresholdCalibrator(tiny_lm, tokenizer, reward, **{**SMALL, **kwargs})

    return build


class FlakyReward(RewardFunction):
    """Wraps a reward; raises on call number ``fail_on`` (simulates a crash in the middle of a run)."""

    def __init__(self, inner, fail_on):
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    def score(self, prompts, responses):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("simulated crash")
        return self.inner.score(prompts, responses)


def test_samples_pairing_and_thresholds_match_a_plain_reference(make, tiny_lm, tokenizer, rm, monkeypatch):
    cal = make(top_p=0.9)
    grouped_calls, grouped = [], rm.score_grouped
    monkeypatch.setattr(rm, "score_grouped", lambda p, r: grouped_calls.append(len(p)) or grouped(p, r))
    ds = cal.calibrate(PROMPTS)
    # An HFRewardModel scores each chunk with one prompt-prefix-sharing call (N samples per prompt).
    assert grouped_calls == [2, 2, 1]
    columns = ["prompt_index", "prompt", "responses", "rewards", "threshold", "base_mean_reward"]
    assert ds.column_names == columns
    assert ds["prompt"] == PROMPTS and ds["prompt_index"] == list(range(len(PROMPTS)))
    # Reference: chunk k is one plain `generate` call over the chat-formatted prompts, seeded by (seed, k).
    for k, start in enumerate(range(0, len(PROMPTS), 2)):
        chunk = PROMPTS[start : start + 2]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in chunk]
        enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        torch.manual_seed(chunk_seed(0, k))
        out = tiny_lm.generate(**enc, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=6,
                               num_return_sequences=3, pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i in range(len(chunk)):
            assert ds[start + i]["responses"] == expected[3 * i : 3 * i + 3]
    for row in ds:
        # Each reward is the RM's score of that very (prompt, response) pair, scored alone.
        alone = [rm.score([row["prompt"]], [r]).item() for r in row["responses"]]
        assert row["rewards"] == pytest.approx(alone, abs=1e-5)
        u = torch.tensor([row["rewards"]], dtype=torch.float64)
        assert row["threshold"] == pytest.approx(solve_threshold(u, 0.667, 15.0, safeguards="cd").item())
        assert min(row["rewards"]) <= row["threshold"] <= max(row["rewards"])
        assert row["base_mean_reward"] == pytest.approx(sum(row["rewards"]) / 3)
    # Duplicate prompts are kept as separate rows with their own samples.
    assert ds[0]["responses"] != ds[2]["responses"]


def test_seeded_reproducible_and_independent_of_cache(make, tmp_path):
    first = make().calibrate(PROMPTS).to_list()
    assert make().calibrate(PROMPTS, output_dir=tmp_path / "a").to_list() == first
    other = make(seed=1).calibrate(PROMPTS).to_list()
    assert [r["responses"] for r in other] != [r["responses"] for r in first]
    # Samples of a prompt depend on (seed, chunk) only: the first chunk is unchanged by extra prompts.
    longer = make().calibrate(PROMPTS + ["one more prompt"]).to_list()
    assert longer[:4] == first[:4]


def test_dataset_input_and_saved_outputs(make, tmp_path):
    source = Dataset.from_dict({"text": PROMPTS[:3], "id": [1, 2, 3]})
    ds = make().calibrate(source, column="text", output_dir=tmp_path)
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "dataset")).to_list() == ds.to_list()
    lines = [json.loads(line) for line in (tmp_path / "calibration.jsonl").read_text().splitlines()]
    assert lines == ds.to_list()
    with pytest.raises(ValueError, match="no column 'prompt'"):
        make().calibrate(source)


def test_resume_after_crash_recomputes_only_unfinished_chunks(make, rm, tmp_path):
    # The reference scores through the same wrapper (plain `score`, not `score_grouped`): exact equality.
    reference = make(reward=FlakyReward(rm, fail_on=-1)).calibrate(PROMPTS).to_list()
    flaky = FlakyReward(rm, fail_on=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make(reward=flaky).calibrate(PROMPTS, output_dir=tmp_path)
    assert (tmp_path / "chunk-00000.json").is_file() and not (tmp_path / "chunk-00001.json").exists()
    first_meta = json.loads((tmp_path / "chunk-00000.json").read_text())

    counting = FlakyReward(rm, fail_on=-1)
    cal = make(reward=counting)
    resumed = cal.calibrate(PROMPTS, output_dir=tmp_path)
    assert cal.last_run["reused"] == [0] and cal.last_run["computed"] == [1, 2]
    assert counting.calls == 2
    assert json.loads((tmp_path / "chunk-00000.json").read_text())["run_id"] == first_meta["run_id"]
    assert resumed.to_list() == reference

    # A finished run resumes with nothing to do.
    again = make(reward=counting)
    assert again.calibrate(PROMPTS, output_dir=tmp_path).to_list() == reference
    assert again.last_run["computed"] == [] and counting.calls == 2


@pytest.mark.parametrize("damage", ["truncate", "edit", "drop_meta"])
def test_corrupted_chunk_is_detected_and_recomputed(make, tmp_path, caplog, damage):
    reference = make().calibrate(PROMPTS, output_dir=tmp_path).to_list()
    data = tmp_path / "chunk-00001.jsonl"
    raw = data.read_bytes()
    if damage == "truncate":
        data.write_bytes(raw[: len(raw) // 2])
    elif damage == "edit":
        data.write_bytes(raw.replace(b'"rewards": [', b'"rewards": [1.0, ', 1)[: len(raw)])
    else:
        (tmp_path / "chunk-00001.json").unlink()
    cal = make()
    with caplog.at_level(logging.WARNING, logger="hf_stackshape.calibration"):
        ds = cal.calibrate(PROMPTS, output_dir=tmp_path)
    assert cal.last_run["computed"] == [1] and cal.last_run["reused"] == [0, 2]
    assert ds.to_list() == reference
    if damage != "drop_meta":
        assert "corrupted" in caplog.text and "chunk 1" in caplog.text


def test_changed_settings_refused_overwritten_and_beta_only_rethresholds(make, tmp_path):
    base = make().calibrate(PROMPTS, output_dir=tmp_path)
    with pytest.raises(ValueError, match="num_samples: 3 -> 2"):
        make(num_samples=2).calibrate(PROMPTS, output_dir=tmp_path)
    # Another prompt list is not another setting: chunks whose prompts are unchanged are reused.
    fewer = make()
    assert fewer.calibrate(PROMPTS[:4], output_dir=tmp_path).to_list() == base.to_list()[:4]
    assert fewer.last_run["computed"] == [] and fewer.last_run["reused"] == [0, 1]
    more = make()
    extended = more.calibrate(PROMPTS + ["An extra prompt"], output_dir=tmp_path).to_list()
    assert more.last_run["computed"] == [2] and extended[:4] == base.to_list()[:4]
    assert extended[4]["prompt"] == PROMPTS[4] and len(extended) == 6
    # beta / bound only enter the threshold: nothing is resampled, thresholds are re-solved.
    cal = make(beta=0.25, bound=3.0)
    rethresholded = cal.calibrate(PROMPTS + ["An extra prompt"], output_dir=tmp_path).select(range(5))
    assert cal.last_run["computed"] == []
    assert rethresholded["rewards"][:4] == base["rewards"][:4]
    expected = recompute_thresholds(base.select(range(4)), beta=0.25, bound=3.0)["threshold"]
    assert rethresholded["threshold"][:4] == expected
    assert rethresholded["threshold"][:4] != base["threshold"][:4]
    fresh = make(num_samples=2, overwrite=True)
    ds = fresh.calibrate(PROMPTS, output_dir=tmp_path)
    assert fresh.last_run["computed"] == [0, 1, 2] and len(ds[0]["responses"]) == 2


def test_recompute_and_map_thresholds():
    rewards = [[0.0, 1.0, 2.0, 5.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 0.5, 0.2, 0.1]]
    ds = Dataset.from_dict({"prompt": ["a", "b", "c"], "rewards": rewards})
    for beta, bound in [(1.0, 1.0), (0.1, 12.0)]:
        out = recompute_thresholds(ds, beta=beta, bound=bound, safeguards="none")
        expected = solve_threshold(torch.tensor(rewards, dtype=torch.float64), beta, bound).tolist()
        assert out["threshold"] == pytest.approx(expected)
        assert out["threshold"][1] == 1.0  # all rewards tie -> that value
    assert out["base_mean_reward"] == pytest.approx([2.0, 1.0, -0.55])
    targets = Dataset.from_dict({"prompt": ["c", "a", "c"], "x": [1, 2, 3]})
    mapped = map_thresholds(targets, out)
    assert mapped["threshold"] == [out["threshold"][2], out["threshold"][0], out["threshold"][2]]
    with pytest.raises(ValueError, match="'zzz' has no calibrated threshold"):
        map_thresholds(Dataset.from_dict({"prompt": ["zzz"]}), out)
    with pytest.raises(ValueError, match=r"Prompt 1 \('b'\) has a non-finite reward"):
        nan_rows = Dataset.from_dict({"prompt": ["a", "b"], "rewards": [[0.0], [float("nan")]]})
        recompute_thresholds(nan_rows, 1.0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        recompute_thresholds(ds, beta=0.0, bound=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beta=0.0), "beta"),
        (dict(beta=-1.0), "beta"),
        (dict(bound=0.0), "bound"),
        (dict(num_samples=0), "num_samples"),
        (dict(top_p=0.0), "top_p"),
        (dict(safeguards="nope"), "safeguards"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CalibrationConfig(**kwargs)


def test_bad_inputs_raise(make):
    with pytest.raises(ValueError, match="empty"):
        make().calibrate([])
    with pytest.raises(ValueError, match="Prompt 1 is a int"):
        make().calibrate(["ok", 3])
    with pytest.raises(ValueError, match="Unknown calibration settings"):
        make(temprature=0.5)

    class NaNOnCat(RewardFunction):
        def score(self, prompts, responses):
            return torch.tensor([math.nan if "cat" in p else 0.0 for p in prompts])

    with pytest.raises(ValueError, match=r"prompt 1 \('Tell me a story about a cat.'\)"):
        make(reward=NaNOnCat()).calibrate(PROMPTS)


def test_long_prompts_keep_their_end_with_a_warning(make, tokenizer, tiny_rm_model, caplog):
    long_prompt = " ".join(f"word{i}" for i in range(60))
    cal = make(use_chat_template=False, max_prompt_length=16)
    ids = tokenizer(long_prompt)["input_ids"]
    with caplog.at_level(logging.WARNING, logger="hf_stackshape.calibration"):
        enc = cal.encode_prompts(["short", long_prompt])
    assert enc["input_ids"][1].tolist() == ids[-16:]
    assert enc["attention_mask"][0].sum() == len(tokenizer("short")["input_ids"])
    assert "Prompt 1" in caplog.text and "keeping its last 16 tokens" in caplog.text
    caplog.clear()
    small_rm = HFRewardModel(tiny_rm_model, tokenizer, max_length=32)
    with caplog.at_level(logging.WARNING, logger="hf_stackshape.calibration"):
        ds = make(reward=small_rm, use_chat_template=False, max_prompt_length=16).calibrate([long_prompt])
    assert "reward model's max_length 32" in caplog.text
    assert all(math.isfinite(v) for v in ds[0]["rewards"])
    with pytest.raises(ValueError, match="leaves no room"):
        make(max_new_tokens=512)


def test_empty_responses_are_scored_as_given(make, tiny_lm, tokenizer):
    # Bias the model's own generation config so that EOS comes first: every response is empty.
    tiny_lm.generation_config.sequence_bias = [[[tokenizer.eos_token_id], 1e4]]
    seen = []

    def reward(prompt, response):
        seen.append(response)
        return float(len(prompt))

    ds = make(reward=CallableReward(reward)).calibrate(PROMPTS[:2])
    assert seen == [""] * 6
    assert ds["responses"] == [[""] * 3, [""] * 3]
    assert ds["rewards"] == [[11.0] * 3, [28.0] * 3] and ds["threshold"] == [11.0, 28.0]


@pytest.mark.slow
def test_smollm2_calibration(smollm2, tiny_rm_model):
    model, tokenizer = smollm2
    rm = HFRewardModel(tiny_rm_model, tokenizer)
    cal = ThresholdCalibrator(model, tokenizer, rm, num_samples=2, max_new_tokens=8, show_progress=False)
    ds = cal.calibrate(["What is the capital of France?", "Write a haiku about rain."])
    assert len(ds) == 2 and all(len(r) == 2 for r in ds["responses"])
    # A real instruct model answers in words (a random one would emit token soup more often than not).
    assert sum(any(c.isalpha() for c in r) for rs in ds["responses"] for r in rs) >= 3
    for row in ds:
        assert min(row["rewards"]) <= row["threshold"] <= max(row["rewards"])
    assert ds.to_list() == cal.calibrate(ds["prompt"]).to_list()


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    from hf_stackshape.cli import main

    def run(*argv):
        code = main(["calibrate", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    out = ("--output_dir", str(tmp_path))
    assert "Prompt file not found" in run("--prompts", str(tmp_path / "nope.jsonl"), *out)
    (tmp_path / "p.jsonl").write_bytes(b'{"text": "a"}\n{"text": "\xc3("}\n')
    assert "line 2 is not valid UTF-8" in run("--prompts", str(tmp_path / "p.jsonl"), *out)
    (tmp_path / "q.jsonl").write_text('{"text": "a"}\n')
    assert "no string field 'prompt'" in run("--prompts", str(tmp_path / "q.jsonl"), *out)
    assert "--output_dir" in run("--prompts", str(tmp_path / "q.jsonl"), "--column", "text")
    assert "beta" in run("--prompts", str(tmp_path / "q.jsonl"), "--beta", "0", *out)


def test_sampling_inherits_the_models_generation_config(make, tiny_lm):
    tiny_lm.generation_config.top_k = 3
    tiny_lm.generation_config.repetition_penalty = 1.2
    inherited = make().generation_config()
    assert inherited.top_k == 3 and inherited.repetition_penalty == 1.2
    assert inherited.temperature == 0.7 and inherited.num_return_sequences == 3 and inherited.do_sample
    assert make(top_k=0).generation_config().top_k == 0 and make(top_k=7).generation_config().top_k == 7
    with pytest.raises(ValueError, match="top_k"):
        CalibrationConfig(top_k=-1)


def test_paper_preset():
    from hf_stackshape.core.presets import get_preset

    paper = CalibrationConfig.from_preset("paper")
    for key, value in get_preset("paper", "calibration").items():
        assert getattr(paper, key) == value
    assert CalibrationConfig.from_preset("paper", num_samples=2, seed=3).num_samples == 2
    with pytest.raises(ValueError, match="Unknown calibration settings"):
        CalibrationConfig.from_preset("paper", temprature=1.0)
    with pytest.raises(ValueError, match="Unknown preset"):
        CalibrationConfig.from_preset("nope")


def _write_reward_modules(folder, monkeypatch):
    for name, factor in (("rewards_a", 1.0), ("rewards_b", -1.0)):
        (folder / f"{name}.py").write_text(f"def score(response):\n    return {factor} * len(response)\n")
    monkeypatch.syspath_prepend(str(folder))


def test_changed_model_reward_or_generation_config_is_refused_naming_the_key(
    make, tiny_lm, tmp_path, monkeypatch
):
    from hf_stackshape.rewards import load_reward
    from hf_stackshape.utils.runs import RunMismatchError

    _write_reward_modules(tmp_path, monkeypatch)
    out = tmp_path / "run"
    make(reward=load_reward("rewards_a:score", trust_remote_code=True)).calibrate(PROMPTS[:2], output_dir=out)
    # Another module's function of the same name is another reward.
    with pytest.raises(RunMismatchError, match=r"reward\.fn\.module: 'rewards_a' -> 'rewards_b'"):
        make(reward=load_reward("rewards_b:score", trust_remote_code=True)).calibrate(PROMPTS[:2], output_dir=out)
    # The model's generation_config shapes the samples.
    tiny_lm.generation_config.repetition_penalty = 1.3
    with pytest.raises(RunMismatchError, match=r"model\.generation_config\.repetition_penalty: '<missing>' -> 1\.3"):
        make(reward=load_reward("rewards_a:score", trust_remote_code=True)).calibrate(PROMPTS[:2], output_dir=out)
    tiny_lm.generation_config.repetition_penalty = None
    # Other weights under the same name are another model.
    original = tiny_lm.lm_head.weight.detach().clone()
    with torch.no_grad():
        tiny_lm.lm_head.weight.view(-1)[5] += 1.0
    with pytest.raises(RunMismatchError, match=r"model\.weights: '\w+' -> '\w+'.*--overwrite"):
        make(reward=load_reward("rewards_a:score", trust_remote_code=True)).calibrate(PROMPTS[:2], output_dir=out)
    with torch.no_grad():
        tiny_lm.lm_head.weight.copy_(original)
    cal = make(reward=load_reward("rewards_a:score", trust_remote_code=True))
    cal.calibrate(PROMPTS[:2], output_dir=out)  # the very same settings resume
    assert cal.last_run["computed"] == [] and cal.last_run["reused"] == [0]


def test_overwrite_removes_the_whole_old_run(make, tmp_path):
    out = tmp_path / "run"
    make().calibrate(PROMPTS, output_dir=out)
    assert {"dataset", "calibration.jsonl", "run.json", "chunk-00002.json"} <= set(p.name for p in out.iterdir())
    (out / "notes-from-the-old-run.txt").write_text("old")
    fresh = make(num_samples=2, overwrite=True)
    ds = fresh.calibrate(PROMPTS[:2], output_dir=out)
    assert fresh.last_run["computed"] == [0]
    # Only the new run's files: no chunk 1 or 2, no old notes, the new dataset and manifest.
    names = sorted(p.name for p in out.iterdir())
    assert names == ["calibration.jsonl", "calibration_config.json", "chunk-00000.json", "chunk-00000.jsonl",
                     "dataset", "run.json"]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["fingerprint"]["sampling"]["num_samples"] == 2 and manifest["kind"] == "calibrate"
    assert len(json.loads((out / "calibration.jsonl").read_text().splitlines()[0])["responses"]) == 2
    assert len(ds[0]["responses"]) == 2 and sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]


def test_kill_between_chunk_data_and_sidecar_and_inside_a_temp_write_resumes(make, tmp_path, monkeypatch):
    from hf_stackshape.calibration import store as store_module

    reference = make().calibrate(PROMPTS).to_list()
    out = tmp_path / "run"
    real_write_json = store_module.atomic_write_json
    calls = []

    def killed_before_sidecar_of_chunk_1(path, obj):
        calls.append(path.name)
        if path.name == "chunk-00001.json":
            raise KeyboardInterrupt  # the process dies after the data, before its sidecar
        real_write_json(path, obj)

    monkeypatch.setattr(store_module, "atomic_write_json", killed_before_sidecar_of_chunk_1)
    with pytest.raises(KeyboardInterrupt):
        make().calibrate(PROMPTS, output_dir=out)
    monkeypatch.undo()
    assert (out / "chunk-00001.jsonl").is_file() and not (out / "chunk-00001.json").exists()
    # A kill inside the next temp write: a half-written hidden temp file, never read as a chunk.
    (out / ".chunk-00002.jsonl.k1ll3d.tmp").write_bytes(b'{"prompt_index": 4, "prompt": "Why')
    # Data without its sidecar, with other content than a fresh sample would give, must not be trusted.
    (out / "chunk-00001.jsonl").write_text('{"prompt_index": 2, "prompt": "Hello there", "rewards": [9]}\n')
    cal = make()
    resumed = cal.calibrate(PROMPTS, output_dir=out)
    assert cal.last_run["reused"] == [0] and cal.last_run["computed"] == [1, 2]
    assert resumed.to_list() == reference
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_a_second_concurrent_calibration_refuses(make, tmp_path):
    from hf_stackshape.utils.runs import RunLockedError, open_run

    out = tmp_path / "run"
    cal = make()
    with open_run(out, cal.fingerprint(), kind="calibrate"):  # another run holds the folder
        with pytest.raises(RunLockedError, match="in use by process"):
            make().calibrate(PROMPTS, output_dir=out)
    make().calibrate(PROMPTS, output_dir=out)


def test_cli_overwrite_and_preset(tmp_path, tiny_lm, tiny_rm_model, tokenizer, capsys):
    from hf_stackshape.cli import main
    from hf_stackshape.commands import calibrate as command

    assert command.PRESET_COMPONENTS == ("calibration",)
    assert command.CalibrateArguments().reward_model == "demo"
    import dataclasses as dc

    for f in dc.fields(CalibrationConfig) + dc.fields(command.CalibrateArguments):
        assert "default" not in f.metadata.get("help", "").lower(), f.name

    for model, name in ((tiny_lm, "lm"), (tiny_rm_model, "rm")):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    (tmp_path / "p.jsonl").write_text('{"prompt": "Hi"}\n{"prompt": "Tell me a joke."}\n')
    out = tmp_path / "run"
    base = ["calibrate", "--prompts", str(tmp_path / "p.jsonl"), "--model", str(tmp_path / "lm"), "--reward_model",
            str(tmp_path / "rm"), "--output_dir", str(out), "--show_progress", "false", "--preset", "paper",
            "--max_new_tokens", "4", "--top_p", "1.0"]
    assert main([*base, "--num_samples", "2"]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "run.json").read_text())
    # The preset's values (temperature 0.7, the model's top-k) with the explicit flags on top.
    assert manifest["fingerprint"]["sampling"] == dict(num_samples=2, max_new_tokens=4, temperature=0.7, top_p=1.0,
                                                        top_k=None, chunk_size=8, seed=0,
                                                        dialogue_prompts_as_text=True, stop_at_new_turn=True)
    capsys.readouterr()
    assert main([*base, "--num_samples", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bars
    assert err.startswith("stackshape calibrate: error:")
    assert "sampling.num_samples: 2 -> 3" in err and "--overwrite" in err
    assert main([*base, "--num_samples", "3", "--overwrite"]) == 0, capsys.readouterr().err
    assert len(json.loads((out / "calibration.jsonl").read_text().splitlines()[0])["responses"]) == 3
