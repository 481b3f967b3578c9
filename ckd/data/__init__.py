"""ckd/data."""
