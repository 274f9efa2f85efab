"""The dataset pipeline: pure functions over typed records (redact, dedup, detect, split, ICL)."""
