"""Generation: a preallocated KV cache for every ``generate()`` of a loaded model (TRL's rollouts and
evaluation), batched decoding for evaluation, and per-position EOS probabilities of given
completions by one teacher-forced forward pass.

Scoring completions after the fact, rather than recording probabilities while decoding, means
any generator (``generate_ids`` here, vLLM, a server) can produce the completions and the EOS
trajectories are the same numbers (``tests/test_generation.py`` checks them against a recording
made during decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# A generator of completions: (prompt ids, max new tokens, stop ids, pad id, sample) -> completion ids,
# each through its first stop token (``generate_ids`` on a model, or a rollout's vLLM engine).
Generate = Callable[[list[list[int]], int, list[int], int, bool], list[list[int]]]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a completion: the tokenizer's EOS and the model's generation EOS ids (as TRL)."""
    stops = [tokenizer.eos_token_id]
    extra = getattr(model.generation_config, "eos_token_id", None)
    stops += extra if isinstance(extra, list) else [extra]
    return list(dict.fromkeys(t for t in stops if t is not None))


class PrefilledLayer(DynamicLayer):
    """A KV-cache layer written into one buffer allocated up front.

    ``DynamicLayer`` copies the whole cache into a new tensor at every generated token (42% of a
    96-token decode of the tiny warm start on one CPU thread, by torch's profiler); this writes
    the new positions in place and returns a view of the filled part: the same numbers in the
    same shapes (bitwise-equal logits; ``tests/test_generation.py``).
    """

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length, self.filled = max_length, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        batch, heads, _, dim = key_states.shape
        self.key_buffer = key_states.new_empty(batch, heads, self.max_length, dim)
        self.value_buffer = value_states.new_empty(batch, heads, self.max_length, dim)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.filled + key_states.shape[-2]
        self.key_buffer[:, :, self.filled : end] = key_states
        self.value_buffer[:, :, self.filled : end] = value_states
        self.filled = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values


class PrefilledCacheMixin:
    """``generate()`` with ``PrefilledLayer`` caches where it would make a plain growing one.

    Every caller gets it: TRL's rollouts as well as evaluation. Models with other cache layers
    (sliding windows, linear attention) and caches a caller passes in are left as they are.
    """

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        cache, max_length = model_kwargs.get("cache"), generation_config.max_length
        plain = type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)
        if plain and cache.layers and not getattr(cache, "_is_user_defined", False) and max_length:
            model_kwargs["cache"] = Cache(layers=[PrefilledLayer(max_length) for _ in cache.layers])


def with_generation_mixins(model: Any) -> Any:
    """The same model, its class (same name) extended by ``PrefilledCacheMixin`` and
    ``RowSamplingMixin`` (``ablate.sampling``: no change outside ``sampled_by_rows``)."""
    from ablate.sampling import RowSamplingMixin

    cls = type(model)
    if not issubclass(cls, PrefilledCacheMixin):
        bases = (PrefilledCacheMixin, RowSamplingMixin, cls)
        model.__class__ = type(cls.__name__, bases, {"__module__": cls.__module__})
    return model


def left_pad(rows: list[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of ``rows`` padded on the left to one width."""
    width = max(map(len, rows))
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def generate_ids(
    model: Any, prompt_ids: list[list[int]], max_new_tokens: int, stops: list[int], pad_id: int, sample: bool
) -> list[list[int]]:
    """Completion token ids for one batch of prompts, each cut after its first stop token."""
    ids, mask = left_pad(prompt_ids, pad_id, next(model.parameters()).device)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        **({"do_sample": True, "temperature": 1.0} if sample else {"do_sample": False}),
        eos_token_id=stops,
        pad_token_id=pad_id,
    )
    return [cut_at_stop(row, stops) for row in out[:, ids.shape[1] :].tolist()]


def cut_at_stop(row: list[int], stops: list[int]) -> list[int]:
    """``row`` through its first stop token (all of it when it has none).

    >>> cut_at_stop([5, 6, 1, 0, 0], stops=[1])
    [5, 6, 1]
    """
    end = next((i for i, t in enumerate(row) if t in stops), len(row) - 1)
    return row[: end + 1]


@torch.no_grad()
def eos_probabilities(
    model: Any,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    eos_id: int,
    pad_id: int,
    batch_size: int = 64,
) -> list[list[float]]:
    """pi(eos) at every generated position of each completion (its stop token included), teacher-forced."""
    device = next(model.parameters()).device
    out: list[list[float]] = [[] for _ in prompt_ids]
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start : start + batch_size] if completion_ids[i]]
        if not chunk:
            continue
        # The last token's own prediction is never needed: feed every token but the last.
        ids, mask = left_pad([prompt_ids[i] + completion_ids[i][:-1] for i in chunk], pad_id, device)
        keep = max(len(completion_ids[i]) for i in chunk)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers left-padded rows
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        probs = logits.float().softmax(-1)[..., eos_id].cpu()
        for row, i in zip(probs.tolist(), chunk, strict=True):
            out[i] = row[keep - len(completion_ids[i]) :]
    return out
