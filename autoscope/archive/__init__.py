"""Archive: model cards, the MLflow registry (the index) and the BentoML model store."""
