"""pi(stop) after each answer line equals the model's EOS probability on that prefix."""

import pandas as pd
import pytest
import torch

from ablate.diagnostics.stopping import answer_line_ends, decision_tokens, stop_probabilities
from ablate.models import TinyModelConfig, load_model

TEXT = "Answer: 79\nCheck: 23+41=64\n64+17=81\nAnswer: 81"


def test_the_deciding_token_follows_each_answer_line():
    _, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    ids, positions = decision_tokens(tokenizer, TEXT)
    assert answer_line_ends(TEXT) == [10, 46]
    assert ids[-1] == tokenizer.eos_token_id and len(ids) == len(TEXT) + 1  # one token a character, then EOS
    assert [tokenizer.decode([ids[p]]) for p in positions[:1]] == ["\n"] and positions[1] == len(ids) - 1


def test_stop_probabilities_are_the_eos_probability_after_each_answer_line():
    model, tokenizer = load_model(TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    model.eval()
    questions = pd.DataFrame(
        {"id": ["a", "b"], "prompt": ["Add: 23 + 41 + 17 (3 points)\n", "Add: 1 + 2 (1 point)\n"],
         "stop_text": [TEXT, "Answer: 3\nCheck: 1+2=3\nAnswer: 3\nCheck: 2+1=3\nAnswer: 3"]}
    )  # fmt: skip
    table = stop_probabilities(model, tokenizer, questions, batch_size=1)
    assert table.groupby("id")["line"].apply(list).to_dict() == {"a": [1, 2], "b": [1, 2, 3]}
    for row in table.itertuples():
        q = questions.set_index("id").loc[row.id]
        prefix = q["prompt"] + q["stop_text"][: answer_line_ends(q["stop_text"])[row.line - 1]]
        with torch.no_grad():
            logits = model(**tokenizer(prefix, return_tensors="pt", add_special_tokens=False)).logits[0, -1]
        expected = logits.float().softmax(-1)[tokenizer.eos_token_id].item()
        assert row.p_stop == pytest.approx(expected, rel=1e-4)
        assert row.stop_logit == pytest.approx(
            torch.logit(torch.tensor(expected, dtype=torch.float64)).item(), rel=1e-4
        )
    with pytest.raises(KeyError, match="stop_text"):
        stop_probabilities(model, tokenizer, questions.drop(columns="stop_text"))


def test_the_stops_table_pairs_start_and_end_by_question_and_line():
    from ablate.diagnostics.stopping import stops_table

    questions = pd.DataFrame(
        {"id": ["a", "b"], "value": [0.1, 0.3], "difficulty": ["easy", "hard"], "other": [1, 2]}
    )
    start = pd.DataFrame(
        {"id": ["a", "a", "b"], "line": [1, 2, 1], "p_stop": [0.2, 0.5, 0.3], "stop_logit": [-1.0, 0.0, -0.5]}
    )
    end = start.assign(p_stop=[0.1, 0.6, 0.3], stop_logit=[-2.0, 0.4, -0.5])
    table = stops_table(questions, start, end)
    columns = ["id", "value", "difficulty", "line", "p_stop_start", "stop_logit_start"]
    assert list(table.columns) == [*columns, "p_stop_end", "stop_logit_end"]
    by_line = table.set_index(["id", "line"])["stop_logit_end"].to_dict()
    assert by_line == {("a", 1): -2.0, ("a", 2): 0.4, ("b", 1): -0.5}
