"""A fingerprint of how this machine rounds: whether a training run here can repeat one made elsewhere
bit for bit.

The same code, seeds and torch build train different weights where the kernels accumulate in
another order: ATen's vectorised kernels follow the CPU's vector width (AVX2 or AVX-512), and MKL picks
its matrix-product kernels by processor vendor. The first difference is one rounding in the last bit;
a few hundred optimiser steps grow it into a different model (the shipped warm starts, trained with
AVX2 kernels, come out about 1e-3 off in every weight with torch's AVX-512 ones). ``fingerprint`` runs a fixed
battery of the kernels a training step uses and hashes their exact results: two machines with the
same fingerprint run those kernels alike, so a training run made on one repeats on the other
(``tests/test_warmstart.py`` retrains the shipped warm starts bit for bit where it matches).

>>> fingerprint() == fingerprint()
True
"""

from __future__ import annotations

import hashlib


def fingerprint() -> str:
    """The hash (16 hex digits) of a fixed forward, backward and AdamW step on random data: matrix
    products through the BLAS at a transformer layer's shapes, RMS norm, rotary-free causal attention,
    SiLU, cross-entropy over a vocabulary and the optimiser's update."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * 0.05).requires_grad_()

    batch, length, hidden, heads, inner, vocab = 8, 48, 128, 4, 384, 97
    x, qkv, up, down, head = rand(batch, length, hidden), rand(3 * hidden, hidden), rand(inner, hidden), \
        rand(hidden, inner), rand(vocab, hidden)  # fmt: skip
    targets = torch.randint(vocab, (batch * length,), generator=gen)
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    q, k, v = F.linear(normed, qkv).view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(2)
    h = attended + F.linear(F.silu(F.linear(attended, up)), down)
    loss = F.cross_entropy(F.linear(h, head).flatten(0, 1), targets)
    params = [x, qkv, up, down, head]
    loss.backward()
    torch.optim.AdamW(params, lr=1e-3).step()
    digest = hashlib.sha256()
    for tensor in (loss, h, *params, *(p.grad for p in params)):
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
