"""Sampling that does not depend on how a batch is split: each completion has its own random stream.

TRL samples a process's completions from that process's torch generator (seeded per device), so
one run on 1 and on 2 processes draws different completions, and a row's sample depends on the
rows that share its batch. With ``rollout.seed_per_row=true`` token ``t`` of a completion is drawn
by the Gumbel-max trick, from noise that is a hash of (run seed, generation batch, the completion's
row in the global batch, ``t``, token id): the same completion wherever its row is generated. It
samples the distribution ``generate`` samples (after temperature, top-k and top-p), from another
random stream than torch's: a run with it differs from the same run without it.

>>> noise = gumbel_noise(torch.tensor([row_key(0, 0, 5)]), step=3, vocab=4)
>>> bool((noise == gumbel_noise(torch.tensor([7, row_key(0, 0, 5)]), 3, 4)[1]).all())  # its own stream
True
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
from transformers import LogitsProcessor

M32 = 0xFFFFFFFF
_KEYS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("row_keys", default=None)


def _mix(x: Any) -> Any:
    """A 32-bit integer hash (T. Mueller's), for Python ints and int64 tensors alike; every product
    stays below 2**63, so no tensor arithmetic overflows."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    return (x >> 16) ^ x


def row_key(seed: int, batch: int, row: int) -> int:
    """The random stream of one completion: row ``row`` of generation batch ``batch`` of a run."""
    return _mix(_mix(_mix(seed & M32) ^ (batch & M32)) ^ (row & M32))


def gumbel_noise(keys: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise (float64), one row per key, for generated position ``step``."""
    tokens = torch.arange(vocab, device=keys.device, dtype=torch.int64)
    h = _mix(_mix(_mix(keys.to(torch.int64))[:, None] ^ (step & M32)) ^ tokens)
    uniform = (h.double() + 0.5) / 2.0**32
    return -torch.log(-torch.log(uniform))


class RowSampler(LogitsProcessor):
    """The last logits processor of a sampled ``generate``: leaves one finite score per row, the
    Gumbel-max draw from that row's stream, so generate's own draw can only pick it."""

    def __init__(self, keys: list[int]):
        self.keys, self.width = torch.tensor(keys, dtype=torch.int64), None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.width = self.width or input_ids.shape[1]  # the prompt's: the first call comes before any token
        noise = gumbel_noise(self.keys.to(scores.device), input_ids.shape[1] - self.width, scores.shape[-1])
        choice = (scores.double() + noise).argmax(-1, keepdim=True)
        return torch.full_like(scores, float("-inf")).scatter_(1, choice, 0.0)


@contextlib.contextmanager
def sampled_by_rows(keys: list[int]) -> Iterator[None]:
    """Every sampled ``generate`` of a loaded model in this block draws row ``i`` from ``keys[i]``."""
    token = _KEYS.set(keys)
    try:
        yield
    finally:
        _KEYS.reset(token)


class RowSamplingMixin:
    """A model's ``generate`` with ``RowSampler`` last inside ``sampled_by_rows``; unchanged outside."""

    def _get_logits_processor(self, generation_config: Any, *args: Any, **kwargs: Any):
        processors = super()._get_logits_processor(generation_config, *args, **kwargs)
        keys = _KEYS.get()
        if keys is not None and generation_config.do_sample:
            processors.append(RowSampler(keys))
        return processors


class RowSeedsMixin:
    """A TRL trainer whose rollouts draw each completion from its own stream (``row_key``): the rows
    of a generation batch are numbered across the processes, as TRL splits the global batch."""

    _generations = 0

    def _generate_single_turn(self, prompt_ids: list[list[int]], *args: Any, **kwargs: Any):
        rows = len(prompt_ids)
        first = self.accelerator.process_index * rows
        keys = [row_key(self.args.seed, self._generations, first + i) for i in range(rows)]
        self._generations += 1
        with sampled_by_rows(keys):
            return super()._generate_single_turn(prompt_ids, *args, **kwargs)


def with_row_seeds(trainer_cls: type) -> type:
    """``trainer_cls`` whose rollouts sample each completion from its own stream."""
    return type(trainer_cls.__name__, (RowSeedsMixin, trainer_cls), {"__module__": trainer_cls.__module__})
