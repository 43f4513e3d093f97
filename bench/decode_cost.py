"""What one generated token costs the tiny warm start on one CPU thread, and what would change it.

1. The decode forward per batch size (SDPA and eager attention): the cost at batch 1 is per-op
   overhead, the slope is the work per row (its arithmetic is about 2 FLOP per parameter).
2. A decode loop that drops finished rows from the batch and its KV cache against ``generate()``:
   the same tokens (greedy and sampled with the same seed) and the time of each, at the evaluation's
   batch of 64 and on all 628 test questions of ``experiment=repro_cpu``.
3. ``--compile``: ``torch.compile`` of the decode step on a static cache (compile time, then per token).
4. ``--attention``: one decode step's attention over a KV cache of the rollouts' size (batch 32, 113
   cached positions, 4 layers' caches in turn, as a step reads them): SDPA, plain matmuls, and a fused
   kernel ``torch.compile`` writes from elementwise ops, with the KV bytes a second each reads, against
   what a plain sum reads a second from memory of the same size.
5. With ``--attention``: the same ways registered as transformers attention functions (decode steps
   only; prefill stays SDPA) inside the tiny warm start, ms a token at batch 32 and 64 over a
   left-padded cache growing from 60 positions, and the largest logit difference from SDPA's.

    OMP_NUM_THREADS=1 python bench/decode_cost.py [--compile] [--attention]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate
from transformers.cache_utils import Cache, StaticCache

from ablate.config import compose
from ablate.evaluate import prompt_text
from ablate.generation import PrefilledLayer, generate_ids, left_pad, stop_token_ids
from ablate.models import load_model


def per_token(model, batch: int, cached: int = 60, repeats: int = 30) -> float:
    ids = torch.randint(3, 60, (batch, cached))
    layers = model.config.num_hidden_layers
    cache = Cache(layers=[PrefilledLayer(cached + repeats + 1) for _ in range(layers)])
    model(input_ids=ids, past_key_values=cache, use_cache=True)
    one = ids[:, -1:]
    start = time.perf_counter()
    for _ in range(repeats):
        model(input_ids=one, past_key_values=cache, use_cache=True)
    return (time.perf_counter() - start) / repeats


def compacting_decode(
    model, prompts: list[list[int]], max_new: int, stops: list[int], pad: int, sample: bool
) -> list[list[int]]:
    """Greedy or sampled decoding that stops computing a row once it has stopped (same random stream as
    ``generate``: the sample is drawn over the whole batch, finished rows included)."""
    ids, mask = left_pad(prompts, pad, "cpu")
    batch, width = ids.shape
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = Cache(layers=[PrefilledLayer(width + max_new) for _ in range(model.config.num_hidden_layers)])
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                logits_to_keep=1)  # fmt: skip
    logits, rows, last = out.logits[:, -1], torch.arange(batch), pos[:, -1:]
    full_mask, stop = torch.cat([mask, mask.new_ones(batch, max_new)], -1), torch.tensor(stops)
    tokens = torch.full((batch, max_new), pad)
    for t in range(max_new):
        if sample:
            probs = torch.zeros(batch, logits.shape[-1])
            probs[:, 0] = 1.0
            probs[rows] = logits.float().softmax(-1)
            nxt = torch.multinomial(probs, 1).squeeze(1)[rows]
        else:
            nxt = logits.float().argmax(-1)
        tokens[rows, t] = nxt
        done = torch.isin(nxt, stop)
        if t == max_new - 1 or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            rows, nxt, last = rows[keep], nxt[keep], last[keep]
            for layer in cache.layers:
                layer.key_buffer, layer.value_buffer = layer.key_buffer[keep], layer.value_buffer[keep]
        last = last + 1
        seen = full_mask[rows, : width + t + 1]
        out = model(input_ids=nxt[:, None], attention_mask=seen, position_ids=last, past_key_values=cache)
        logits = out.logits[:, -1]
    cut = []
    for row in tokens.tolist():
        end = next((i for i, tok in enumerate(row) if tok in stops), len(row) - 1)
        cut.append(row[: end + 1])
    return cut


def timed(fn, *args):
    torch.manual_seed(0)
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


# One query token's attention over a cache; ``bias`` is additive, (batch, 1, positions, 1).
def matmul_attention(q, k, v, bias, scale: float):
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).add_(bias.transpose(-1, -2))
    return torch.matmul(scores.softmax(-1), v)


def elementwise_attention(q, k, v, bias, scale: float):
    # Elementwise ops only, so that torch.compile fuses the whole of it into one loop.
    return (((q * k).sum(-1, keepdim=True) * scale + bias).softmax(-2) * v).sum(-2, keepdim=True)


def attention_cost(repeats: int = 60) -> None:
    """Section 4: decode attention, per layer, with 4 layers' KV caches read in turn."""
    import torch.nn.functional as F

    batch, heads, cached, dim = 32, 4, 113, 32
    caches = [(torch.randn(batch, heads, cached + 18, dim)[:, :, :cached],
               torch.randn(batch, heads, cached + 18, dim)[:, :, :cached]) for _ in range(4)]  # fmt: skip
    q = torch.randn(batch, heads, 1, dim)
    keep = torch.ones(batch, 1, 1, cached, dtype=torch.bool)
    keep[: batch // 4, ..., :4] = False  # left padding of some rows
    bias = torch.zeros(batch, 1, 1, cached).masked_fill(~keep, float("-inf")).transpose(-1, -2)
    scale = dim**-0.5

    def sdpa(k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)

    start = time.perf_counter()
    fused = torch.compile(elementwise_attention, dynamic=False)
    fused(q, *caches[0], bias, scale)
    print(f"4. decode attention, batch {batch}, {cached} cached positions (compiling the fused kernel: "
          f"{time.perf_counter() - start:.1f} s):")  # fmt: skip
    ref = sdpa(*caches[0])
    kv_bytes = 2 * caches[0][0].numel() * 4
    ways = {
        "sdpa": sdpa,
        "matmul": lambda k, v: matmul_attention(q, k, v, bias, scale),
        "fused (compiled)": lambda k, v: fused(q, k, v, bias, scale),
    }
    for name, fn in ways.items():
        err = (fn(*caches[0]) - ref).abs().max().item()
        seconds = []
        for _ in range(repeats):
            for k, v in caches:
                t = time.perf_counter()
                fn(k, v)
                seconds.append(time.perf_counter() - t)
        median = sorted(seconds)[len(seconds) // 2]
        print(f"   {name:16s} {1e6 * median:7.1f} us a layer, {kv_bytes / median / 1e9:5.1f} GB/s of KV "
              f"(max |diff| from sdpa {err:.1e})")  # fmt: skip
    block = torch.randn(kv_bytes)  # 4 layers' KV bytes, as float32
    t = time.perf_counter()
    for _ in range(20):
        block.sum()
    rate = 20 * block.numel() * 4 / (time.perf_counter() - t) / 1e9
    print(f"   a plain sum over the 4 layers' KV bytes: {rate:.1f} GB/s")


def decode_attention(fn):
    """A transformers attention function: ``fn(q, k, v, bias, scale)`` for one-token steps, SDPA otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        if query.shape[2] != 1 or dropout:
            return sdpa_attention_forward(
                module, query, key, value, attention_mask, dropout, scaling, **kwargs
            )
        if attention_mask is None:
            bias = query.new_zeros(query.shape[0], 1, key.shape[2], 1)
        else:  # SDPA's boolean mask (batch, 1, 1, positions) as an additive bias over positions
            bias = query.new_zeros(attention_mask.shape).masked_fill_(~attention_mask, float("-inf"))
            bias = bias.transpose(-1, -2)
        return fn(query, key, value, bias, scaling).transpose(1, 2).contiguous(), None

    return attention


def decode_pass(model, ids, mask, tokens: int) -> tuple[float, list[torch.Tensor]]:
    """``tokens`` decode steps after prefilling ``ids``: seconds a step, and each step's logits."""
    cached = ids.shape[1]
    layers = model.config.num_hidden_layers
    cache = Cache(layers=[PrefilledLayer(cached + tokens + 8) for _ in range(layers)])  # never full
    model(input_ids=ids, attention_mask=mask[:, :cached], past_key_values=cache, use_cache=True)
    logits, start = [], time.perf_counter()
    for i in range(tokens):
        step = mask[:, : cached + i + 1]
        logits.append(model(input_ids=ids[:, -1:], attention_mask=step, past_key_values=cache).logits)
    return (time.perf_counter() - start) / tokens, logits


def attention_in_model(model, cached: int = 60, tokens: int = 60, repeats: int = 7) -> None:
    """Section 5: the ways of section 4 as the model's decode attention, per token."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    ways = {"matmul": matmul_attention, "fused": torch.compile(elementwise_attention, dynamic=True)}
    for name, fn in ways.items():
        AttentionInterface.register(f"decode_{name}", decode_attention(fn))
        AttentionMaskInterface.register(f"decode_{name}", sdpa_mask)
    print(
        f"5. decode attention inside the model, ms a token, median of {repeats} passes, the ways interleaved:"
    )
    names = ("sdpa", "decode_matmul", "decode_fused")
    for batch in (32, 64):
        torch.manual_seed(0)
        ids = torch.randint(3, 60, (batch, cached))
        mask = torch.ones(batch, cached + tokens, dtype=torch.long)
        mask[: batch // 4, :4] = 0  # left padding of some rows
        seconds: dict[str, list[float]] = {name: [] for name in names}
        logits = {}
        for i in range(repeats + 1):  # the first pass compiles and is not counted
            for name in names:
                model.set_attn_implementation(name)
                took, logits[name] = decode_pass(model, ids, mask, tokens)
                seconds[name] += [took] if i else []
        cells = []
        for name in names:
            err = max((a - b).abs().max().item() for a, b in zip(logits[name], logits["sdpa"], strict=True))
            median = statistics.median(seconds[name])
            cells.append(f"{name} {1e3 * median:.2f} (max |logit diff| {err:.0e})")
        print(f"   batch {batch}: " + ", ".join(cells))
    model.set_attn_implementation("sdpa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the decode step")
    parser.add_argument("--attention", action="store_true", help="only sections 4 and 5: decode attention")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["experiment=repro_cpu"])
    model, tokenizer = load_model(instantiate(cfg.model, _convert_="all"))
    model.eval()
    torch.set_grad_enabled(False)
    if args.attention:
        attention_cost()
        return attention_in_model(model)
    print("1. decode forward, ms per token (and per row):")
    for attention in ("sdpa", "eager"):
        model.set_attn_implementation(attention)
        cells = []
        for b in (1, 8, 32, 64, 128):
            seconds = per_token(model, b)
            cells.append(f"batch {b}: {1e3 * seconds:.2f} ({1e3 * seconds / b:.3f})")
        print(f"   {attention:5s} " + ", ".join(cells))
    model.set_attn_implementation("sdpa")
    params = sum(p.numel() for p in model.parameters())
    print(f"   arithmetic: {2 * params / 1e6:.2f} MFLOP per row and token ({params / 1e6:.2f}M parameters)")

    test = instantiate(cfg.data).load().query("split == 'test'")
    texts = [prompt_text(p, tokenizer) for p in test["prompt"]]
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prompts.sort(key=len)
    stops, pad, new = stop_token_ids(model, tokenizer), tokenizer.pad_token_id, cfg.max_completion_length
    print("2. generate() against a loop that drops finished rows:")
    for sample in (False, True):
        ref, t_ref = timed(generate_ids, model, prompts[:64], new, stops, pad, sample)
        got, t_got = timed(compacting_decode, model, prompts[:64], new, stops, pad, sample)
        same = sum(a == b for a, b in zip(ref, got, strict=True))
        print(f"   {'sampled' if sample else 'greedy '} batch 64: {t_ref:.2f} s vs {t_got:.2f} s "
              f"({t_ref / t_got:.2f}x), same tokens {same}/64")  # fmt: skip
    for size in (64, len(prompts)):
        start = time.perf_counter()
        for i in range(0, len(prompts), size):
            compacting_decode(model, prompts[i : i + size], new, stops, pad, False)
        seconds = time.perf_counter() - start
        print(f"   all {len(prompts)} test questions in batches of {size}: {seconds:.2f} s")
    start = time.perf_counter()
    for i in range(0, len(prompts), 64):
        generate_ids(model, prompts[i : i + 64], new, stops, pad, False)
    print(f"   the same with generate() in batches of 64: {time.perf_counter() - start:.2f} s")

    if args.compile:
        batch, width = 64, 40
        ids = torch.randint(3, 60, (batch, width))
        cache = StaticCache(config=model.config, max_cache_len=width + new)
        model(input_ids=ids, past_key_values=cache, use_cache=True)

        def step(tok, pos):
            return model(input_ids=tok, position_ids=pos, cache_position=pos[0], past_key_values=cache).logits

        compiled = torch.compile(step, dynamic=False)
        start = time.perf_counter()
        for i in range(3):
            compiled(ids[:, -1:], torch.full((batch, 1), width + i))
        first = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(3, 43):
            compiled(ids[:, -1:], torch.full((batch, 1), width + i))
        print(f"3. torch.compile, batch 64: {first:.1f} s for the first 3 tokens (compiling), then "
              f"{(time.perf_counter() - start) / 40 * 1e3:.2f} ms a token")  # fmt: skip


if __name__ == "__main__":
    main()
