"""The lean decode step gives transformers' logits bit for bit, and is taken only where it can."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import Cache

from ablate.decode import lean_decodable
from ablate.generation import PrefilledLayer, generate_ids, with_generation_mixins
from ablate.models import TinyModelConfig, load_model


def qwen2(kv_heads: int, **changes) -> torch.nn.Module:
    """A random Qwen2 of 4 heads (``kv_heads`` of them for keys and values: grouped when fewer)."""
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=kv_heads, intermediate_size=96, **changes)  # fmt: skip
    return with_generation_mixins(Qwen2ForCausalLM(config)).eval()


def prefilled(model, ids: torch.Tensor, mask: torch.Tensor | None, room: int) -> Cache:
    cache = Cache(layers=[PrefilledLayer(ids.shape[1] + room) for _ in range(model.config.num_hidden_layers)])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
    return cache


def prompt_calls(model) -> list[int]:
    """Counts the calls that reach transformers' decoder stack (the lean step does not)."""
    calls: list[int] = []
    model.model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["heads", "grouped"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_a_decode_step_gives_transformers_logits_bitwise(kv_heads, padded):
    model = qwen2(kv_heads)
    ids = torch.randint(3, 50, (6, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[:3, :4] = 0
    ours, theirs = prefilled(model, ids, mask, 8), prefilled(model, ids, mask, 8)
    token, calls = ids[:, -1:], prompt_calls(model)
    for _ in range(8):
        mask = torch.cat([mask, mask.new_ones(6, 1)], -1)
        with torch.no_grad():
            lean = model(input_ids=token, attention_mask=mask, cache=ours, use_cache=True).logits
            plain = Qwen2ForCausalLM.forward(model, input_ids=token, attention_mask=mask, cache=theirs,
                                             use_cache=True).logits  # fmt: skip
        assert torch.equal(lean, plain)
        token = plain[:, -1].argmax(-1, keepdim=True)
    assert len(calls) == 8  # transformers' stack ran only for the reference, never for the lean step
    for layer, other in zip(ours.layers, theirs.layers, strict=True):
        assert torch.equal(layer.keys, other.keys) and torch.equal(layer.values, other.values)


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_generate_picks_the_same_tokens_with_the_lean_step(sample):
    model, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    prompts = [tokenizer(p).input_ids for p in ("Add: 1 + 2\n", "x", "Add: 12 + 30 + 7\nShow")]
    calls = prompt_calls(model)
    torch.manual_seed(5)
    lean = generate_ids(model, prompts, 20, [tokenizer.eos_token_id], tokenizer.pad_token_id, sample)
    assert len(calls) == 1  # the prompt; every generated token by the lean step
    model.__class__ = Qwen2ForCausalLM  # transformers alone (its own cache too), the same weights
    torch.manual_seed(5)
    plain = generate_ids(model, prompts, 20, [tokenizer.eos_token_id], tokenizer.pad_token_id, sample)
    assert lean == plain
    assert len(calls) == 1 + max(map(len, plain))  # without the lean step, a call per generated token


def test_the_lean_step_is_not_taken_where_it_would_not_be_transformers_own():
    assert lean_decodable(qwen2(4)) and lean_decodable(qwen2(2))
    assert not lean_decodable(qwen2(4, sliding_window=4, use_sliding_window=True, max_window_layers=0))
    dropping = qwen2(4, attention_dropout=0.1)
    assert lean_decodable(dropping) and not lean_decodable(dropping.train())  # dropout only in training
    eager = qwen2(4)
    eager.config._attn_implementation = "eager"
    assert not lean_decodable(eager)
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(qwen2(4), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    assert not lean_decodable(adapted.base_model.model)
    model = qwen2(4)
    ids = torch.randint(3, 50, (2, 5))
    cache, calls = prefilled(model, ids, None, 4), prompt_calls(model)
    model(input_ids=ids[:, -1:], cache=cache, use_cache=True)  # gradients on: transformers' forward
    assert len(calls) == 1
