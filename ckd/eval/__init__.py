"""ckd/eval."""
