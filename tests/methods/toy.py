"""Random-image loaders and a briefly fitted TinyCNN: the small setting the method tests share."""

import torch

from data.archs.tiny_cnn import TinyCNN
from data.splits import make_loader


def random_loaders(
    sizes: tuple[int, int, int],
    data_seed: int,
    shuffle_seed: int | None = 0,
    dict_batches: bool = False,
    batch_size: int = 32,
):
    """Retain, forget and validation loaders over random 3x32x32 images with 10 random labels.

    `sizes` gives the three splits' lengths; the loaders shuffle with seeds shuffle_seed + 0, 1, 2,
    or freshly on every pass when shuffle_seed is None (as Kaggle's unseeded DataLoaders do).
    """
    g = torch.Generator().manual_seed(data_seed)
    n = sum(sizes)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    edges = [0, sizes[0], sizes[0] + sizes[1], n]
    return tuple(
        make_loader(
            x[a:b],
            y[a:b],
            batch_size,
            shuffle=True,
            seed=None if shuffle_seed is None else shuffle_seed + i,
            dict_batches=dict_batches,
        )
        for i, (a, b) in enumerate(zip(edges, edges[1:]))
    )


def fitted_tiny_cnn(loader, epochs: int = 1, momentum: float = 0.0) -> TinyCNN:
    """A TinyCNN after a few SGD steps on `loader` (tuple batches), so it is not at initialisation
    (BN statistics, non-trivial logits); in eval mode."""
    torch.manual_seed(0)
    net = TinyCNN()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=momentum)
    for _ in range(epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def count_steps(monkeypatch, module) -> list[int]:
    """Spy on `module.train_steps`: the returned list gets each call's number of batches (the call still runs)."""
    real, steps = module.train_steps, []

    def spy(net, batches, *args, **kwargs):
        batches = list(batches)
        steps.append(len(batches))
        return real(net, batches, *args, **kwargs)

    monkeypatch.setattr(module, "train_steps", spy)
    return steps


def snapshot(net) -> dict:
    """{name: a copy of the parameter}: the weights before a run, to compare with after."""
    return {n: p.detach().clone() for n, p in net.named_parameters()}
