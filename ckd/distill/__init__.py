"""ckd/distill."""
