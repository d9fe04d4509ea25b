"""Checkpoints as data: where they live, how one is built or reused, what it was made from, and its files."""
