"""Policy models: the embedded tiny causal LM (built locally, no hub) or any HF model id/path.

The tiny model is a small Qwen2-style decoder with a character-level tokenizer, both made
from a config alone, so the platform runs with no network and no GPU. It is cached on disk
keyed by its config, so repeated runs load the same initial weights.

>>> model, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=1, heads=2))
>>> tokenizer.decode(tokenizer("12+3=15").input_ids)
'12+3=15'
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from ablate.generation import with_generation_mixins

EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<|unk|>"
PLAIN_TOKENIZERS = ("PreTrainedTokenizerFast", "TokenizersBackend")


@dataclass
class TinyModelConfig:
    """The embedded default policy: sizes of a small Qwen2-style decoder."""

    hidden_size: int = 64  # width of the residual stream
    layers: int = 2  # decoder blocks
    heads: int = 4  # attention heads (key/value heads too)
    intermediate_size: int = 192  # MLP width
    max_position_embeddings: int = 512  # longest prompt + completion
    init_seed: int = 0  # initial weights are a function of this seed
    cache_dir: str = ".cache/ablate/models"  # where built models are kept
    lora: dict[str, Any] | None = (
        None  # peft LoraConfig keys (r, lora_alpha, target_modules, ...); None: full
    )

    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in ("cache_dir", "lora")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def checkpoint(self) -> Path:
        return tiny_path(self)


@dataclass
class PretrainedModelConfig:
    """Any Hugging Face causal LM by hub id or local path."""

    name_or_path: str = "Qwen/Qwen2.5-0.5B"  # hub id or local directory
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    attn_implementation: str | None = None  # e.g. sdpa, flash_attention_2; None: the library's default
    trust_remote_code: bool = False  # run model code shipped with the checkpoint
    lora: dict[str, Any] | None = (
        None  # peft LoraConfig keys (r, lora_alpha, target_modules, ...); None: full
    )


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII, with EOS and padding tokens."""
    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=EOS, pad_token=PAD, unk_token=UNK, padding_side="left"
    )


def build_tiny(cfg: TinyModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    tokenizer = char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.init_seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def tiny_path(cfg: TinyModelConfig) -> Path:
    """Build the tiny model once per config and return its directory."""
    path = Path(cfg.cache_dir) / f"tiny-{cfg.key()}"
    if not (path / "config.json").exists():
        model, tokenizer = build_tiny(cfg)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(path) if not path.exists() else None
    return path


def load_tokenizer(source: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, left-padded, with a pad token.

    A checkpoint that declares a plain tokenizers-library tokenizer gets exactly that:
    transformers 5 would otherwise swap in its model type's tokenizer (Qwen2's byte-level BPE
    for a qwen2 config), which is not the vocabulary the model was trained with.
    """
    declared = Path(source, "tokenizer_config.json")
    plain = declared.exists() and json.loads(declared.read_text()).get("tokenizer_class") in PLAIN_TOKENIZERS
    if plain:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
    else:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(
    cfg: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The policy and its tokenizer from a model config; a locally built one (``checkpoint()``) goes
    through the same loader as any checkpoint."""
    if hasattr(cfg, "checkpoint"):  # built here: the tiny model, a warm start (ablate.warmstart)
        cfg = PretrainedModelConfig(name_or_path=str(cfg.checkpoint()), dtype="float32")
    kwargs: dict[str, Any] = {"dtype": cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(
        cfg.name_or_path, trust_remote_code=cfg.trust_remote_code, **kwargs
    )
    return with_generation_mixins(model), load_tokenizer(cfg.name_or_path, cfg.trust_remote_code)


def peft_config(cfg: TinyModelConfig | PretrainedModelConfig) -> Any:
    """A peft ``LoraConfig`` when ``model.lora`` is set, for the trainer's ``peft_config``."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **dict(cfg.lora))
