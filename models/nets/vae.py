"""A convolutional VAE for the pool's latent space (Kingma & Welling, 2014), with an optional
Exemplar VAE prior (Norouzi et al., "Exemplar VAE: Linking Generative Models, Nearest Neighbor
Retrieval, and Data Augmentation", NeurIPS 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvVAE(nn.Module):
    """Gaussian encoder, Bernoulli decoder (sigmoid output matches pixels in [0, 1]).

    Input [B, C, S, S] with S divisible by 4; latent [B, latent_dim].
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, latent_dim: int = 32, width: int = 32) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        self.in_channels, self.image_size, self.latent_dim = in_channels, image_size, latent_dim
        self.grid = image_size // 4
        flat = 2 * width * self.grid * self.grid
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(flat, 256),
            nn.LeakyReLU(0.2),
        )
        self.mu = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)
        self.decoder_input = nn.Sequential(nn.Linear(latent_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, flat))
        self.decoder = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Unflatten(1, (2 * width, self.grid, self.grid)),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(width, in_channels, 4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10, 10)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.decoder_input(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): [B, latent_dim] -> [B, C, S, S] pixels in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation trick
        return self.decode_logits(z), mu, logvar


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per example: [B]."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


class ExemplarPrior(nn.Module):
    """p(z) = 1/N sum_n N(z; mu_n, sigma^2 I), a Parzen mixture over exemplar codes with one learned
    variance. Only the k nearest exemplars enter the sum (the nearest-exemplar approximation), and an
    example never serves as its own exemplar during training (leave-one-out)."""

    def __init__(self, latent_dim: int, k: int = 10) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.k = k
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def log_prob(
        self,
        z: torch.Tensor,
        exemplars: torch.Tensor,
        n_total: int,
        self_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log p(z): z [B, D], exemplars [N, D] (detached encoder means), self_index [B] or None."""
        d2 = torch.cdist(z, exemplars).pow(2)
        if self_index is not None:
            d2 = d2.clone()
            valid = self_index >= 0
            d2[valid.nonzero(as_tuple=True)[0], self_index[valid]] = float("inf")
        k = min(self.k, exemplars.shape[0] - 1 if self_index is not None else exemplars.shape[0])
        nearest = torch.topk(d2, k=max(k, 1), largest=False).values
        var = torch.exp(2 * self.log_sigma)
        log_norm = -0.5 * self.latent_dim * math.log(2 * math.pi) - self.latent_dim * self.log_sigma
        return torch.logsumexp(-0.5 * nearest / var, dim=1) + log_norm - math.log(n_total)
