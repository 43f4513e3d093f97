"""The console of ``ablate train``: a line of live numbers every N steps off a terminal."""

import io
import warnings

from transformers import TrainerControl, TrainerState, TrainingArguments

from ablate.console import Console, quiet_library_warnings


def test_off_a_terminal_one_short_line_every_n_steps_and_the_last():
    stream = io.StringIO()
    console, state = Console(every=2, stream=stream), TrainerState(max_steps=5)
    args, control = TrainingArguments(output_dir="unused", report_to="none"), TrainerControl()
    console.on_train_begin(args, state, control)
    for step in range(1, 6):
        state.global_step = step
        logs = {"loss": 0.1, "reward": step / 10, "reward/correct_rate": 0.5, "step_time": 1.25}
        console.on_log(args, state, control, logs=logs)
        console.on_log(args, state, control, logs={"train_runtime": 9.0})  # the trainer's final summary
    console.on_train_end(args, state, control)
    assert stream.getvalue().splitlines() == [
        f"step {s}/5  reward {s / 10:.4g}  correct 0.5  s/step 1.25" for s in (1, 2, 4, 5)
    ]


def test_only_the_libraries_deprecation_notices_are_filtered():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn("`gradient_checkpointing` is deprecated, use X", FutureWarning, stacklevel=1)
        warnings.warn("`gradient_checkpointing_enable` is deprecated, use Y", FutureWarning, stacklevel=1)
        warnings.warn("`lr` is out of range", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`lr` is out of range"]
