"""Training the pool's VAE and reading latents out of it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from models.nets.vae import ConvVAE, ExemplarPrior, gaussian_kl
from models.pixels import Pixels, subset
from models.training import ProgressFn, seed_everything, select_device


def fit_vae(
    x: Pixels,
    *,
    latent_dim: int = 32,
    beta: float = 1.0,
    epochs: int = 30,
    max_steps: int = 3000,
    batch_size: int = 128,
    lr: float = 2e-3,
    prior: str = "gaussian",
    seed: int = 0,
    device: torch.device | None = None,
    progress: ProgressFn | None = None,
) -> tuple[ConvVAE, list[float]]:
    """Fits a ConvVAE on every pool image (labels are never used).

    Args:
        x: [N, C, S, S] float32 in [0, 1] (an ndarray or the pool's bytes, models.pixels).
            Training stops after `max_steps` batches; a pool larger than that many batches is fitted
            on a seeded sample of that size, so one epoch never grows with the pool.
        latent_dim: size of the latent code.
        beta: weight of the KL (or exemplar-prior) term.
        prior: "gaussian" (standard normal) or "exemplar" (Exemplar VAE, leave-one-out).

    Returns:
        (the model in eval mode, mean loss per epoch — it should fall).
    """
    device = device or select_device()
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    channels, size = x.shape[1], x.shape[2]
    bs = min(batch_size, len(x))
    if len(x) > max_steps * bs:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_steps * bs, replace=False))
        x = subset(x, keep)
    n = len(x)
    model = ConvVAE(channels, size, latent_dim).to(device)
    exemplar_prior = ExemplarPrior(latent_dim).to(device) if prior == "exemplar" else None
    params = list(model.parameters()) + (list(exemplar_prior.parameters()) if exemplar_prior else [])
    optimiser = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = math.ceil(n / bs)
    epochs = max(1, min(epochs, max_steps // steps_per_epoch))
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total)
    history: list[float] = []
    exemplars: torch.Tensor | None = None
    step = 0
    for _epoch in range(epochs):
        if exemplar_prior is not None:
            # Exemplar codes are refreshed once an epoch from the current encoder (no gradient),
            # as in the paper's cached-exemplar training.
            exemplars = encode_means(model, x, device=device, as_tensor=True)
        order = torch.randperm(n, generator=generator)
        losses = []
        model.train()
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            xb = torch.as_tensor(x[idx.numpy()], dtype=torch.float32).to(device)
            logits, mu, logvar = model(xb)
            recon = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").flatten(1).sum(1)
            if exemplar_prior is None:
                reg = gaussian_kl(mu, logvar)
            else:
                assert exemplars is not None
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                log_q = (-0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)
                reg = log_q - exemplar_prior.log_prob(z, exemplars, n, self_index=idx.to(device))
            loss = (recon + beta * reg).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None and step % 20 == 0:
                progress(step / total)
        history.append(float(np.mean(losses)))
    model.eval()
    return model, history


@torch.no_grad()
def encode_means(
    model: ConvVAE,
    x: Pixels,
    *,
    device: torch.device | None = None,
    batch_size: int = 1024,
    as_tensor: bool = False,
):  # type: ignore[no-untyped-def]
    """Each image's latent = its encoder mean: [N, latent_dim]."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [
        model.encode(torch.as_tensor(x[s : s + batch_size], dtype=torch.float32, device=device))[0]
        for s in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    result = torch.cat(out) if out else torch.zeros((0, model.latent_dim), device=device)
    return result if as_tensor else result.cpu().numpy().astype(np.float32)
