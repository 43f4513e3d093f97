"""Evaluation's decoding and teacher-forced EOS probabilities equal what plain generate() gives."""

import pytest
import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList

from ablate.generation import PrefilledLayer, eos_probabilities, generate_ids, stop_token_ids
from ablate.models import TinyModelConfig, load_model

PROMPTS = ["Add: 1 + 2\n", "Add: 12 + 30 + 7\nShow", "x", "Add: 4 + 4 + 4 + 4 + 4\n"]


class EOSRecorder(LogitsProcessor):
    """pi(eos) at every decoding step, recorded while generate() runs (the reference)."""

    def __init__(self, eos: int):
        self.eos, self.steps = eos, []

    def __call__(self, input_ids, scores):
        self.steps.append(scores.float().softmax(-1)[:, self.eos])
        return scores


@pytest.fixture(scope="module")
def policy():
    # A random policy that can stop: EOS gets 5 times the output row of the token it writes first for
    # the first prompt, so EOS is a likely choice there and completions end at different places.
    model, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    model.eval()
    with torch.no_grad():
        first = model(**tokenizer(PROMPTS[:1], return_tensors="pt")).logits[0, -1].argmax()
        model.lm_head.weight[tokenizer.eos_token_id] = 5 * model.lm_head.weight[first]  # tied: embedding too
    return model, tokenizer


def reference(model, tokenizer, sample: bool, seed: int = 0):
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    recorder = EOSRecorder(tokenizer.eos_token_id)
    torch.manual_seed(seed)
    out = model.generate(
        **enc, max_new_tokens=24, do_sample=sample, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(model, tokenizer), logits_processor=LogitsProcessorList([recorder]),
        cache=DynamicCache(config=model.config),  # transformers' own growing cache
    )  # fmt: skip
    return out[:, enc["input_ids"].shape[1] :].tolist(), torch.stack(recorder.steps, 1).tolist()


def cut(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def test_loaded_models_generate_with_the_preallocated_cache(policy):
    model, _ = policy
    kwargs: dict = {}
    model._prepare_cache_for_generation(GenerationConfig(max_length=30), kwargs, None, 2, 29)
    assert [type(layer) for layer in kwargs["cache"].layers] == [PrefilledLayer] * 2
    assert all(layer.max_length == 30 for layer in kwargs["cache"].layers)
    given = {"cache": DynamicCache(config=model.config)}
    model._prepare_cache_for_generation(GenerationConfig(max_length=30), given, None, 2, 29)
    assert type(given["cache"]) is DynamicCache  # a cache the caller passes is kept


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_preallocated_cache_gives_generates_tokens(policy, sample):
    model, tokenizer = policy
    eos = tokenizer.eos_token_id
    expected, _ = reference(model, tokenizer, sample, seed=3)
    prompt_ids = tokenizer(PROMPTS, add_special_tokens=False)["input_ids"]
    torch.manual_seed(3)
    got = generate_ids(model, prompt_ids, 24, [eos], tokenizer.pad_token_id, sample)
    assert got == [cut(row, eos) for row in expected]
    lengths = {len(g) for g in got}
    assert len(lengths) > 1 and any(g[-1] == eos for g in got)  # rows stopped at different places


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_teacher_forced_eos_probabilities_match_the_ones_recorded_while_decoding(policy, sample):
    model, tokenizer = policy
    eos = tokenizer.eos_token_id
    generated, recorded = reference(model, tokenizer, sample=sample, seed=1)
    completions = [cut(row, eos) for row in generated]
    prompt_ids = tokenizer(PROMPTS, add_special_tokens=False)["input_ids"]
    got = eos_probabilities(model, prompt_ids, completions, eos, tokenizer.pad_token_id, batch_size=3)
    for row, probs, completion in zip(got, recorded, completions, strict=True):
        assert len(row) == len(completion)
        assert row == pytest.approx(probs[: len(completion)], rel=1e-4, abs=1e-6)
    assert max(max(r) for r in got) > 0.1  # EOS is a live choice, not a constant ~0
