"""`ckd bench`: latency, accuracy and roofline figures for every backend and rung, with peers in the same run."""
