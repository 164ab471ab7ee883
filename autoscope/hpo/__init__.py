"""AutoML: an Optuna study driven by the `hpo` config group, run as a Hydra-style multirun."""
