"""Failures that used to be silent or misleading now say what happened and what to do (issue 18)."""

import logging

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessorList

from hf_stackshape import ARGSLogitsProcessor, CDLogitsProcessor, QHeadModel, guided_generate

PROMPTS = ["Tell me a story about a cat.", "Hi"]


def _inputs(tokenizer):
    return tokenizer(PROMPTS, return_tensors="pt", padding=True)


def _q_shared(tiny_lm):
    qhead = QHeadModel.from_backbone(tiny_lm, head_type="q", rank=8)
    with torch.no_grad():
        for p in qhead.head.parameters():
            p.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    return qhead


@pytest.mark.parametrize("drafting", [{"prompt_lookup_num_tokens": 2}, "assistant"])
@pytest.mark.parametrize("given_prompts", [False, True])
def test_args_refuses_assisted_and_prompt_lookup_decoding(tokenizer, tiny_lm, reward, drafting, given_prompts):
    enc = tokenizer(PROMPTS[:1], return_tensors="pt")  # assisted decoding takes one prompt at a time
    if drafting == "assistant":
        drafting = {"assistant_model": tiny_lm}
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    if given_prompts:  # used to raise a misleading "given prompts ... for other inputs"
        args.set_prompt(enc, prompts=PROMPTS[: enc["input_ids"].shape[0]])
    with pytest.raises(ValueError, match="assisted or prompt-lookup decoding.*Drop assistant_model"):
        tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([args]), max_new_tokens=6, do_sample=False, **drafting)
    # the same processor still guides plain greedy decoding
    args.set_prompt()
    out = tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([args]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


def test_cd_refuses_prompt_lookup_decoding(tokenizer, tiny_lm):
    enc = tokenizer(PROMPTS[:1], return_tensors="pt")
    with CDLogitsProcessor(_q_shared(tiny_lm), k=3, base_model=tiny_lm) as cd:
        with pytest.raises(ValueError, match="assisted or prompt-lookup decoding"):
            tiny_lm.generate(
                **enc, logits_processor=LogitsProcessorList([cd]), max_new_tokens=6, do_sample=False,
                prompt_lookup_num_tokens=2,
            )


def test_args_warns_under_a_sampling_temperature_in_plain_generate(tokenizer, tiny_lm, reward, caplog):
    enc = _inputs(tokenizer)
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    with caplog.at_level(logging.WARNING):
        tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([args]), max_new_tokens=2, do_sample=True, temperature=0.55)
    assert "ARGSLogitsProcessor in generate" in caplog.text and "lambda/0.55" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tiny_lm.generate(**enc, logits_processor=LogitsProcessorList([args]), max_new_tokens=2, do_sample=True, temperature=1.0)
    assert "lambda/" not in caplog.text


def test_guided_generate_checks_a_passed_generation_config(tokenizer, tiny_lm, reward):
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    config = GenerationConfig(do_sample=True, temperature=0.5, max_new_tokens=2)
    with pytest.raises(ValueError, match="lambda/0.5"):
        guided_generate(tiny_lm, tokenizer, PROMPTS, args, generation_config=config)
    config = GenerationConfig(do_sample=False, max_new_tokens=2, prompt_lookup_num_tokens=2)
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens"):
        guided_generate(tiny_lm, tokenizer, PROMPTS, args, generation_config=config)


def test_guided_generate_returns_what_generate_returns_as_a_dict(tokenizer, tiny_lm, reward):
    args = ARGSLogitsProcessor(reward, tokenizer=tokenizer, k=3, weight=1.0)
    texts = guided_generate(tiny_lm, tokenizer, PROMPTS, args, max_new_tokens=3, do_sample=False)
    out = guided_generate(
        tiny_lm, tokenizer, PROMPTS, args, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, output_scores=True
    )
    assert len(out.scores) == 3 and out.sequences.shape[0] == len(PROMPTS)
    assert tokenizer.batch_decode(out.sequences[:, -3:], skip_special_tokens=True) == texts
    parts = guided_generate(
        tiny_lm, tokenizer, PROMPTS, args, max_new_tokens=3, do_sample=False, batch_size=1,
        generation_config=GenerationConfig(return_dict_in_generate=True, max_new_tokens=3),
    )
    assert [tokenizer.decode(p.sequences[0, -3:], skip_special_tokens=True) for p in parts] == texts
