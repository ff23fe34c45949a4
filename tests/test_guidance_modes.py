"""ARGS and CD in every generate mode: presets, what the reward model reads, generate's temperature, the
processors' lifetime (hooks, caches), continuous batching, guided_generate, and bad input."""

import copy
import logging

import pytest
import torch
from conftest import tiny_llama_config
from transformers import LlamaForCausalLM, LogitsProcessor, LogitsProcessorList

from test_args import PROMPTS, Recorder

from hf_stackshape import (
    ARGSLogitsProcessor,
    CallableReward,
    CDLogitsProcessor,
    HFRewardModel,
    QHeadModel,
    guided_generate,
)
from hf_stackshape.guidance import GuidanceProcessor


def _q_shared(tiny_lm, seed=3):
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="q", rank=8)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.normal_(0.0, 1.0)
    return qhead


# ----------------------------------------------------------------------------------------------- presets


def test_paper_presets(tokenizer, tiny_lm, reward):
    args = ARGSLogitsProcessor.from_preset("paper", reward, tokenizer=tokenizer)
    assert (args.k, args.weight, args.rm_input, args.temperature) == (10, 0.5, "raw", 1.0)
    settings = args.transform.to_dict()
    assert (settings["name"], settings["bound"], settings["alpha"], settings["beta"]) == (
        "srs",
        12.0,
        1.5,
        2.0,
    )
    assert settings["safeguards"]["gamma_cap"] == 2.0 and settings["safeguards"]["bound_clip"] == 1.01
    # Overrides win over the preset.
    vanilla = ARGSLogitsProcessor.from_preset(
        "paper", reward, tokenizer=tokenizer, transform="raw", weight=1.0
    )
    assert vanilla.weight == 1.0 and vanilla.transform.name == "raw" and vanilla.rm_input == "raw"
    cd = CDLogitsProcessor.from_preset("paper", _q_shared(tiny_lm), base_model=tiny_lm)
    assert (cd.k, cd.weight, cd.temperature) == (10, 1.5, 0.7)
    cd.close()
    with pytest.raises(ValueError, match="Unknown preset"):
        ARGSLogitsProcessor.from_preset("nope", reward, tokenizer=tokenizer)


# ---------------------------------------------------------------------------------- what the RM reads


@torch.no_grad()
def _rm_on_ids(rm, ids):
    return float(rm.model(torch.tensor([ids])).logits[0, 0])


@pytest.mark.parametrize("use_cache", [None, False])
def test_rm_input_raw_reads_the_raw_ids(tokenizer, reward, use_cache):
    """With rm_input='raw' each candidate's reward is the RM's own forward on prompt ids + response + candidate."""
    enc = tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
    response = tokenizer(
        [" Once upon a time", " The sky"], return_tensors="pt", padding=True, padding_side="right"
    )["input_ids"][:, :2]
    torch.manual_seed(0)
    scores = torch.randn(2, len(tokenizer))
    scores[:, tokenizer.eos_token_id] = 10.0  # EOS is a candidate: the raw ids keep it
    raw = ARGSLogitsProcessor(
        reward, tokenizer=tokenizer, k=4, weight=1.0, transform="raw", rm_input="raw", use_cache=use_cache
    )
    chat = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=4, weight=1.0, transform="raw", rm_input="chat")
    for length in range(3):
        ids = torch.cat([enc["input_ids"], response[:, :length]], dim=1)
        out, out_chat = raw(ids, scores), chat(ids, scores)
        cands = scores.topk(4).indices
        for row in range(2):
            got = out[row, cands[row]] - scores[row, cands[row]]
            want = torch.tensor(
                [
                    _rm_on_ids(reward, prompt_ids[row] + response[row, :length].tolist() + [v])
                    for v in cands[row].tolist()
                ]
            )
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            assert not torch.allclose(out_chat[row, cands[row]] - scores[row, cands[row]], want, atol=1e-2)
    assert raw.uses_fast_path == (use_cache is None)


@torch.no_grad()
def test_rm_input_raw_greedy_matches_reference_loop(tokenizer, tiny_lm, reward):
    """Batched, left-padded raw-input SRS-ARGS == a per-prompt loop scoring prompt + response + v with the RM."""
    k, weight, steps, eos = 3, 2.0, 4, tokenizer.eos_token_id
    proc = ARGSLogitsProcessor(
        reward, tokenizer=tokenizer, k=k, weight=weight, transform="srs", rm_input="raw"
    )
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    out = tiny_lm.generate(
        **inputs, logits_processor=LogitsProcessorList([proc]), max_new_tokens=steps, do_sample=False
    )
    got = out[:, inputs["input_ids"].shape[1] :].tolist()
    assert proc.uses_fast_path
    for row, prompt in enumerate(PROMPTS):
        ids, response = tokenizer(prompt)["input_ids"], []
        while len(response) < steps and eos not in response:
            top = tiny_lm(torch.tensor([ids + response])).logits[0, -1].topk(k)
            rewards = torch.tensor([_rm_on_ids(reward, ids + response + [v]) for v in top.indices.tolist()])
            shaped = proc.transform(rewards[None], weights=torch.softmax(top.values, -1)[None])[0]
            response.append(int(top.indices[(top.values + weight * shaped).argmax()]))
        assert got[row] == response + [tokenizer.pad_token_id] * (steps - len(response)), row
    chat = ARGSLogitsProcessor(
        reward, tokenizer=tokenizer, k=k, weight=weight, transform="srs", rm_input="chat"
    )
    other = tiny_lm.generate(
        **inputs, logits_processor=LogitsProcessorList([chat]), max_new_tokens=steps, do_sample=False
    )
    assert other.tolist() != out.tolist()  # what the RM reads matters


def test_rm_input_raw_needs_the_base_vocabulary(tokenizer, reward):
    other = copy.deepcopy(tokenizer)
    other.add_tokens(["<an_extra_token>"])
    rm = HFRewardModel(reward.model, other)
    with pytest.raises(ValueError, match="rm_input='chat'"):
        ARGSLogitsProcessor(rm, tokenizer=tokenizer, rm_input="raw")
    ARGSLogitsProcessor(rm, tokenizer=tokenizer, rm_input="chat")  # text path: fine
    with pytest.raises(ValueError, match="rm_input"):
        ARGSLogitsProcessor(reward, tokenizer=tokenizer, rm_input="template")


def test_rm_input_raw_left_truncates_to_the_rm_context(tokenizer, reward, caplog):
    rm = HFRewardModel(reward.model, tokenizer, max_length=6)
    ids = tokenizer([PROMPTS[0]], return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 6
    torch.manual_seed(0)
    scores = torch.randn(1, len(tokenizer))
    proc = ARGSLogitsProcessor(rm, tokenizer=tokenizer, k=3, weight=1.0, transform="raw", rm_input="raw")
    with caplog.at_level(logging.WARNING):
        out = proc(ids, scores)
    cands = scores.topk(3).indices[0]
    want = torch.tensor([_rm_on_ids(rm, (ids[0].tolist() + [v])[-6:]) for v in cands.tolist()])
    torch.testing.assert_close(out[0, cands] - scores[0, cands], want, atol=1e-4, rtol=1e-4)
    assert "left truncation" in caplog.text


# ------------------------------------------------------------------------------------------ temperature


def _fit(final, base, guidance):
    """Least squares ``final = a * base + b * guidance + c`` over the candidates: returns (1/a, b)."""
    design = torch.stack([base, guidance, torch.ones_like(base)], -1).double()
    coef = torch.linalg.lstsq(design, final.double()[:, None]).solution[:, 0]
    assert torch.allclose(design @ coef, final.double(), atol=1e-4)  # the model is exact
    return float(1 / coef[0]), float(coef[1])


def _one_step(model, tokenizer, proc, **kwargs):
    inputs = tokenizer([PROMPTS[0]], return_tensors="pt")
    rec = Recorder(proc)
    torch.manual_seed(0)
    out = model.generate(
        **inputs,
        logits_processor=LogitsProcessorList([rec]),
        max_new_tokens=1,
        top_k=0,
        top_p=1.0,
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    input_ids, scores_in, fused = rec.calls[0]
    return input_ids, scores_in, fused, out.scores[0][0]  # what generate samples from (after its warpers)


def test_generate_temperature_divides_the_guidance(tokenizer, tiny_lm):
    """Measured: generate's temperature T runs after ARGS, so lambda becomes lambda / T; the processor's own
    temperature (with generate's at 1) keeps lambda and tempers only the base scores."""
    lam, temp, k = 1.0, 0.5, 6

    def reward_fn(prompt, response):
        return 1.0 + (len(response) % 5)

    def measure(proc_temp, gen_temp):
        proc = ARGSLogitsProcessor(
            CallableReward(reward_fn),
            tokenizer=tokenizer,
            k=k,
            weight=lam,
            transform="raw",
            temperature=proc_temp,
        )
        input_ids, scores_in, fused, final = _one_step(
            tiny_lm, tokenizer, proc, do_sample=True, temperature=gen_temp
        )
        cands = scores_in[0].topk(k).indices
        rewards = torch.tensor(
            [reward_fn("", tokenizer.decode([v], skip_special_tokens=True)) for v in cands.tolist()]
        )
        return _fit(final[cands], scores_in[0, cands], rewards)

    base_t, lam_eff = measure(1.0, temp)
    assert base_t == pytest.approx(temp, rel=1e-4) and lam_eff == pytest.approx(
        lam / temp, rel=1e-4
    )  # 2.0, not 1.0
    base_t, lam_eff = measure(temp, 1.0)
    assert base_t == pytest.approx(temp, rel=1e-4) and lam_eff == pytest.approx(lam, rel=1e-4)


def test_cd_temperature_is_applied_twice_by_generate(tokenizer, tiny_lm):
    qhead = _q_shared(tiny_lm)
    with CDLogitsProcessor(qhead, k=6, weight=1.5, temperature=0.7, base_model=tiny_lm) as cd:
        input_ids, scores_in, fused, final = _one_step(
            tiny_lm, tokenizer, cd, do_sample=True, temperature=0.7
        )
        cands = fused[0].topk(6).indices
        values = qhead(input_ids).value[0, -1, cands].detach()
        base_t, lam_eff = _fit(final[cands], scores_in[0, cands], values)
        assert base_t == pytest.approx(0.49, rel=1e-3) and lam_eff == pytest.approx(1.5 / 0.7, rel=1e-3)
        input_ids, scores_in, fused, final = _one_step(
            tiny_lm, tokenizer, cd, do_sample=True, temperature=1.0
        )
        base_t, lam_eff = _fit(final[cands], scores_in[0, cands], values)
        assert base_t == pytest.approx(0.7, rel=1e-3) and lam_eff == pytest.approx(1.5, rel=1e-3)


def test_temperature_guard(tokenizer, tiny_lm, reward, caplog):
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    with pytest.raises(ValueError, match=r"temperature=1\.0"):
        guided_generate(
            tiny_lm, tokenizer, PROMPTS[:1], args, max_new_tokens=2, do_sample=True, temperature=0.7
        )
    guided_generate(tiny_lm, tokenizer, PROMPTS[:1], args, max_new_tokens=2, do_sample=False, temperature=0.7)
    sampling = copy.deepcopy(tiny_lm)
    sampling.generation_config.do_sample, sampling.generation_config.temperature = True, 0.6  # as Qwen3 ships
    with pytest.raises(ValueError, match="lambda/0.6"):
        guided_generate(sampling, tokenizer, PROMPTS[:1], args, max_new_tokens=2)
    assert (
        len(guided_generate(sampling, tokenizer, PROMPTS[:1], args, max_new_tokens=2, temperature=1.0)) == 1
    )
    with caplog.at_level(logging.WARNING):
        CDLogitsProcessor(_q_shared(sampling), k=3, base_model=sampling).close()
    assert "temperature=1.0" in caplog.text


# ------------------------------------------------------------------------------- lifetime and CB support


def _hook_count(model):
    from hf_stackshape.qhead.modeling_qhead import last_hidden_state_module

    return len(model._forward_pre_hooks) + len(last_hidden_state_module(model)._forward_hooks)


def test_cd_hooks_removed_by_close_and_context_manager(tokenizer, tiny_lm):
    qhead = _q_shared(tiny_lm)
    before = _hook_count(tiny_lm)
    procs = [CDLogitsProcessor(qhead, k=3, base_model=tiny_lm) for _ in range(3)]
    assert _hook_count(tiny_lm) == before + 6 and all(p.num_hooks == 2 for p in procs)
    for p in procs:
        p.close()
        p.close()  # idempotent
    assert _hook_count(tiny_lm) == before and all(p.num_hooks == 0 for p in procs)
    with CDLogitsProcessor(qhead, k=3, base_model=tiny_lm) as cd:
        assert _hook_count(tiny_lm) == before + 2
        inputs = tokenizer(PROMPTS[:1], return_tensors="pt")
        tiny_lm.generate(
            **inputs, logits_processor=LogitsProcessorList([cd]), max_new_tokens=2, do_sample=False
        )
    assert _hook_count(tiny_lm) == before
    with pytest.raises(ValueError, match="closed"):
        tiny_lm.generate(
            **inputs, logits_processor=LogitsProcessorList([cd]), max_new_tokens=2, do_sample=False
        )


def test_caches_freed(tokenizer, tiny_lm, reward, other_backbone):
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    tiny_lm.generate(
        **inputs,
        logits_processor=LogitsProcessorList([args]),
        max_new_tokens=3,
        do_sample=False,
        eos_token_id=None,
    )
    assert args.prefix_cache.cache is not None and args.prefix_cache.batch_size == 3
    args.close()
    assert args.prefix_cache.cache is None and args.prefix_cache.batch_size == 0
    # A step where every row has ended frees it too.
    with ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0) as args:
        ids, scores = inputs["input_ids"], torch.randn(3, len(tokenizer))
        args(ids, scores)
        assert args.prefix_cache.cache is not None
        ended = torch.cat([ids, torch.full((3, 1), tokenizer.eos_token_id)], 1)
        args(ended, scores)
        assert args.prefix_cache.cache is None
    # guided_generate frees both processors' caches when it returns.
    guided_generate(tiny_lm, tokenizer, PROMPTS, args, max_new_tokens=3)
    assert args.prefix_cache.cache is None and args.steps == 0 and args.prompt_length is None and args.uses_fast_path is None
    value = QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16)
    with CDLogitsProcessor(value, k=3, base_model=tiny_lm) as cd:
        tiny_lm.generate(
            **inputs, logits_processor=LogitsProcessorList([cd]), max_new_tokens=2, do_sample=False
        )
        assert cd.prefix_cache.cache is not None
        guided_generate(tiny_lm, tokenizer, PROMPTS, cd, max_new_tokens=2)
        assert cd.prefix_cache.cache is None
    assert cd.prefix_cache.cache is None


def test_continuous_batching_drops_guidance_processors(tokenizer, tiny_lm, reward):
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessorList,
    )

    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3)
    with CDLogitsProcessor(_q_shared(tiny_lm), k=3, base_model=tiny_lm) as cd:
        assert issubclass(ARGSLogitsProcessor, GuidanceProcessor) and issubclass(
            CDLogitsProcessor, GuidanceProcessor
        )
        assert args.supports_continuous_batching is False and cd.supports_continuous_batching is False
        kept = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([args, cd])).logits_processor
        assert len(kept) == 0


# -------------------------------------------------------------------------------------- guided_generate


def _manual(model, tokenizer, prompts, proc, **kwargs):
    chats = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    enc = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    if hasattr(proc, "set_prompt"):
        proc.set_prompt(enc, prompts=prompts)
    out = model.generate(**enc, logits_processor=LogitsProcessorList([proc]), **kwargs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_guided_generate_equals_the_manual_set_prompt_path(tokenizer, tiny_lm, reward, other_backbone):
    kwargs = dict(max_new_tokens=4, do_sample=False)
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=2.0)
    got = guided_generate(tiny_lm, tokenizer, PROMPTS, args, **kwargs)
    assert got == _manual(tiny_lm, tokenizer, PROMPTS, args, **kwargs)
    assert len(got) == 3 and all(isinstance(text, str) for text in got)
    # Forgetting set_prompt (the RM reads the decoded template) changes the fused scores: the helper matters.
    chats = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in PROMPTS
    ]
    enc = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    scores = torch.randn(3, len(tokenizer))
    told = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=2.0).set_prompt(enc, prompts=PROMPTS)
    untold = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=2.0)
    assert not torch.allclose(told(enc["input_ids"], scores), untold(enc["input_ids"], scores))
    # Batches, num_return_sequences, per-prompt thresholds; a right-padding tokenizer is padded left anyway.
    assert guided_generate(tiny_lm, tokenizer, PROMPTS, args, batch_size=2, **kwargs) == got
    right = copy.deepcopy(tokenizer)
    right.padding_side = "right"
    assert guided_generate(tiny_lm, right, PROMPTS, args, **kwargs) == got and right.padding_side == "right"
    thr = torch.zeros(3)
    assert (
        len(
            guided_generate(
                tiny_lm,
                tokenizer,
                PROMPTS,
                args,
                thresholds=thr,
                num_beams=2,
                num_return_sequences=2,
                **kwargs,
            )
        )
        == 6
    )
    value = QHeadModel.from_backbone(other_backbone, head_type="value", head_hidden_size=16)
    with CDLogitsProcessor(value, k=3, base_model=tiny_lm) as cd:
        assert guided_generate(tiny_lm, tokenizer, PROMPTS, cd, **kwargs) == _manual(
            tiny_lm, tokenizer, PROMPTS, cd, **kwargs
        )


def test_guided_generate_bad_input(tokenizer, tiny_lm, reward):
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3)
    with pytest.raises(ValueError, match="list of strings"):
        guided_generate(tiny_lm, tokenizer, "Hi", args)
    with pytest.raises(ValueError, match="entry 1"):
        guided_generate(tiny_lm, tokenizer, ["Hi", 3], args)
    with pytest.raises(ValueError, match="ARGSLogitsProcessor or a CDLogitsProcessor"):
        guided_generate(tiny_lm, tokenizer, ["Hi"], LogitsProcessorList())
    with pytest.raises(ValueError, match="one per prompt"):
        guided_generate(tiny_lm, tokenizer, ["Hi"], args, thresholds=torch.zeros(2))
    with pytest.raises(ValueError, match="max_new_tokens"):
        guided_generate(tiny_lm, tokenizer, ["Hi"], args, max_new_tokens=600)
    assert guided_generate(tiny_lm, tokenizer, [], args) == []
    with pytest.raises(ValueError, match="assisted_generation"):  # drafts tokens out of the processor's order
        guided_generate(tiny_lm, tokenizer, ["Hi"], args, prompt_lookup_num_tokens=3)
    with pytest.raises(ValueError, match="assisted_generation"):
        guided_generate(tiny_lm, tokenizer, ["Hi"], args, assistant_model=tiny_lm)


def test_long_prompts_are_left_truncated_in_guided_generate(tokenizer, reward, caplog):
    torch.manual_seed(0)
    cfg = tiny_llama_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id, max_position_embeddings=48)
    short = LlamaForCausalLM(cfg).eval()
    long_prompt = " ".join(["word"] * 80)
    seen = []

    class Width(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append(input_ids.shape[1])
            return scores

    with ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3) as args, caplog.at_level(logging.WARNING):
        guided_generate(
            short,
            tokenizer,
            [long_prompt, "Hi"],
            args,
            max_new_tokens=4,
            do_sample=False,
            logits_processor=LogitsProcessorList([Width()]),
        )
    assert seen[0] == 48 - 4 and "left truncation" in caplog.text


# ------------------------------------------------------------------------------------------ CD bad input


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=words[0], pad_token=words[0])


def test_cd_bad_input(tokenizer, tiny_lm):
    qhead = _q_shared(tiny_lm)
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        CDLogitsProcessor(qhead, k=len(tokenizer) + 1, base_model=tiny_lm)
    # Tokenizer equality, not only size: two 3-token vocabularies that number the words differently.
    a, b = _word_tokenizer(["<unk>", "cat", "dog"]), _word_tokenizer(["<unk>", "dog", "cat"])
    assert len(a) == len(b)
    with pytest.raises(ValueError, match="other ids"):
        CDLogitsProcessor(qhead, k=2, tokenizer=a, head_tokenizer=b, base_model=tiny_lm)
    CDLogitsProcessor(
        qhead, k=2, tokenizer=a, head_tokenizer=_word_tokenizer(["<unk>", "cat", "dog"]), base_model=tiny_lm
    ).close()
    from hf_stackshape.utils.checks import vocabulary_digest

    qhead.config.vocab_digest = vocabulary_digest(tokenizer)
    CDLogitsProcessor(qhead, k=3, tokenizer=tokenizer, base_model=tiny_lm).close()
    with pytest.raises(ValueError, match="vocab_digest"):
        CDLogitsProcessor(qhead, k=2, tokenizer=a, base_model=tiny_lm)
    # A prefix longer than the head backbone's context: a clear error, not silent extrapolation.
    with CDLogitsProcessor(qhead, k=3, base_model=tiny_lm) as cd:
        too_long = torch.ones(1, tiny_lm.config.max_position_embeddings + 1, dtype=torch.long)
        with pytest.raises(ValueError, match="context"):
            cd(too_long, torch.randn(1, len(tokenizer)))
