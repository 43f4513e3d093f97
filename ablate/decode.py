"""A decode step without the module machinery: the same kernels as transformers' Qwen2 forward, called
directly.

At the tiny policy's size a decode step's arithmetic takes microseconds and transformers' forward
spends most of a step outside it: a module call, kwargs checks and output records per layer and
submodule, an attention-interface lookup per layer. ``LeanDecodeMixin.forward`` runs a one-token
step with a ``PrefilledLayer`` cache, the case of every generated token after the prompt, as a loop
over the weights; every other call (the prompt, training, a cache or model it does not know) goes to
transformers. It calls the ops transformers calls, in the same order, on the same shapes, so the
logits are bitwise the same (``tests/test_decode.py``) and ``generate`` picks the same tokens from the
same random stream.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# What generate passes to a decode step; any other keyword (attentions, hidden states) goes to transformers.
KNOWN = {"attention_mask", "position_ids", "cache", "use_cache", "return_dict", "logits_to_keep"}


def lean_decodable(model: Any) -> bool:
    """Whether ``model`` is a plain Qwen2-style causal LM this step reproduces exactly: SDPA attention,
    full attention in every layer, no dropout in effect, plain ``nn.Linear`` projections (no adapters,
    no quantisation) and none of its forwards swapped for a hub kernel (transformers kernelizes loaded
    models where the kernels library has one for the device)."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

    base, config = getattr(model, "model", None), model.config
    if type(base) is not Qwen2Model or config._attn_implementation != "sdpa" or base.has_sliding_layers:
        return False
    if (model.training and config.attention_dropout > 0) or config.hidden_act != "silu":
        return False
    linears, others = [model.lm_head], [base.embed_tokens, base.rotary_emb, base.norm]
    for layer in base.layers:
        attn, mlp = layer.self_attn, layer.mlp
        linears += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
        linears += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        others += [attn, mlp, layer.input_layernorm, layer.post_attention_layernorm]
    return all(type(m) is nn.Linear for m in linears) and not any(map(kernel_swapped, linears + others))


def kernel_swapped(module: nn.Module) -> bool:
    """Whether the kernels library gave ``module`` a hub kernel's forward, or one for a function it calls."""
    own = vars(module)
    funcs = own.get("_kernel_funcs", {}).values()
    return "forward" in own or "_kernel_repo" in own or any("_kernel_repo" in vars(f) for f in funcs)


def rms_norm(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """Qwen2RMSNorm.forward."""
    dtype, x = x.dtype, x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    return norm.weight * (x * torch.rsqrt(variance + norm.variance_epsilon)).to(dtype)


def decode_step(
    model: Any, input_ids: torch.Tensor, cache: Any, attention_mask: Any, position_ids: Any
) -> torch.Tensor:
    """Qwen2ForCausalLM.forward for one new token per row, ``use_cache=True``: the logits of that token."""
    from transformers.masking_utils import create_causal_mask
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    base = model.model
    h = base.embed_tokens(input_ids)
    if position_ids is None:
        position_ids = (torch.arange(1, device=h.device) + cache.get_seq_length()).unsqueeze(0)
    if isinstance(attention_mask, dict):  # made by generate already
        mask = attention_mask["full_attention"]
    else:
        mask = create_causal_mask(config=base.config, inputs_embeds=h, attention_mask=attention_mask,
                                  cache=cache, position_ids=position_ids)  # fmt: skip
    cos, sin = base.rotary_emb(h, position_ids)
    batch = h.shape[0]
    for layer in base.layers[: base.config.num_hidden_layers]:
        attn, mlp = layer.self_attn, layer.mlp
        x = rms_norm(h, layer.input_layernorm)
        shape = (batch, 1, -1, attn.head_dim)
        q = F.linear(x, attn.q_proj.weight, attn.q_proj.bias).view(shape).transpose(1, 2)
        k = F.linear(x, attn.k_proj.weight, attn.k_proj.bias).view(shape).transpose(1, 2)
        v = F.linear(x, attn.v_proj.weight, attn.v_proj.bias).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k, v = cache.update(k, v, attn.layer_idx)
        out = sdpa(attn, q, k, v, mask)
        h = h + F.linear(out.reshape(batch, 1, -1).contiguous(), attn.o_proj.weight)
        x = rms_norm(h, layer.post_attention_layernorm)
        h = h + F.linear(F.silu(F.linear(x, mlp.gate_proj.weight)) * F.linear(x, mlp.up_proj.weight),
                         mlp.down_proj.weight)  # fmt: skip
    return F.linear(rms_norm(h, base.norm), model.lm_head.weight)


def sdpa(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> torch.Tensor:
    """transformers' ``sdpa_attention_forward`` for one query token (grouped heads packed as it does)."""
    from transformers.integrations.sdpa_attention import pack_gqa, use_gqa_in_sdpa

    kwargs, groups = {}, attn.num_key_value_groups
    if groups > 1:
        if use_gqa_in_sdpa(mask, k, v):
            kwargs["enable_gqa"] = True
        else:
            q, mask = pack_gqa(q, groups), pack_gqa(mask, groups)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=attn.scaling,
                                         is_causal=False, **kwargs)  # fmt: skip
    return out.reshape(out.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()


def lean_step_applies(model: Any, input_ids: Any, args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether a forward call is a decode step ``decode_step`` computes as transformers would."""
    from ablate.generation import PrefilledLayer

    if args or input_ids is None or input_ids.shape[1] != 1 or torch.is_grad_enabled():
        return False
    if not set(kwargs) <= KNOWN or not kwargs.get("use_cache", True) or kwargs.get("return_dict") is False:
        return False
    cache = kwargs.get("cache")
    if cache is None or not all(type(layer) is PrefilledLayer for layer in cache.layers):
        return False
    return kwargs.get("logits_to_keep", 0) in (0, 1) and lean_decodable(model)


class LeanDecodeMixin:
    """``forward`` through ``decode_step`` where it is exact (see the module docstring)."""

    def forward(self, input_ids: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not lean_step_applies(self, input_ids, args, kwargs):
            return super().forward(input_ids, *args, **kwargs)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        cache = kwargs["cache"]
        logits = decode_step(self, input_ids, cache, kwargs.get("attention_mask"), kwargs.get("position_ids"))
        return CausalLMOutputWithPast(logits=logits, cache=cache)
