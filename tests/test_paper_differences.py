"""The last differences between ``--preset paper`` and the authors' scripts (issue 19), each pinned to hand-made
cases: HH-format prompts rendered as text, rollouts cut at a new "Human:" turn, the value head's data split and
lengths, the judge's reply parsing, and the half-precision reward up-cast before the threshold solve."""

import re

import pytest
import torch

from hf_stackshape.calibration import CalibrationConfig, ThresholdCalibrator
from hf_stackshape.utils.dialogue import STOP_STRINGS, cut_at_new_turn, is_dialogue_prompt, render_prompt

pytestmark = pytest.mark.usefixtures("one_thread")

HH = "\n\nHuman: How do I bake bread?\n\nAssistant:"
PLAIN = "How do I bake bread?"
ANSWER = "Mix flour and water."
TURN = "\nHuman: and cake?"  # the user's next turn, which a base model continuing the dialogue writes


def _length(response):
    return float(len(response))


# ------------------------------------------------------------------------------------------ dialogue helpers


def test_dialogue_prompt_detection_and_rendering(tokenizer):
    assert is_dialogue_prompt(HH) and is_dialogue_prompt("Assistant: hi") and not is_dialogue_prompt(PLAIN)
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": HH}], tokenize=False, add_generation_prompt=True
    )
    assert templated != HH
    # Our default: the chat template on every prompt; the paper's: HH turns stay text, other prompts are templated.
    assert render_prompt(tokenizer, HH, chat_template=True) == (templated, True)
    assert render_prompt(tokenizer, HH, chat_template=True, dialogue_as_text=True) == (HH, False)
    plain = render_prompt(tokenizer, PLAIN, chat_template=True, dialogue_as_text=True)
    assert plain[1] and plain[0] != PLAIN
    assert render_prompt(tokenizer, PLAIN, chat_template=False, dialogue_as_text=True) == (PLAIN, False)


@pytest.mark.parametrize(
    "text, cut",
    [
        (ANSWER + TURN, ANSWER),
        (ANSWER + "\n\nHuman: more\n\nAssistant: sure", ANSWER),
        (ANSWER + "  \n\n  human : more", ANSWER),  # any case, blank space around the name
        (ANSWER + "\r\nUser: more", ANSWER),
        (ANSWER + "\nAssistant: more", ANSWER + "\nAssistant: more"),  # only a *user* turn ends the answer
        ("A human: one person.", "A human: one person."),  # no line break before it: not a turn
        ("Human: at the very start", "Human: at the very start"),
        ("\nHuman: only a turn", ""),
        (ANSWER, ANSWER),
    ],
)
def test_cut_at_new_turn(text, cut):
    assert cut_at_new_turn(text) == cut
    assert all(cut_at_new_turn("x" + s + " y") == "x" for s in STOP_STRINGS)


# ------------------------------------------------------------------------------------------ a scripted base model


class Script:
    """Forces row ``b`` of every ``generate`` call of ``model`` to write ``texts[b % len(texts)]`` then EOS, through
    a hook on the LM head (the rest of the model, its cache and generate's stopping run as usual); ``steps``
    counts the decoding steps of the last call."""

    def __init__(self, model, tokenizer, texts):
        self.ids = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
        self.eos = tokenizer.eos_token_id
        self.steps = 0
        self.handles = [
            model.model.register_forward_pre_hook(self.start, with_kwargs=True),
            model.lm_head.register_forward_hook(self.hook),
        ]

    def start(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:  # prefill: a new generate call
            self.steps = 0

    def hook(self, module, inputs, logits):
        forced = torch.full_like(logits[:, -1], -1e4)
        for row in range(logits.shape[0]):
            script = self.ids[row % len(self.ids)]
            token = script[self.steps] if self.steps < len(script) else self.eos
            forced[row, token] = 1e4
        self.steps += 1
        logits = logits.clone()
        logits[:, -1] = forced
        return logits

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _calibrator(tiny_lm, tokenizer, **kwargs):
    settings = dict(num_samples=2, max_new_tokens=24, top_p=1.0, show_progress=False, chunk_size=4)
    return ThresholdCalibrator(tiny_lm, tokenizer, _length, **{**settings, **kwargs})


def test_paper_calibration_renders_hh_prompts_as_text_and_cuts_rollouts_at_human(tiny_lm, tokenizer):
    paper = CalibrationConfig.from_preset("paper")
    assert paper.dialogue_prompts_as_text and paper.stop_at_new_turn and paper.chat_template
    assert not CalibrationConfig().dialogue_prompts_as_text and not CalibrationConfig().stop_at_new_turn

    ours = _calibrator(tiny_lm, tokenizer, use_chat_template=True)
    theirs = _calibrator(tiny_lm, tokenizer, config=paper, num_samples=2, max_new_tokens=24, top_p=1.0,
                         show_progress=False)
    # An HH prompt: templated by default, text (with the tokenizer's own special tokens) under the paper preset.
    assert ours.format_prompt(HH) != HH and theirs.format_prompt(HH) == HH
    assert theirs.format_prompt(PLAIN) == ours.format_prompt(PLAIN) != PLAIN
    batch = theirs.encode_prompts([HH, PLAIN])
    hh_ids = tokenizer(HH, add_special_tokens=True)["input_ids"]
    plain_ids = tokenizer(ours.format_prompt(PLAIN), add_special_tokens=False)["input_ids"]
    for row, expected in zip(batch["input_ids"].tolist(), (hh_ids, plain_ids)):
        assert row[len(row) - len(expected):] == expected

    script = Script(tiny_lm, tokenizer, [ANSWER + TURN + " I want a cake recipe too.", "Fine answer."])
    try:
        cut = theirs.calibrate([HH])
        stopped_after = script.steps
        kept = _calibrator(tiny_lm, tokenizer, dialogue_prompts_as_text=True).calibrate([HH])
        full_after = script.steps
    finally:
        script.remove()
    assert cut["responses"][0] == [ANSWER, "Fine answer."]
    assert cut["rewards"][0] == [float(len(ANSWER)), float(len("Fine answer."))]  # the reward saw the cut text
    assert kept["responses"][0] == [ANSWER + TURN + " I want a cake recipe too.", "Fine answer."]
    assert stopped_after < full_after  # generation stopped at the new turn instead of writing it out


def test_stop_switches_enter_the_fingerprint_only_when_on():
    assert "stop_at_new_turn" not in CalibrationConfig().sampling_settings()
    on = CalibrationConfig(stop_at_new_turn=True, dialogue_prompts_as_text=True).sampling_settings()
    assert on["stop_at_new_turn"] is True and on["dialogue_prompts_as_text"] is True
    with pytest.raises(ValueError, match="stop_at_new_turn"):
        CalibrationConfig(stop_at_new_turn="yes")


def test_generate_and_best_of_n_stop_at_a_new_turn(tiny_lm, tokenizer):
    from hf_stackshape.pipeline.generation import format_prompts, generate_responses

    assert format_prompts(tokenizer, [HH, PLAIN], dialogue_as_text=True)[0] == HH
    assert format_prompts(tokenizer, [HH])[0] != HH
    script = Script(tiny_lm, tokenizer, [ANSWER + TURN + " more"])
    try:
        base = dict(max_new_tokens=16, show_progress=False, dialogue_prompts_as_text=True)
        assert generate_responses(tiny_lm, tokenizer, [HH], **base) == [ANSWER + TURN + " more"]
        assert generate_responses(tiny_lm, tokenizer, [HH], stop_at_new_turn=True, **base) == [ANSWER]
        bon = dict(method="bon", reward=_length, num_samples=2, max_new_tokens=16, show_progress=False)
        assert generate_responses(tiny_lm, tokenizer, [HH], **bon) == [ANSWER + TURN + " more"]
        assert generate_responses(tiny_lm, tokenizer, [HH], stop_at_new_turn=True, **bon) == [ANSWER]
    finally:
        script.remove()


def test_generate_cli_flags_and_paper_preset():
    from hf_stackshape import cli
    from hf_stackshape.commands import generate as command

    values = cli.preset_defaults("paper", command.PRESET_COMPONENTS, ["dialogue_prompts_as_text", "stop_at_new_turn"])
    assert values == {"dialogue_prompts_as_text": True}
    fields = {f.name for f in __import__("dataclasses").fields(command.GenerateArguments)}
    assert {"dialogue_prompts_as_text", "stop_at_new_turn"} <= fields


# ------------------------------------------------------------------------------------------ the value head's data


def _rollouts(n_prompts, n_responses, prompt="Question {i}:", response=" good bad" * 3):
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": prompt.format(i=i), "responses": [response] * n_responses, "rewards": [float(j) for j in range(n_responses)],
          "threshold": 0.5} for i in range(n_prompts)]
    )


def _trainer_args(tmp_path, **kw):
    from hf_stackshape import QHeadTrainerConfig

    settings = dict(output_dir=str(tmp_path / "out"), report_to="none", disable_tqdm=True, save_strategy="no",
                    apply_chat_template=False, precompute_hidden_states=False)
    return QHeadTrainerConfig(**{**settings, **kw})


def test_split_by_sample_is_the_authors_random_split():
    from hf_stackshape.qhead.trainer import split_by_sample

    for n, fraction, seed in ((200, 0.05, 42), (30, 0.05, 0), (7, 0.5, 3)):
        train, val = split_by_sample(n, fraction, seed)
        theirs = torch.utils.data.random_split(
            range(n), [n - max(1, int(fraction * n)), max(1, int(fraction * n))],
            generator=torch.Generator().manual_seed(seed),
        )
        assert (train, val) == (list(theirs[0].indices), list(theirs[1].indices))
    assert len(split_by_sample(200, 0.05, 42)[1]) == 10 and len(split_by_sample(30, 0.05, 0)[1]) == 1
    assert split_by_sample(1, 0.5, 0) == ([0], []) and split_by_sample(5, 0.0, 0) == (list(range(5)), [])


def test_paper_trainer_holds_out_samples_and_keeps_the_full_prompt(tmp_path, tiny_lm, tokenizer):
    from hf_stackshape import QHeadModel, QHeadTrainer, QHeadTrainerConfig

    paper = QHeadTrainerConfig.from_preset("paper", output_dir=str(tmp_path / "p"), report_to="none")
    assert (paper.validation_split, paper.validation_split_by, paper.max_length, paper.max_response_length) == (
        0.05, "sample", None, 128)
    assert paper.dialogue_prompts_as_text is True
    ours = _trainer_args(tmp_path)
    assert (ours.validation_split, ours.validation_split_by, ours.max_length, ours.max_response_length) == (
        0.1, "prompt", 512, None)

    data = _rollouts(20, 10)  # 200 rollouts of 20 prompts
    qhead = QHeadModel.from_backbone(tiny_lm, head_hidden_size=8)
    by_sample = QHeadTrainer(qhead, _trainer_args(tmp_path, validation_split=0.05, validation_split_by="sample"),
                             train_dataset=data, processing_class=tokenizer)
    assert (len(by_sample.train_dataset), len(by_sample.eval_dataset)) == (190, 10)
    by_prompt = QHeadTrainer(qhead, _trainer_args(tmp_path, validation_split=0.05), train_dataset=data,
                             processing_class=tokenizer)
    assert (len(by_prompt.train_dataset), len(by_prompt.eval_dataset)) == (190, 10)  # 1 prompt x 10 rollouts
    with pytest.raises(ValueError, match="validation_split_by"):
        _trainer_args(tmp_path, validation_split_by="row")
    with pytest.raises(ValueError, match="max_response_length"):
        _trainer_args(tmp_path, max_response_length=0)


def test_truncation_full_prompt_and_128_response_tokens(tokenizer):
    from hf_stackshape.qhead.trainer import _tokenize_rollout

    row = {"prompt": "word " * 600, "response": " yes" * 300}
    p_ids = tokenizer(row["prompt"], add_special_tokens=True)["input_ids"]
    r_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
    assert len(p_ids) >= 600 and len(r_ids) == 300
    theirs = _tokenize_rollout(row, tokenizer, False, max_length=None, max_response_length=128)
    assert theirs["input_ids"] == p_ids + r_ids[:128] and theirs["response_start"] == len(p_ids)
    ours = _tokenize_rollout(row, tokenizer, False, max_length=512)
    assert len(ours["input_ids"]) == 512 and ours["response_start"] == 256  # the prompt's last 256 tokens
    assert ours["input_ids"] == p_ids[-256:] + r_ids[:256]


def test_trainer_reads_hh_prompts_as_the_calibration_rendered_them(tokenizer):
    from hf_stackshape.qhead.trainer import _tokenize_rollout

    row = {"prompt": HH, "response": " " + ANSWER}
    as_text = _tokenize_rollout(row, tokenizer, True, max_length=None, dialogue_as_text=True)
    assert as_text["input_ids"][: as_text["response_start"]] == tokenizer(HH, add_special_tokens=True)["input_ids"]
    templated = _tokenize_rollout(row, tokenizer, True, max_length=None)
    text = tokenizer.apply_chat_template([{"role": "user", "content": HH}], tokenize=False, add_generation_prompt=True)
    assert templated["input_ids"][: templated["response_start"]] == tokenizer(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------------------ the judge

# (reply, verdict of the authors' gpt4-eval.py, verdict of our parser), verdicts for Assistant 1 against Assistant 2:
# "1", "2", "tie", or None (counted nowhere). They differ on 11 of the 24.
REPLIES = [
    ("8 7\nAssistant 1 gives more detail.", "1", "1"),
    ("7 8", "2", "2"),
    ("8 8", "tie", "tie"),
    ("7.5 9", "2", "2"),
    ("10 1\nexplanation", "1", "1"),
    ("1e1 9", "1", "1"),  # both read 10 > 9
    ("3 4\r\nexplanation", "2", "2"),  # float() ignores the "\r" they leave on the line
    ("0 5", "2", "tie"),  # out of the 1-10 range: decides for them, a tie for us
    ("11 3", "1", "tie"),
    ("-1 4", "2", "tie"),
    ("inf 3", "1", "tie"),
    ("nan nan", None, "tie"),  # NaN compares neither greater, lower nor equal: counted nowhere
    ("8, 7", "tie", "1"),  # formatting: a tie for them, read by us
    ("**8 7**", "tie", "1"),
    ("8  7", "tie", "1"),
    ("\n8 7", "tie", "1"),
    ("8 7 \nexplanation", "tie", "1"),
    ("8\t7", "tie", "1"),
    ("Assistant 1: 8, Assistant 2: 6", "tie", "tie"),
    ("8", "tie", "tie"),
    ("8 7 6", "tie", "tie"),
    ("8/10 7/10", "tie", "tie"),
    ("error", "tie", "tie"),
    ("", "tie", "tie"),
]


def test_the_sample_replies_differ_on_eleven():
    assert len(REPLIES) == 24 and sum(paper != ours for _, paper, ours in REPLIES) == 11


def _scripted_judge(monkeypatch, replies, **kwargs):
    from hf_stackshape.evaluation.judges import LLMJudge

    judge = LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="", **kwargs)
    sent = []

    def complete(messages, **_):
        sent.append(messages)
        return replies[re.search(r"Q(\d+)\|", messages[-1]["content"]).group(1)]

    monkeypatch.setattr(judge.client, "complete", complete)
    return judge, sent


@pytest.mark.parametrize("parser", ["paper", "ours"])
def test_judge_verdicts_on_the_sample_replies(monkeypatch, parser):
    from hf_stackshape.evaluation.judges import paper_verdict, parse_scores, parse_scores_paper

    replies = {str(i): reply for i, (reply, _, _) in enumerate(REPLIES)}
    judge, _ = _scripted_judge(monkeypatch, replies, score_parser=parser)
    prompts = [f"Q{i}|" for i in range(len(REPLIES))]
    out = judge.compare(prompts, ["answer a"] * len(REPLIES), ["answer b"] * len(REPLIES))
    for (reply, paper, ours), j in zip(REPLIES, out):
        expected = paper if parser == "paper" else ours
        side = {"1": "b" if j.swapped else "a", "2": "a" if j.swapped else "b"}
        assert j.winner == side.get(expected, expected), (reply, j)
        assert j.error is None and j.ok
    assert {j.swapped for j in out} == {True, False}  # both orders were exercised
    assert out.failures == []
    # The parsers by themselves, on Assistant 1 / Assistant 2.
    assert parse_scores_paper("nan nan") is not None and paper_verdict(*parse_scores_paper("nan nan")) is None
    assert parse_scores_paper("11 3") == (11.0, 3.0) and parse_scores("11 3") is None
    assert parse_scores_paper("8, 7") is None and parse_scores("8, 7") == (8.0, 7.0)


def test_paper_preset_judge_and_cli(monkeypatch, tmp_path):
    from hf_stackshape import cli
    from hf_stackshape.commands import evaluate as command
    from hf_stackshape.evaluation.judges import LLMJudge

    paper = LLMJudge.from_preset("paper", base_url="http://127.0.0.1:9/v1", api_key="")
    assert (paper.score_parser, paper.strip_answers) == ("paper", True)
    ours = LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="")
    assert (ours.score_parser, ours.strip_answers) == ("ours", False)
    # Another parser is another verdict: it never reuses a judgement cached under ours (whose keys are unchanged).
    assert paper.cache_key("p", "a", "b") != LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="", max_tokens=2048,
                                                      strip_answers=True).cache_key("p", "a", "b")
    fields = ["judge_score_parser", "judge_strip_answers", "judge_template_file", "judge_max_tokens"]
    values = cli.preset_defaults("paper", command.PRESET_COMPONENTS, fields)
    assert values == {"judge_score_parser": "paper", "judge_strip_answers": True, "judge_max_tokens": 2048}
    with pytest.raises(ValueError, match="score_parser"):
        LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="", score_parser="lenient")


def test_strip_answers_and_a_template_file(monkeypatch, tmp_path):
    template = tmp_path / "user.txt"
    # The authors' field names work as they are.
    template.write_text("[Question]\n{question}\n\n[A1]\n{answer1}\n[/A1]\n[A2]\n{answer2}\n[/A2]", encoding="utf-8")
    system = tmp_path / "system.txt"
    system.write_text("Rate both. First line: two scores.", encoding="utf-8")
    judge, sent = _scripted_judge(monkeypatch, {"0": "8 7"}, strip_answers=True, template_file=str(template),
                                  system_prompt_file=str(system))
    out = judge.compare(["Q0|"], ["  \n An answer.\n "], ["Q0| Copied prompt then answer. "])
    (messages,) = sent
    assert messages[0] == {"role": "system", "content": "Rate both. First line: two scores."}
    first, second = ("Copied prompt then answer.", "An answer.") if out[0].swapped else ("An answer.", "Copied prompt then answer.")
    assert messages[1]["content"] == f"[Question]\nQ0|\n\n[A1]\n{first}\n[/A1]\n[A2]\n{second}\n[/A2]"
    unstripped, sent2 = _scripted_judge(monkeypatch, {"0": "8 7"})
    unstripped.compare(["Q0|"], ["  \n An answer.\n "], ["b"])
    assert "  \n An answer.\n " in sent2[0][-1]["content"]
    from hf_stackshape.evaluation.judges import LLMJudge

    with pytest.raises(FileNotFoundError, match="does not exist"):
        LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="", template_file=str(tmp_path / "nope.txt"))
    (tmp_path / "bad.txt").write_text("no fields", encoding="utf-8")
    with pytest.raises(ValueError, match="question"):
        LLMJudge(base_url="http://127.0.0.1:9/v1", api_key="", template_file=str(tmp_path / "bad.txt"))


# ------------------------------------------------------------------------------------------ ARGS threshold precision


def test_args_solves_the_threshold_on_half_precision_rewards_in_float32(tiny_lm, tokenizer):
    from hf_stackshape import ARGSLogitsProcessor
    from hf_stackshape.rewards import RewardFunction
    from hf_stackshape.core.shaping import solve_threshold

    class HalfReward(RewardFunction):
        """Rewards as a float16 reward model returns them, chosen so that float16 rounding moves the threshold."""

        def score(self, prompts, responses):
            return torch.tensor([1000.0 + 0.37 * (len(r) % 7) for r in responses], dtype=torch.float16)

    proc = ARGSLogitsProcessor(HalfReward(), tokenizer=tokenizer, k=4, weight=1.0, transform="srs", bound=3.0)
    seen = []
    transform = proc.transform

    def spy(rewards, **kwargs):
        seen.append(rewards.dtype)
        return transform(rewards, **kwargs)

    proc.transform = spy
    inputs = tokenizer(["Hi there"], return_tensors="pt")
    proc.set_prompt(inputs, prompts=["Hi there"])
    tiny_lm.generate(**inputs, logits_processor=[proc], max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    proc.close()
    assert seen and all(dtype == torch.float32 for dtype in seen)
    # Why it matters: the same rewards solved in float16 land on another threshold than in float32.
    u = torch.tensor([[1000.0, 1000.37, 1000.74, 1001.11]])
    assert solve_threshold(u.half(), 2.0, 3.0).float() != solve_threshold(u, 2.0, 3.0)
