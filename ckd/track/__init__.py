"""ckd/track."""
