"""One decoder-stack finder (`hf_stackshape.utils.modeling.decoder_stack`) for the KV-cache scorer, Q-heads and CD."""

import pytest
import torch

from hf_stackshape.utils.modeling import decoder_stack, last_hidden_state_module, unwrap_peft


def test_every_wrapper_leads_to_the_same_decoder(tiny_lm, tiny_rm_model):
    from peft import LoraConfig, get_peft_model

    assert decoder_stack(tiny_lm) is tiny_lm.model and decoder_stack(tiny_lm.model) is tiny_lm.model
    assert decoder_stack(tiny_rm_model) is tiny_rm_model.model
    assert last_hidden_state_module(tiny_lm) is tiny_lm.model.norm
    peft_lm = get_peft_model(tiny_lm, LoraConfig(r=2, target_modules=["q_proj"]))
    assert unwrap_peft(peft_lm) is tiny_lm and decoder_stack(peft_lm) is tiny_lm.model  # LoRA is injected in place
    assert unwrap_peft(tiny_rm_model) is tiny_rm_model


def test_old_names_are_the_one_finder():
    from hf_stackshape.qhead import modeling_qhead
    from hf_stackshape.utils import kv_cache

    assert kv_cache.resolve_backbone is decoder_stack and modeling_qhead.backbone_decoder is decoder_stack
    assert modeling_qhead.last_hidden_state_module is last_hidden_state_module


def test_final_norm_missing_says_the_fix():
    with pytest.raises(ValueError, match="share_hidden_states=False"):
        last_hidden_state_module(torch.nn.Linear(2, 2))


def test_unmerged_peft_reward_model_scores_groups_through_its_decoder(tokenizer, tiny_rm_model):
    """The prefix-cache scorer finds the decoder under a peft wrapper (it used to take the whole classifier and fail
    on its output), so grouped scoring of an unmerged LoRA reward model equals plain scoring."""
    from peft import LoraConfig, get_peft_model

    from hf_stackshape import HFRewardModel

    peft_rm = get_peft_model(
        tiny_rm_model, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["score"], init_lora_weights=False)
    ).eval()
    reward = HFRewardModel(peft_rm, tokenizer)
    prompts, groups = ["hello there", "what is up"], [["a b", "a c d"], ["x", "y z"]]
    grouped = reward.score_grouped(prompts, groups)
    flat = reward.score([p for p, g in zip(prompts, groups) for _ in g], [r for g in groups for r in g])
    torch.testing.assert_close(grouped.flatten(), flat, atol=1e-5, rtol=1e-5)
