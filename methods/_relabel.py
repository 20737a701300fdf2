"""Random labels on the forget set, redrawn per epoch, for the random-label baselines (`rl_og`, `salun`).

`RandomLabels(dataset, num_classes, generator)` wraps `forget_loader.dataset` and replaces each
example's label by one drawn uniformly from 0..C−1 (it may equal the true one, as in the reference
`randint(0, C)`); `redraw(generator)` draws a fresh set (RL_original.py and SalUn's RL.py relabel
every epoch). Tuple samples get a new second element, dict samples (Kaggle) a new `age_group`; the
label keeps the type of the original one (a tensor of its dtype, or an int) so the default collate
function can stack relabelled and retain samples together. C is read from the network by the caller
(`_common.num_classes`): the project relabels on any dataset (RUM's released code relabels
only for CIFAR-10/SVHN).

`labels_of(loader)` reads a loader's labels in dataset order. `FixedLabel(dataset, label)` gives every
example one label (bad teacher's forget/retain flag, UNSIR's noise class); `made_samples(images, labels,
like)` turns tensors a method made into samples of the
loaders' kind (tuples, or Kaggle dicts).

`loader_over(dataset, like, generator, batch_size=None)` is a shuffled DataLoader over any dataset with
`like`'s batch size (or `batch_size`), workers, collate function and drop_last, its order from
`generator` (`_common.reshuffled` for a dataset the loaders do not hold).
`relabelled_union(relabelled, retain_loader, generator)` is
the random-label pass of RL_original.py: the relabelled forget set concatenated with the retain set,
shuffled together, in retain-loader batches. Imports only torch and project method modules.
"""

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset


class RandomLabels(Dataset):
    """The samples of `dataset` with labels drawn from `generator`, uniform over 0..num_classes−1."""

    def __init__(self, dataset, num_classes: int, generator: torch.Generator):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.dataset, self.num_classes = dataset, int(num_classes)
        self.redraw(generator)

    def redraw(self, generator: torch.Generator) -> torch.Tensor:
        """Draw every example a new random label (call once per epoch); returns them, shape (n,)."""
        self.labels = torch.randint(0, self.num_classes, (len(self.dataset),), generator=generator)
        return self.labels

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        sample = self.dataset[i]
        if isinstance(sample, dict):
            return {**sample, "age_group": self._like(sample["age_group"], self.labels[i])}
        return (sample[0], self._like(sample[1], self.labels[i]), *sample[2:])

    @staticmethod
    def _like(original, label: torch.Tensor):
        """`label` in the type of the label it replaces (collate stacks like with like)."""
        if torch.is_tensor(original):
            return label.to(original.dtype).reshape(original.shape)
        return int(label)


class FixedLabel(Dataset):
    """The samples of `dataset`, each with the label `label` (in the type of the label it replaces)."""

    def __init__(self, dataset, label: int):
        self.dataset, self.label = dataset, torch.tensor(int(label))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        sample = self.dataset[i]
        if isinstance(sample, dict):
            return {**sample, "age_group": RandomLabels._like(sample["age_group"], self.label)}
        return (sample[0], RandomLabels._like(sample[1], self.label), *sample[2:])


def made_samples(images: torch.Tensor, labels: torch.Tensor, like) -> list:
    """`images[i]` with `labels[i]` as samples shaped like `like` (a sample of the loaders' dataset): a dict
    {"image", "age_group"} for Kaggle dict samples, else a tuple (image, label)."""
    made = []
    for x, y in zip(images.detach().cpu(), labels.cpu()):
        if isinstance(like, dict):
            made.append(
                {
                    **like,
                    "image": x.to(torch.as_tensor(like["image"]).dtype),
                    "age_group": RandomLabels._like(like["age_group"], y),
                }
            )
        else:
            made.append((x.to(torch.as_tensor(like[0]).dtype), RandomLabels._like(like[1], y)))
    return made


def labels_of(loader: DataLoader) -> torch.Tensor:
    """The labels of `loader`'s dataset in dataset order, (n,) int64: one unshuffled pass with its collate."""
    ordered = DataLoader(
        loader.dataset, batch_size=loader.batch_size or 256, shuffle=False, collate_fn=loader.collate_fn
    )
    return torch.cat(
        [torch.as_tensor(b["age_group"] if isinstance(b, dict) else b[1]).long().reshape(-1) for b in ordered]
    )


def loader_over(dataset, like: DataLoader, generator: torch.Generator, batch_size: int | None = None) -> DataLoader:
    """A DataLoader over `dataset` shuffled by `generator`, with `like`'s batch size (unless `batch_size`),
    workers, collate, drop_last."""
    batch_size = batch_size or getattr(like, "batch_size", None)
    if batch_size is None:
        raise ValueError("loader_over() needs a DataLoader built with batch_size (not a batch_sampler)")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=like.num_workers,
        collate_fn=like.collate_fn,
        drop_last=like.drop_last,
        pin_memory=like.pin_memory,
    )


def relabelled_union(relabelled: RandomLabels, retain_loader: DataLoader, generator: torch.Generator) -> DataLoader:
    """Relabelled forget set ∪ retain set, shuffled together by `generator`, in retain-loader batches.

    The loader reads `relabelled` when iterated, so a `redraw` before an epoch takes effect in it."""
    return loader_over(ConcatDataset([relabelled, retain_loader.dataset]), retain_loader, generator)
