"""Live diagnostics of the paper's mechanism, computed from tensors the trainer already has."""
