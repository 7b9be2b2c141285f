"""The hostile/broken submission corpus of ``bncourse-grade`` and the tiny course it targets."""
