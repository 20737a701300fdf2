"""Augmented views of a loader's batches, drawn from a method's generator (the reference loaders'
random crop and flip, for methods whose released code saw augmented data). Imports only torch and
project method modules."""

from methods._augment import crop_flip
from methods._common import unpack


def augmented(loader, generator):
    """`loader`'s batches as (crop_flip(x), y), drawn once per batch (outside any step, so SAM's two
    passes see the same images)."""
    for batch in loader:
        x, y = unpack(batch)
        yield crop_flip(x, generator), y


def views(batches, generator, augment: bool = True):
    """`augmented(batches, generator)` when `augment`, else `batches` unchanged."""
    return augmented(batches, generator) if augment else batches
