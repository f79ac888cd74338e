"""Training candidates: data, metrics and losses, re-parameterized blocks, the trainer and its cache."""
