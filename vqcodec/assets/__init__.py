"""Package data: the embedded default model, its restorer and its model card (README.md)."""
