"""Per-row random streams: the distribution generate samples, the same completion however rows are batched."""

import pytest
import torch

from ablate.generation import generate_ids, stop_token_ids
from ablate.models import TinyModelConfig, load_model
from ablate.sampling import RowSampler, gumbel_noise, row_key, sampled_by_rows

PROMPTS = ["Add: 1 + 2\n", "Add: 12 + 30 + 7\nShow", "x", "Add: 4 + 4 + 4 + 4 + 4\n", "Add: 9\n", "Add"]


def test_the_draws_follow_the_processed_scores():
    scores = torch.tensor([2.0, 1.0, 0.0, -1.0, float("-inf")])  # the last token filtered (top-k / top-p)
    keys = [row_key(0, 0, row) for row in range(40_000)]
    out = RowSampler(keys)(torch.zeros(len(keys), 3, dtype=torch.long), scores.expand(len(keys), -1).clone())
    assert ((out == 0).sum(-1) == 1).all() and ((out == 0) | (out == float("-inf"))).all()  # one token a row
    freq = (out == 0).double().mean(0)
    expected = scores.double().softmax(-1)
    assert freq[-1] == 0  # a filtered token is never drawn
    assert torch.allclose(freq, expected, atol=0.01), (freq, expected)  # 4 standard errors at 40k draws


def test_each_position_and_row_has_its_own_noise():
    keys = torch.tensor([row_key(0, 0, 0), row_key(0, 0, 1), row_key(0, 1, 0), row_key(1, 0, 0)])
    noise = gumbel_noise(keys, step=0, vocab=100)
    assert len({tuple(row.tolist()) for row in noise}) == 4  # rows, batches and seeds all differ
    assert not torch.equal(noise[0], gumbel_noise(keys[:1], step=1, vocab=100)[0])
    assert abs(noise.mean().item() - 0.5772) < 0.1  # Euler's constant: the Gumbel mean


@pytest.fixture(scope="module")
def policy():
    model, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    return model.eval(), tokenizer


def sampled(policy, prompts: list[str], keys: list[int] | None, seed: int) -> list[list[int]]:
    model, tokenizer = policy
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    torch.manual_seed(seed)  # torch's stream: it must not matter inside sampled_by_rows
    stops = stop_token_ids(model, tokenizer)
    if keys is None:
        return generate_ids(model, ids, 20, stops, tokenizer.pad_token_id, sample=True)
    with sampled_by_rows(keys):
        return generate_ids(model, ids, 20, stops, tokenizer.pad_token_id, sample=True)


def test_a_row_s_completion_does_not_depend_on_its_batch(policy):
    keys = [row_key(3, 0, row) for row in range(len(PROMPTS))]
    whole = sampled(policy, PROMPTS, keys, seed=0)
    halves = sampled(policy, PROMPTS[:3], keys[:3], seed=1) + sampled(policy, PROMPTS[3:], keys[3:], seed=2)
    assert whole == halves  # as two processes would generate the global batch
    assert len({tuple(c) for c in whole}) > 1
    # Without per-row streams a row's sample depends on torch's stream (here: the seed, and the batch).
    assert sampled(policy, PROMPTS, None, seed=0) != sampled(policy, PROMPTS, None, seed=1)


def test_greedy_decoding_is_left_alone(policy):
    model, tokenizer = policy
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    stops = stop_token_ids(model, tokenizer)
    plain = generate_ids(model, ids, 20, stops, tokenizer.pad_token_id, sample=False)
    with sampled_by_rows([row_key(0, 0, r) for r in range(len(ids))]):
        assert generate_ids(model, ids, 20, stops, tokenizer.pad_token_id, sample=False) == plain
