"""A single-layer patch representation of the pool: k-means on whitened image patches (Coates, Lee
and Ng, "An Analysis of Single-Layer Networks in Unsupervised Feature Learning", AISTATS 2011).

No gradient descent, so it is learned in seconds on a CPU where a contrastive encoder needs far more
than a CPU budget allows on cluttered colour images. The recipe is the paper's, with its defaults:
6x6 patches, each normalised for brightness and contrast, ZCA-whitened (epsilon 0.1), k-means
centroids, the "triangle" activation max(0, mean distance - distance to a centroid), sum-pooled over
the image's four quadrants. The 4K pooled activations are standardised and projected on their top
principal components over the pool, so the strategies and the latent index work in a space of a
few hundred dimensions whatever K is.

One departure from the paper, for colour images (`colour_axis`): each patch's pixels are first
projected on that patch's own dominant colour axis (the top eigenvector of its 3x3 colour
covariance, turned towards white), so a patch is the 6x6 map of its contrast whatever the two
colours are. With RGB patches, k-means spent its centroids on colour pairs: on shapes10k (the
tuning set; shapes in random colours on cluttered colour ground) a probe of the block alone went
from 0.180 / 0.225 / 0.278 to 0.241 / 0.308 / 0.388 with 100 / 300 / 1,000 labels, and the block
took 25 s to learn instead of 35 (a scratch probe on 2026-12-07; the product's measurement is
benchmarks/results/patch_colour.md). Colour itself is then read by SimCLR's block, whose
augmentations make it partly blind to colour (to hue wholly on the CPU setting), and by the CNN
challenger from 10 labels per class (models.learner.CNN_CHALLENGE_PER_CLASS). Grayscale images have
one axis, so their encoder is the paper's, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.pixels import Pixels

PATCH = 6
CENTROIDS = 400
# Principal components of the pooled activations kept as features.
OUT_DIM = 128
# The paper's whitening epsilon, for patches normalised to zero mean and unit variance.
WHITEN_EPS = 0.1
# Brightness/contrast normalisation: the paper adds 10 to the variance of 0..255 pixels.
NORM_EPS = 10 / 255**2
KMEANS_ITERATIONS = 10
# Images whose patch-to-centroid distances are computed at once.
POOLED_BATCH = 64


def geometry(image_size: int) -> tuple[int, int]:
    """(patch size, stride) for square images of `image_size`: 6x6 patches, strided on large images
    so the grid of patches stays about 27 x 27 (the paper's 32x32 case) and the cost per image flat."""
    patch = min(PATCH, max(2, image_size // 2))
    stride = max(1, round(image_size / 32))
    return patch, stride


def colour_axis(patches: torch.Tensor, channels: int, iterations: int = 6) -> torch.Tensor:
    """[..., C*P*P] channel-major patches -> [..., P*P]: each patch's pixels projected on its dominant
    colour axis, signed so that the axis points towards white (power iteration from the grey axis,
    batched over every patch at once)."""
    x = patches.reshape(*patches.shape[:-1], channels, -1)
    x = x - x.mean(-1, keepdim=True)
    covariance = x @ x.transpose(-1, -2)
    axis = torch.full((*patches.shape[:-1], channels, 1), channels**-0.5, dtype=patches.dtype, device=patches.device)
    for _ in range(iterations):
        axis = covariance @ axis
        axis = axis / (axis.norm(dim=-2, keepdim=True) + 1e-12)
    axis = torch.where(axis.sum(-2, keepdim=True) < 0, -axis, axis)
    return (axis.transpose(-1, -2) @ x).squeeze(-2)


def _normalise(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (last dim) to zero mean and unit variance (plus NORM_EPS, so flat patches stay flat)."""
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True, unbiased=False)
    return (patches - mean) / torch.sqrt(var + NORM_EPS)


class PatchEncoder(nn.Module):
    """Pixels [B, C, S, S] in [0, 1] -> [B, out_dim] features. Everything it learned is a buffer, so
    it saves, loads and moves between devices like any module; it has no trainable parameters."""

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        *,
        n_centroids: int = CENTROIDS,
        out_dim: int = OUT_DIM,
        colour_axis: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.n_centroids = n_centroids
        # One channel has one axis: a grayscale encoder is the paper's either way.
        self.colour_axis = colour_axis and in_channels > 1
        self.patch, self.stride = geometry(image_size)
        dim = (1 if self.colour_axis else in_channels) * self.patch * self.patch
        pooled = 4 * n_centroids
        self.out_dim = out_dim
        self.register_buffer("patch_mean", torch.zeros(dim))
        self.register_buffer("whitening", torch.eye(dim))
        self.register_buffer("centroids", torch.zeros(n_centroids, dim))
        self.register_buffer("pooled_mean", torch.zeros(pooled))
        self.register_buffer("pooled_scale", torch.ones(pooled))
        self.register_buffer("projection", torch.zeros(pooled, out_dim))
        # The features' total variance over the pool sample the projection was fitted on.
        self.register_buffer("total_variance", torch.ones(()))

    def config(self) -> dict[str, int | bool]:
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "n_centroids": self.n_centroids,
            "out_dim": self.out_dim,
            "colour_axis": self.colour_axis,
        }

    def patch_values(self, patches: torch.Tensor) -> torch.Tensor:
        """Raw channel-major patches [..., C*P*P] -> what the dictionary is learned on."""
        return colour_axis(patches, self.in_channels) if self.colour_axis else patches

    def whitened_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """[B, L, D] every patch of each image, normalised and whitened; and the grid's side."""
        side = (x.shape[-1] - self.patch) // self.stride + 1
        patches = self.patch_values(F.unfold(x, self.patch, stride=self.stride).transpose(1, 2))
        return (_normalise(patches) - self.patch_mean) @ self.whitening, side

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 4K] triangle activations summed over the four quadrants of the patch grid."""
        if len(x) > POOLED_BATCH:
            # Every patch's distance to every centroid is held at once: 64 images of 28x28 are 54 MB
            # a temporary, where an encoding batch of 512 would take over 1 GB at its peak.
            return torch.cat([self.pooled(x[i : i + POOLED_BATCH]) for i in range(0, len(x), POOLED_BATCH)])
        u, side = self.whitened_patches(x)
        c = self.centroids
        # One [patches, centroids] buffer, updated in place: each out-of-place step allocated and
        # wrote another, and those passes, not the product, were most of the time (3x the time to
        # encode: benchmarks/results/encode_cost.md).
        distance = (u.reshape(-1, u.shape[-1]) @ c.T).mul_(-2)
        distance.add_((u * u).sum(-1).reshape(-1, 1)).add_((c * c).sum(-1)).clamp_(min=0).sqrt_()
        active = distance.sub_(distance.mean(-1, keepdim=True)).neg_().clamp_(min=0)
        grid = active.view(len(x), side, side, -1)
        half = max(1, side // 2)
        quadrants = [
            grid[:, :half, :half],
            grid[:, :half, half:],
            grid[:, half:, :half],
            grid[:, half:, half:],
        ]
        return torch.cat([q.sum((1, 2)) for q in quadrants], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.pooled(x) - self.pooled_mean) / self.pooled_scale
        return z @ self.projection


def _sample_patches(pool: Pixels, n: int, patch: int, stride: int, rng: np.random.Generator) -> torch.Tensor:
    """[n, D] random patches of random pool images, read a sorted batch of images at a time."""
    size = pool.shape[-1]
    side = (size - patch) // stride + 1
    images = np.sort(rng.integers(0, len(pool), n))
    rows, cols = rng.integers(0, side, n) * stride, rng.integers(0, side, n) * stride
    out = []
    for start in range(0, n, 4096):
        picked = slice(start, start + 4096)
        unique, inverse = np.unique(images[picked], return_inverse=True)
        batch = np.asarray(pool[unique], dtype=np.float32)
        crops = [
            batch[i, :, r : r + patch, c : c + patch].reshape(-1)
            for i, r, c in zip(inverse, rows[picked], cols[picked], strict=True)
        ]
        out.append(torch.as_tensor(np.stack(crops)))
    return torch.cat(out)


def _kmeans(x: torch.Tensor, k: int, gen: torch.Generator, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Lloyd's k-means from k distinct random rows; an emptied cluster restarts at a random row."""
    centroids = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    norms = (x * x).sum(1, keepdim=True)
    for _ in range(iterations):
        nearest = torch.cat(
            [
                (norms[i : i + 8192] - 2 * x[i : i + 8192] @ centroids.T + (centroids * centroids).sum(1)).argmin(1)
                for i in range(0, len(x), 8192)
            ]
        )
        counts = torch.bincount(nearest, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if bool(empty.any()):
            centroids[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=gen)]
    return centroids


@torch.no_grad()
def fit_patch_encoder(
    pool: Pixels,
    *,
    seed: int = 0,
    n_centroids: int = CENTROIDS,
    out_dim: int = OUT_DIM,
    colour_axis: bool = False,
    n_patches: int = 50_000,
    n_images_for_pca: int = 10_000,
    device: torch.device | None = None,
    progress: Callable[[float], None] | None = None,
) -> PatchEncoder:
    """Learns the patch dictionary and the projection from the pool: [N, C, S, S] in [0, 1]."""
    report = progress or (lambda fraction: None)
    device = device or torch.device("cpu")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    size = pool.shape[-1]
    encoder = PatchEncoder(pool.shape[1], size, n_centroids=n_centroids, out_dim=out_dim, colour_axis=colour_axis)
    sampled = _sample_patches(pool, n_patches, encoder.patch, encoder.stride, rng)
    patches = _normalise(encoder.patch_values(sampled).double())
    mean = patches.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((patches - mean).T))
    whitening = vectors @ torch.diag(1 / torch.sqrt(values.clamp(min=0) + WHITEN_EPS)) @ vectors.T
    whitened = ((patches - mean) @ whitening).float()
    encoder.patch_mean.copy_(mean.float())
    encoder.whitening.copy_(whitening.float())
    encoder.centroids.copy_(_kmeans(whitened, min(n_centroids, len(whitened)), gen))
    report(0.3)
    encoder = encoder.to(device)
    sample = np.sort(rng.choice(len(pool), min(len(pool), n_images_for_pca), replace=False))
    pooled = []
    for start in range(0, len(sample), 256):
        batch = torch.as_tensor(np.asarray(pool[sample[start : start + 256]], dtype=np.float32), device=device)
        pooled.append(encoder.pooled(batch).double().cpu())
        report(0.3 + 0.6 * min(1.0, (start + 256) / len(sample)))
    z = torch.cat(pooled)
    mean_z, scale_z = z.mean(0), z.std(0, unbiased=False) + 1e-6
    z = (z - mean_z) / scale_z
    # The population covariance: its top eigenvalues are the features' variances over the sample.
    values, vectors = torch.linalg.eigh(z.T @ z / len(z))
    keep = min(out_dim, len(values))
    top = torch.argsort(values, descending=True)[:keep]
    projection = torch.zeros(z.shape[1], out_dim, dtype=torch.float64)
    projection[:, :keep] = vectors[:, top]
    encoder.pooled_mean.copy_(mean_z.float())
    encoder.pooled_scale.copy_(scale_z.float())
    encoder.projection.copy_(projection.float())
    encoder.total_variance.copy_(values[top].clamp(min=0).sum().float())
    report(1.0)
    return encoder.eval()
