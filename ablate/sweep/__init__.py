"""``ablate sweep``: studies of many ``ablate train`` runs as Optuna trials, tracked in MLflow."""
