"""Fit loops and device selection for the task model (and, later, the VAE)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.nets.classifier import SmallCNN
from models.pixels import Pixels

ProgressFn = Callable[[float], None]


def select_device(preference: str = "auto") -> torch.device:
    if preference != "auto":
        return torch.device(preference)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    if torch.cuda.is_available():
        deterministic_cuda()


def deterministic_cuda() -> None:
    """The same seed gives the same weights on a GPU: cuDNN's deterministic kernels and a fixed cuBLAS
    workspace (which must be set before cuBLAS starts in this process). warn_only: an operation with
    no deterministic CUDA kernel warns instead of failing a round."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translates each image by up to max_shift pixels (zero fill): cheap, label-preserving augmentation."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    seed: int = 0,
    device: torch.device | None = None,
    epochs: int = 20,
    min_steps: int = 200,
    max_steps: int = 2000,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    max_shift: int = 2,
    progress: ProgressFn | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Trains a SmallCNN from scratch on the labelled images (or `model`, when given, from where it is).

    Args:
        x: [N, C, S, S] float32 images in [0, 1].
        y: [N] int class indices.
        n_classes: size of the output layer.
        seed: fixes initialisation and batch order.
        epochs, min_steps, max_steps: the step budget is `epochs` passes, clamped to the bounds, so
            tiny label sets still get enough updates and large ones stay quick.
        max_shift: random translation in pixels for augmentation (0 disables it).
        progress: called with a fraction in [0, 1] now and then.
        model: a network mapping [N, C, S, S] to [N, n_classes] logits to train instead of a new
            SmallCNN (a pre-trained encoder with a head, for fine-tuning); trained in place.

    Returns:
        The trained model in eval mode, on `device`.
    """
    device = device or select_device()
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    # Channels-last: the CPU's convolution kernels run faster in it (an ad-hoc timing at stop 20, not a
    # committed benchmark: 28-31 against 39-47 ms per step of 64 28x28 images).
    model = (model if model is not None else SmallCNN(in_channels=x.shape[1], n_classes=n_classes)).to(
        device, memory_format=torch.channels_last
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    n = len(xt)
    bs = min(batch_size, n)
    steps = int(min(max(epochs * math.ceil(n / bs), min_steps), max_steps))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    model.train()
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for step in range(steps):
        if cursor + bs > n:
            order = torch.randperm(n, generator=generator)
            cursor = 0
        idx = order[cursor : cursor + bs]
        cursor += bs
        xb = _random_shift(xt[idx], max_shift, generator).to(device).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), yt[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        if progress is not None and step % 50 == 0:
            progress(step / steps)
    model.eval()
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each BatchNorm that follows a convolution in a Sequential
    folded into it, in channels-last layout: the same predictions (to float rounding) from a quarter
    to a half of the CPU time for SmallCNN over a pool (benchmarks/results/challenger_cost.md)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if not isinstance(block, nn.Sequential):
            continue
        for i in range(len(block) - 1):
            conv, norm = block[i], block[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                block[i], block[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return folded.to(memory_format=torch.channels_last)


def predict_proba(
    model: nn.Module, x: Pixels, *, batch_size: int | None = None, temperature: float = 1.0
) -> np.ndarray:
    """[N, C, S, S] images -> [N, n_classes] probabilities (softmax of the logits / temperature)."""
    return _batched(model, x, batch_size, lambda logits: F.softmax(logits / temperature, dim=1))


def predict_logits(model: nn.Module, x: Pixels, *, batch_size: int | None = None) -> np.ndarray:
    """[N, C, S, S] images -> [N, n_classes] logits, for probabilities at a temperature chosen later."""
    return _batched(model, x, batch_size, lambda logits: logits)


@torch.no_grad()
def _batched(
    model: nn.Module, x: Pixels, batch_size: int | None, head: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    device = next(model.parameters()).device
    # Small batches stay in a CPU's cache (an ad-hoc timing: 256 ran 1.5x faster than 1024 on 28x28).
    batch_size = batch_size or (256 if device.type == "cpu" else 1024)
    network = for_inference(model)
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(x[start : start + batch_size], dtype=torch.float32, device=device)
        logits = network(xb.contiguous(memory_format=torch.channels_last))
        out.append(head(logits).float().cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def evaluate(probabilities: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, object]:
    """Accuracy overall and per class (None for a class with no examples), and the confusion matrix
    (rows: true class, columns: predicted class)."""
    if len(y) == 0:
        return {"accuracy": None, "per_class": [None] * n_classes, "confusion": None}
    predicted = probabilities.argmax(1)
    per_class: list[float | None] = []
    for c in range(n_classes):
        mask = y == c
        per_class.append(float((predicted[mask] == c).mean()) if mask.any() else None)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    return {
        "accuracy": float((predicted == y).mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
