"""Datasets, architectures, presets and the bank of original and retrained checkpoints."""
