"""The one prompt encoder (`encode_prompts`) and the one tokenizer-sides context manager (`tokenizer_sides`)."""

import copy
import logging

import pytest
import torch
from tokenizers import processors

from hf_stackshape.utils.prompts import encode_prompts, tokenizer_sides


@pytest.fixture
def right_tokenizer(tokenizer):
    """A private copy of the SmolLM2 tokenizer, right padding and right truncation (transformers' defaults)."""
    tok = copy.deepcopy(tokenizer)
    tok.padding_side, tok.truncation_side = "right", "right"
    return tok


@pytest.fixture
def bos_tokenizer(right_tokenizer):
    """The same tokenizer, but adding a BOS-like special token when asked to (as Llama's does)."""
    bos = right_tokenizer.convert_tokens_to_ids("<|im_start|>")
    right_tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    assert right_tokenizer(["x"], add_special_tokens=True)["input_ids"][0][0] == bos
    return right_tokenizer


class Boom(RuntimeError):
    pass


def test_tokenizer_sides_sets_and_restores_even_on_error(right_tokenizer):
    tok = right_tokenizer
    with tokenizer_sides(tok, padding="left", truncation="left") as inside:
        assert inside is tok and (tok.padding_side, tok.truncation_side) == ("left", "left")
    assert (tok.padding_side, tok.truncation_side) == ("right", "right")
    with pytest.raises(Boom):
        with tokenizer_sides(tok, padding="left", truncation="left"):
            raise Boom()
    assert (tok.padding_side, tok.truncation_side) == ("right", "right")
    # None leaves a side alone (and does not restore it over a change made inside the block).
    with tokenizer_sides(tok, padding="left"):
        assert tok.truncation_side == "right"
        tok.truncation_side = "left"
    assert (tok.padding_side, tok.truncation_side) == ("right", "left")


def test_tokenizer_sides_rejects_unknown_sides(right_tokenizer):
    with pytest.raises(ValueError, match="`padding` must be 'left', 'right' or None, got 'top'"):
        with tokenizer_sides(right_tokenizer, padding="top"):
            pass
    assert right_tokenizer.padding_side == "right"


def test_encoder_pads_and_truncates_on_the_left_whatever_the_tokenizer_says(right_tokenizer, caplog):
    tok = right_tokenizer
    texts = ["a b c d e f g h", "a"]
    full = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    with caplog.at_level(logging.WARNING):
        enc = encode_prompts(tok, texts, 3, [7, 9])
    assert enc["input_ids"].tolist() == [full[0][-3:], [tok.pad_token_id] * 2 + full[1]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert enc["input_ids"].dtype == torch.long
    assert (tok.padding_side, tok.truncation_side) == ("right", "right")
    cut = [r.getMessage() for r in caplog.records if "left truncation" in r.getMessage()]
    assert len(cut) == 1 and cut[0].startswith(f"Prompt 7 is {len(full[0])} tokens")
    # budget=None: never truncated, never warned (best-of-N and the demo's probes).
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        whole = encode_prompts(tok, texts, None, 0)
    assert whole["input_ids"][0].tolist() == full[0] and not caplog.records


def test_encoder_special_token_rule_per_prompt(bos_tokenizer, caplog):
    """The calibrator's rule as an option: special tokens for plain-text prompts, none for templated ones; a cut
    prompt keeps its last ``budget`` tokens, the BOS included in the count (it is then dropped)."""
    tok, bos = bos_tokenizer, bos_tokenizer.convert_tokens_to_ids("<|im_start|>")
    texts = ["hello there", "hello there", "one two three four five six"]
    plain = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    calls = []
    enc = encode_prompts(tok, texts, 4, 10, add_special_tokens=[True, False, True],
                         on_truncate=lambda row, index, length: calls.append((row, index, length)))
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    assert rows[0] == [bos] + plain[0] and rows[1] == plain[1]
    assert rows[2] == ([bos] + plain[2])[-4:] and bos not in rows[2]
    assert calls == [(2, 12, len(plain[2]) + 1)]  # the hook replaces the default warning
    assert encode_prompts(tok, texts[:1], None, 0, add_special_tokens=True)["input_ids"].tolist() == [[bos] + plain[0]]
    with pytest.raises(ValueError, match="`add_special_tokens` has 1 flags for 3 prompts"):
        encode_prompts(tok, texts, None, 0, add_special_tokens=[True])


def test_calibrator_encodes_through_the_shared_encoder(bos_tokenizer, tiny_lm, reward, caplog):
    """ThresholdCalibrator.encode_prompts: the special-token rule, left truncation and its own warning text."""
    from hf_stackshape.calibration.calibrator import ThresholdCalibrator

    tok, bos = bos_tokenizer, bos_tokenizer.convert_tokens_to_ids("<|im_start|>")
    cal = ThresholdCalibrator(tiny_lm, tok, reward, num_samples=2, max_new_tokens=4, max_prompt_length=12,
                              dialogue_prompts_as_text=True, show_progress=False)
    prompts = ["Human: hi\n\nAssistant:", "word " * 20]  # HH text (gets BOS), a plain prompt (chat template)
    assert [cal.render_prompt(p)[1] for p in prompts] == [False, True]
    with caplog.at_level(logging.WARNING):
        enc = cal.encode_prompts(prompts, first_index=5)
    hh = tok(prompts[0], add_special_tokens=True)["input_ids"]
    chat = tok(cal.format_prompt(prompts[1]), add_special_tokens=False)["input_ids"]
    assert hh[0] == bos and len(hh) <= 12 < len(chat)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    assert rows == [hh, chat[-12:]]
    assert "Prompt 6 ('word word" in caplog.text and "keeping its last 12 tokens" in caplog.text
    assert "Prompt 5" not in caplog.text and tok.padding_side == "right"
