"""Datasets, their splits and forget sets, architectures and presets (no training, no evaluation)."""
