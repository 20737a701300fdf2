"""One pass of a model over the splits: the logits the metrics need, and accuracies."""

import numpy as np
import torch


@torch.inference_mode()
def predict(net: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of `net` (eval mode) on `x`, in order, as a float32 CPU tensor (n, n_classes)."""
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def model_outputs(net: torch.nn.Module, splits) -> dict[str, np.ndarray]:
    """Forget and test logits plus retain/forget/test/val accuracies of one model.

    Returns arrays: `forget_logits` (n_forget, C), `test_logits` (n_test, C) float32, scalar accuracies
    `acc_retain`, `acc_forget`, `acc_test`, `acc_val`, and `finite` (all logits finite).
    """
    out, finite = {}, True
    for split in ("forget", "test", "retain", "val"):
        logits = predict(net, getattr(splits, f"{split}_x"))
        finite &= bool(torch.isfinite(logits).all())
        out[f"acc_{split}"] = np.float64((logits.argmax(1) == getattr(splits, f"{split}_y")).float().mean())
        if split in ("forget", "test"):
            out[f"{split}_logits"] = logits.numpy()
    out["finite"] = np.bool_(finite)
    return out
