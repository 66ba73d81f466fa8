"""``lineage demo``: a small NumPy training run with real checkpoints, a failure and a recovery."""
