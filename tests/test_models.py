import torch

from ablate.models import (
    PretrainedModelConfig,
    TinyModelConfig,
    char_tokenizer,
    load_model,
    peft_config,
    tiny_path,
)


def test_char_tokenizer_round_trips_exam_text():
    tok = char_tokenizer()
    text = "Add: 12 + 30\nShow each partial sum, then 'Answer: N'.\n12+30=42\nAnswer: 42"
    ids = tok(text).input_ids
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.eos_token_id not in ids and tok.pad_token_id != tok.eos_token_id


def test_tiny_model_is_cached_by_config_and_reloads_identically(tmp_path):
    cfg = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, cache_dir=str(tmp_path))
    path = tiny_path(cfg)
    assert path == tiny_path(cfg)  # second call reuses the directory
    assert path != tiny_path(
        TinyModelConfig(
            hidden_size=32, layers=1, heads=2, intermediate_size=64, init_seed=1, cache_dir=str(tmp_path)
        )
    )
    (m1, tok), (m2, _) = load_model(cfg), load_model(cfg)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert m1.config.vocab_size == len(tok)
    assert m1.config.eos_token_id == tok.eos_token_id
    # Loaded through the same Hugging Face loader as a hub model; the tokenizer keeps every character.
    assert tok.decode(tok("a b\nc").input_ids) == "a b\nc"


def test_any_checkpoint_path_loads_like_the_tiny_model(tmp_path):
    tiny = TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, cache_dir=str(tmp_path))
    (m1, t1) = load_model(tiny)
    (m2, t2) = load_model(PretrainedModelConfig(name_or_path=str(tiny_path(tiny)), dtype="float32"))
    text = "Add: 1 + 2\nAnswer: 3"
    assert t1(text).input_ids == t2(text).input_ids and t2.decode(t2(text).input_ids) == text
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))
    assert t2.padding_side == "left" and t2.pad_token_id is not None


def test_lora_config_from_model_keys():
    cfg = PretrainedModelConfig(lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    lora = peft_config(cfg)
    assert lora.r == 4 and lora.lora_alpha == 8 and set(lora.target_modules) == {"q_proj", "v_proj"}
    assert peft_config(PretrainedModelConfig()) is None
