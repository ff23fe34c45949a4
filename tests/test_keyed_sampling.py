"""Sampled results do not depend on the batch size, the resume point or the split over processes (issue 20,
item 3): every random draw of a prompt comes from a generator keyed by its global index."""

import pytest
import torch

from hf_stackshape.pipeline.generation import generate_responses
from hf_stackshape.utils.sampling import KeyedSampler, draw_key, keyed_uniform

PROMPTS = ["Hi!", "Tell me a joke about a very long road.", "What is 2+2?", "Name a color."]

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tiny_lm, tokenizer, reward, method, batch_size, prompts=PROMPTS, **kw):
    options = dict(method=method, reward=reward, weight=1.0, num_samples=2, max_new_tokens=5, seed=3,
                   show_progress=False, do_sample=method != "srs-bon")
    options.update(kw)
    return generate_responses(tiny_lm, tokenizer, prompts, batch_size=batch_size, **options)


@pytest.mark.parametrize("method", ["base", "srs-bon"])
def test_batch_size_does_not_change_sampled_results(tiny_lm, tokenizer, reward, method):
    by_two = _run(tiny_lm, tokenizer, reward, method, batch_size=2)
    by_one = _run(tiny_lm, tokenizer, reward, method, batch_size=1)
    assert by_two == by_one
    assert len(set(by_two)) > 1  # really sampled, not one repeated answer
    # Another seed draws other samples.
    assert _run(tiny_lm, tokenizer, reward, method, batch_size=2, seed=4) != by_two


@pytest.mark.parametrize("method", ["base", "srs-bon"])
def test_resume_with_another_batch_size_and_any_split_matches(tiny_lm, tokenizer, reward, method):
    whole = _run(tiny_lm, tokenizer, reward, method, batch_size=2)
    resumed = _run(tiny_lm, tokenizer, reward, method, batch_size=1, prompts=PROMPTS[1:], first_index=1)
    assert [whole[0]] + resumed == whole
    # One rank's share of a 2-process run: prompts 1 and 3, by their global indices.
    share = _run(tiny_lm, tokenizer, reward, method, batch_size=2, prompts=PROMPTS[1::2], indices=[1, 3])
    assert share == whole[1::2]


def test_keyed_sampler_draws_the_warped_distribution():
    """Gumbel-max with keyed generators samples softmax(scores / T) restricted to the top-k."""
    scores = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4, 1e-9]]))
    counts = torch.zeros(5)
    for key in range(4000):
        out = KeyedSampler([key], temperature=1.0, top_k=4)(torch.zeros(1, 1, dtype=torch.long), scores)
        counts[out.argmax()] += 1
        assert torch.isinf(out).sum() == 4  # one finite entry: the drawn token
    assert counts[4] == 0
    assert torch.allclose(counts[:4] / 4000, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)


def test_keys_and_errors():
    assert draw_key(0, 1, 0) != draw_key(0, 1, 1) != draw_key(1, 1, 1)
    assert keyed_uniform(0, [5, 2])[0] == keyed_uniform(0, [7, 5])[1]
    sampler = KeyedSampler([1, 2])
    with pytest.raises(ValueError, match="built for 2 rows but the batch has 1"):
        sampler(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="temperature"):
        KeyedSampler([1], temperature=0.0)
