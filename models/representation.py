"""Self-supervised representation of the whole pool: SimCLR (Chen et al., "A Simple Framework for
Contrastive Learning of Visual Representations", ICML 2020) with a small convolutional encoder.

Labels are never used: two random augmentations of each pool image are pulled together and pushed
away from every other image of the batch (NT-Xent). Heads and strategies only ever see the encoder's
feature arrays, so they work the same on pixels (PCA), VAE codes or these features.

Augmentations are composable callables on [B, C, S, S] batches in [0, 1] (lightly's habit), so they
suit grayscale and RGB and any image size. Horizontal flips are left out on purpose: they change the
class of digits and characters, which an unseen dataset may well be.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.pixels import Pixels, chunks
from models.training import ProgressFn, seed_everything, select_device

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

# Steps timed before a time budget sets how many the run gets.
PROBE_STEPS = 10
# ...and the plan is checked again this often, so a run slowed after its probe still stops in time.
REPLAN_STEPS = 10

# The encoder budget by device, shared by the worker's representation job and `suggestlab simulate`
# so a simulation measures the learner a project would get on the same machine. CPU: the small
# encoder, capped so a 5,000-image 28x28 pool finishes within 10 minutes on 2 cores. GPU: the larger
# encoder and 150 epochs, which the learner issue's reference runs put about 7 points above the small
# 20-epoch one at 100-1,000 labels (44 s on one H100 for 8,000 images; 162 s for shapes10k). Its
# 12-minute cap binds only on very large pools: a million images get what fits, so the
# representation and the approximate index over its features are built within 15 minutes.
#
# The CPU setting's loss temperature and RGB colour distortion were raised on 2026-12-01 (shapes10k,
# the tuning set: at 300 s of training the head's accuracy with 1,000 labels went 0.150 -> 0.334;
# MNIST-5k unchanged or +1 point; benchmarks/results/representation_probe-variants.md). With a few
# epochs a small encoder matched two crops of a cluttered RGB image by their colours; a full hue turn
# and grayscale on half the views leave it the shapes. The GPU setting keeps what was measured on
# the H100 until it is measured again.
#
# CPU epochs 20 -> 50 on 2026-12-05, once channels-last and AMX bfloat16 made a step 3.2x faster on
# this 2-core CPU (benchmarks/results/precision.md): on shapes10k, the tuning set, a probe with 10
# labels per class went 0.237 -> 0.278 and with 9,000 labels 0.510 -> 0.529. The flat 480 s budget
# then stopped an RGB pool of that size part way; since 2026-12-07 a CPU budget grows with the pool
# (`pool_time_budget`, below).
#
# CPUs with AVX512-BF16 but no AMX (a 2-core AMD EPYC, 2026-12-05) train in bfloat16 too: 1.7x the
# steps of float32 there. At the service's 480 s on shapes10k that was 29 epochs against 16, and
# probes +1.9 (10 labels per class) and +3.4 points (9,000 labels); at equal epochs (10) the probes
# moved +1.0 and -2.7 (benchmarks/results/precision.md, both rules written before their runs).
#
# "patches": the features are SimCLR's side by side with a k-means patch representation of the pool
# (models.patches; 39 s to learn on 8,000 32x32 RGB images on 2 cores). Added on 2026-12-04 after the
# CPU setting's SimCLR stayed near chance on a held-out cluttered RGB set (symbols10k-rgb: a head with
# 1,000 random labels 0.190 on SimCLR alone, 0.479 on the joint features; MNIST-5k at 100 labels 0.927
# -> 0.935; benchmarks/results/representation_joint.md). Not measured on a GPU; on there for one design.
#
# "patch_colour_axis": the patch block reads each colour patch along that patch's own dominant colour
# axis (models.patches.colour_axis), so its dictionary holds shapes of contrast, not colour pairs.
# Adopted on 2026-12-07 by the second of two rules in benchmarks/patch_colour.py: the first (shapes10k,
# the tuning set, a mean of +1.0 point over 100 / 300 / 1,000 labels) failed at +0.42; the held-out
# RGB sets then gained +1.0 to +20.4 points, and a set made after that run (textures10k-rgb) decided
# alone: +2.9 / +3.6 / +9.5. Grayscale pools are unchanged; encoders stored before it keep RGB patches.
SETTINGS: dict[str, dict[str, Any]] = {
    "cpu": {
        "widths": (32, 64, 128),
        "epochs": 50,
        "time_budget_s": 480.0,
        "batch_size": 256,
        "temperature": 0.5,
        "colour": {"strength": 1.0, "hue": 0.5, "grayscale_p": 0.5},
        "patches": True,
        "patch_colour_axis": True,
    },
    "cuda": {
        "widths": (64, 128, 256),
        "epochs": 150,
        "time_budget_s": 720.0,
        "batch_size": 512,
        "temperature": 0.2,
        "colour": {"strength": 0.8, "hue": 0.2, "grayscale_p": 0.2},
        "patches": True,
        "patch_colour_axis": True,
    },
}


def setting_tag(setting: dict[str, Any]) -> str:
    """A name for what a setting trains: features of one are never read back as another's."""
    colour = setting["colour"]
    return (
        f"{'-'.join(map(str, setting['widths']))}-{setting['epochs']}"
        f"-t{setting['temperature']}-c{colour['strength']}-{colour['hue']}-{colour['grayscale_p']}"
        + ("-patches" if setting.get("patches") else "")
        + ("-axis" if setting.get("patches") and setting.get("patch_colour_axis") else "")
        + ("-bf16" if setting.get("bfloat16") else "")
    )


# The CPU setting's 480 s is sized for the promise's pool, 5,000 images of 28x28 within 10 minutes on
# 2 cores. A step's cost grows with the image's area and an epoch's steps with the pool, so a larger
# pool gets a budget in proportion to its pixels, up to half an hour. With 480 s flat, an 8,000-image
# 32x32 RGB pool stopped after 33 of its 50 passes on a 2-core bfloat16 EPYC (a 9,000-image one
# after 16 in float32: benchmarks/results/precision.md), so a project's representation was weaker
# than the one `suggestlab simulate` and the benchmarks measure. On shapes10k (the tuning set) the
# scaled budget's 50 passes against the flat one's 33 put the learner +3.0 / +2.4 / +0.5 points
# higher with 100 / 300 / 1,000 random labels (benchmarks/results/representation_budget.md, its rule
# written before the run); on two held-out RGB sets, where the patch block carries the class or
# neither block does, it moved less than a point either way. Rounds never wait for it: they use the
# newest ready representation meanwhile.
CPU_BUDGET_REFERENCE_PIXELS = 5_000 * 28 * 28
CPU_BUDGET_CAP_S = 1_800.0


def pool_time_budget(base_s: float, pool_images: int, image_size: int) -> float:
    """The CPU setting's time budget for a pool of `pool_images` images of `image_size` squared:
    `base_s` up to the reference pool's pixels, in proportion above it, at most CPU_BUDGET_CAP_S."""
    scale = pool_images * image_size * image_size / CPU_BUDGET_REFERENCE_PIXELS
    return min(max(base_s, base_s * scale), max(base_s, CPU_BUDGET_CAP_S))


def setting_for(
    device_type: str, epochs: int | None = None, *, pool_images: int | None = None, image_size: int | None = None
) -> dict[str, Any]:
    """The encoder setting for a device type ("cuda" or anything else), with `epochs` overriding.
    Given the pool's size, a CPU setting's time budget is the one for that pool (`pool_time_budget`)."""
    cuda = device_type == "cuda"
    setting = dict(SETTINGS["cuda" if cuda else "cpu"])
    setting["colour"] = dict(setting["colour"])
    # The precision is the hardware's, so it is part of what a setting trains (and of its cache name).
    setting["bfloat16"] = bfloat16_by_default(device_type)
    if epochs is not None:
        setting["epochs"] = epochs
    if not cuda and pool_images is not None and image_size is not None:
        setting["time_budget_s"] = pool_time_budget(setting["time_budget_s"], pool_images, image_size)
    return setting


def feature_blocks(setting: dict[str, Any]) -> list[int] | None:
    """The sizes of the blocks a setting's features are made of, in column order (SimCLR's, then the
    patch features'); None for SimCLR's alone."""
    if not setting.get("patches"):
        return None
    from models.patches import OUT_DIM

    return [int(setting["widths"][-1]), OUT_DIM]


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_resized_crop(scale: tuple[float, float] = (0.35, 1.0), max_rotation: float = 15.0) -> Augmentation:
    """A random crop of `scale` of the area (aspect 3/4..4/3, small rotation), resized back to S x S."""

    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        area = _uniform(b, *scale, gen)
        log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), gen)
        sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
        sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
        tx = (1 - sx) * _uniform(b, -1, 1, gen)
        ty = (1 - sy) * _uniform(b, -1, 1, gen)
        angle = torch.deg2rad(_uniform(b, -max_rotation, max_rotation, gen))
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1
        ).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return apply


# RGB <-> YIQ: hue is a rotation of the (I, Q) plane.
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_FROM_YIQ = torch.linalg.inv(_TO_YIQ)


def colour_jitter(strength: float = 0.8, hue: float = 0.2, p: float = 0.8, grayscale_p: float = 0.2) -> Augmentation:
    """SimCLR's colour distortion for RGB: with probability p, brightness, contrast, saturation and hue
    jitter; then grayscale with probability grayscale_p. Grayscale images get a milder additive
    brightness (+-0.2) and contrast (x0.6..1.4) jitter on every view: on MNIST-5k the RGB strength
    applied to grayscale cost 11 points at 20 labels (0.79 -> 0.68), since there is no colour shortcut
    to break there, only the strokes to keep.

    Strong colour distortion matters (Chen et al. 2020, sec. 3): without it two crops of one image are
    matched by their colour histogram alone and the encoder learns colour, not shape.
    """

    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b = len(x)
        shape = (b, 1, 1, 1)
        if x.shape[1] == 1:
            bright = _uniform(b, -0.2, 0.2, gen).view(shape).to(x)
            contrast = _uniform(b, 0.6, 1.4, gen).view(shape).to(x)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            return ((x - mean) * contrast + mean + bright).clamp(0, 1)
        on = (torch.rand(b, generator=gen) < p).view(shape).to(x)
        bright = 1 + on * _uniform(b, -strength, strength, gen).view(shape).to(x)
        contrast = 1 + on * _uniform(b, -strength, strength, gen).view(shape).to(x)
        x = x * bright
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp(0, 1)
        if x.shape[1] == 3:
            gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand_as(x)
            saturation = 1 + on * _uniform(b, -strength, strength, gen).view(shape).to(x)
            x = (gray + (x - gray) * saturation).clamp(0, 1)
            angle = on.view(b) * _uniform(b, -hue, hue, gen).to(x) * 2 * math.pi
            cos, sin = torch.cos(angle), torch.sin(angle)
            rotation = torch.zeros(b, 3, 3, dtype=x.dtype, device=x.device)
            rotation[:, 0, 0] = 1
            rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
            matrix = _FROM_YIQ.to(x) @ rotation @ _TO_YIQ.to(x)
            x = torch.einsum("bij,bjhw->bihw", matrix, x).clamp(0, 1)
            gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]).expand_as(x)
            to_gray = (torch.rand(b, generator=gen) < grayscale_p).view(shape).to(x.device)
            x = torch.where(to_gray, gray, x)
        return x

    return apply


def gaussian_noise(sigma: float = 0.05, p: float = 0.5) -> Augmentation:
    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        mask = (torch.rand(len(x), generator=gen) < p).view(-1, 1, 1, 1).to(x)
        noise = torch.randn(x.shape, generator=gen).to(x)
        return (x + sigma * mask * noise).clamp(0, 1)

    return apply


def compose(*steps: Augmentation) -> Augmentation:
    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for step in steps:
            x = step(x, gen)
        return x

    return apply


def default_augmentation(
    *, crop_scale: tuple[float, float] = (0.35, 1.0), strength: float = 0.8, hue: float = 0.2, grayscale_p: float = 0.2
) -> Augmentation:
    return compose(
        random_resized_crop(scale=crop_scale), colour_jitter(strength, hue, grayscale_p=grayscale_p), gaussian_noise()
    )


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent loss of two batches of embeddings [B, D]: row i of z1 and of z2 are the positive pair,
    every other row of either batch is a negative."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class ConvEncoder(nn.Module):
    """Three conv-BN-ReLU stages (two convs each) with pooling between, global average pooling.

    Input [B, C, S, S] (any S >= 8); output [B, widths[-1]] features.
    """

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                prev = width
        self.body = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.widths = tuple(widths)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


@dataclass
class SimCLRHistory:
    losses: list[float]  # mean loss of each epoch (the last one may be partial)
    seconds: float
    epochs: int  # epochs begun; a time budget may stop the last one part way
    steps: int
    steps_per_epoch: int


class SimCLR:
    """Self-supervised encoder behind `fit(pool) / transform(images)`.

    Args:
        widths: channel widths of the three encoder stages.
        projection_dim: size of the projection head's output (used only by the loss).
        epochs: passes over the pool; `time_budget_s` stops earlier (the cosine schedule is laid out
            over the steps that fit the budget, timed over the first PROBE_STEPS steps and again
            every REPLAN_STEPS steps, so even a pool whose one epoch outlasts the budget, or a run
            that another process slows half way, stops in time; at most one step past it).
        batch_size, lr, temperature: the usual SimCLR knobs (Adam instead of LARS at this scale).
        seed: initialisation, batch order and augmentations.
        mixed_precision: run the encoder's forward and backward in bfloat16 autocast (the loss in
            float32); None: on a GPU, and on a CPU with bfloat16 hardware (AMX tiles or AVX512-BF16,
            `native_cpu_bfloat16`), off on other CPUs, where bfloat16 is emulated and slower.
            bfloat16 needs no loss scaling.
        augmentation: how two views of a batch are drawn; None: `default_augmentation()`.
        patches: learn a patch representation (models.patches) first and make the encoder a
            JointEncoder of both; the time budget covers both.
        patch_colour_axis: the patch block reads each colour patch along its own dominant colour
            axis (`models.patches.colour_axis`); no effect on grayscale pools.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (32, 64, 128),
        projection_dim: int = 64,
        epochs: int = 30,
        time_budget_s: float | None = None,
        batch_size: int = 256,
        lr: float = 2e-3,
        temperature: float = 0.2,
        seed: int = 0,
        device: torch.device | None = None,
        mixed_precision: bool | None = None,
        augmentation: Augmentation | None = None,
        patches: bool = False,
        patch_colour_axis: bool = False,
    ) -> None:
        self.widths = tuple(widths)
        self.projection_dim = projection_dim
        self.epochs = epochs
        self.time_budget_s = time_budget_s
        self.batch_size = batch_size
        self.lr = lr
        self.temperature = temperature
        self.seed = seed
        self.device = device
        self.mixed_precision = mixed_precision
        self.augmentation = augmentation
        self.patches = patches
        self.patch_colour_axis = patch_colour_axis
        self.encoder: nn.Module | None = None
        self.history: SimCLRHistory | None = None

    @classmethod
    def from_setting(cls, setting: dict[str, Any], *, seed: int, device: torch.device | None = None) -> SimCLR:
        """The encoder of a device setting (`setting_for`); its time budget applies when it has one
        (a simulation drops it, so every machine of a kind trains the same encoder)."""
        return cls(
            widths=setting["widths"],
            epochs=setting["epochs"],
            time_budget_s=setting.get("time_budget_s"),
            batch_size=setting["batch_size"],
            temperature=setting["temperature"],
            seed=seed,
            device=device,
            mixed_precision=setting.get("bfloat16"),
            augmentation=default_augmentation(**setting["colour"]),
            patches=bool(setting.get("patches", False)),
            patch_colour_axis=bool(setting.get("patch_colour_axis", False)),
        )

    def fit(self, x: Pixels, *, progress: ProgressFn | None = None) -> SimCLR:
        """Trains on every image of x: [N, C, S, S] float32 in [0, 1]. Returns self."""
        device = self.device or select_device()
        report = progress or (lambda fraction: None)
        started = time.monotonic()
        patch_encoder = None
        # The patch block is learned first: it takes seconds, and what it took comes off SimCLR's budget.
        patch_share = 0.1 if self.patches else 0.0
        if self.patches:
            from models.patches import fit_patch_encoder

            patch_encoder = fit_patch_encoder(
                x,
                seed=self.seed,
                colour_axis=self.patch_colour_axis,
                device=device,
                progress=lambda f: report(0.1 * f),
            )
        # One deadline for the whole fit: the patch block, the set-up and SimCLR's steps all count.
        deadline = None if self.time_budget_s is None else started + self.time_budget_s
        seed_everything(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        # On a CPU, oneDNN's convolutions are faster over channels-last tensors (NHWC): 1.3x a SimCLR
        # step in float32 and 3.2x with AMX bfloat16 (benchmarks/results/precision.md).
        layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        encoder = ConvEncoder(x.shape[1], self.widths).to(device, memory_format=layout)
        projector = nn.Sequential(
            nn.Linear(encoder.out_dim, encoder.out_dim), nn.ReLU(), nn.Linear(encoder.out_dim, self.projection_dim)
        ).to(device)
        params = list(encoder.parameters()) + list(projector.parameters())
        optimiser = torch.optim.Adam(params, lr=self.lr, weight_decay=1e-6)
        augment = self.augmentation or default_augmentation()
        amp = bfloat16_by_default(device.type) if self.mixed_precision is None else self.mixed_precision
        # Batches are read from x as they are drawn: the pool may be bytes on disk (models.pixels).
        n = len(x)
        bs = min(self.batch_size, n)
        steps_per_epoch = max(1, n // bs)  # drop the ragged last batch: NT-Xent needs negatives
        total = self.epochs * steps_per_epoch
        # The budget is planned in steps, after a short probe, not after the first epoch: one epoch
        # of a million-image pool is most of an hour on a CPU, far past any budget.
        probe = min(steps_per_epoch, PROBE_STEPS)
        conv_started = time.monotonic()
        losses: list[float] = []
        step = 0
        encoder.train()
        projector.train()
        epoch = 0
        while step < total:
            order = torch.randperm(n, generator=gen)
            running, taken = 0.0, 0
            for b in range(steps_per_epoch):
                if step >= total:
                    break
                xb = to_device(x[order[b * bs : (b + 1) * bs].numpy()], device)
                # Augmented where the batch lives: on a GPU the crops and colour maps run there, not
                # on the host's cores (only the per-image random draws come from the CPU generator).
                v1, v2 = (augment(xb, gen).contiguous(memory_format=layout) for _ in range(2))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    z1, z2 = projector(encoder(v1)), projector(encoder(v2))
                loss = nt_xent(z1.float(), z2.float(), self.temperature)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                # Cosine decay over the planned steps, set by hand so the plan can shrink mid-run.
                for group in optimiser.param_groups:
                    group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
                optimiser.step()
                running += float(loss.detach())
                taken += 1
                step += 1
                if deadline is not None:
                    now = time.monotonic()
                    if step in (probe, steps_per_epoch) or (step > probe and step % REPLAN_STEPS == 0):
                        # Planned again at the end of the first epoch, which no longer counts warm-up
                        # alone, and every few steps: a process that takes a core mid-run slows every
                        # later step, and the cosine schedule should still end where training does.
                        per_step = (now - conv_started) / step
                        fits = step + int(max(0.0, deadline - now) / max(per_step, 1e-6))
                        total = max(step, min(self.epochs * steps_per_epoch, fits))
                    if now >= deadline:
                        total = step  # the budget is a hard stop, whatever the plan said
                if step % 5 == 0:
                    report(patch_share + (1 - patch_share) * min(step / total, 1.0))
            losses.append(running / max(taken, 1))
            epoch += 1
        encoder.eval()
        self.encoder = encoder if patch_encoder is None else JointEncoder.fitted(encoder, patch_encoder, x)
        self.history = SimCLRHistory(
            losses=losses, seconds=time.monotonic() - started, epochs=epoch, steps=step, steps_per_epoch=steps_per_epoch
        )
        report(1.0)
        return self

    def transform(self, x: Pixels, *, batch_size: int = 512, progress: ProgressFn | None = None) -> np.ndarray:
        """[N, C, S, S] images -> [N, D] float32 features (the encoder output, before the projector)."""
        if self.encoder is None:
            raise RuntimeError("SimCLR.transform before fit")
        return encode(self.encoder, x, batch_size=batch_size, progress=progress)


class JointEncoder(nn.Module):
    """SimCLR's encoder and a patch encoder side by side: [B, C, S, S] -> [B, conv + patch dims].

    Each block is scaled to unit total variance over the pool (the conv block after standardising each
    feature), so neither dominates the distances that the kNN graph and the latent strategies read.
    """

    def __init__(self, conv: ConvEncoder, patches: Any) -> None:
        super().__init__()
        self.conv = conv
        self.patches = patches
        self.in_channels = conv.in_channels
        self.out_dim = conv.out_dim + patches.out_dim
        self.register_buffer("conv_mean", torch.zeros(conv.out_dim))
        self.register_buffer("conv_scale", torch.ones(conv.out_dim))
        self.register_buffer("patch_scale", torch.ones(()))

    @classmethod
    @torch.no_grad()
    def fitted(cls, conv: ConvEncoder, patches: Any, pool: Pixels, *, sample: int = 10_000) -> JointEncoder:
        """The joint encoder with its block scales: SimCLR's measured on up to `sample` pool images,
        the patch block's known from its projection's fit (encoding the pool's patches again for it
        would cost as long as learning them)."""
        joint = cls(conv, patches).to(module_device(conv))
        rows = np.linspace(0, len(pool) - 1, min(len(pool), sample)).round().astype(np.int64)
        f = torch.as_tensor(encode(conv, _Rows(pool, rows)), dtype=torch.float64)
        std = f.std(0, unbiased=False) + 1e-6
        # A feature constant over the pool (a dead unit) stays zero and does not count.
        live = ((f - f.mean(0)) / std).var(0, unbiased=False).sum().clamp(min=1e-6)
        joint.conv_mean.copy_(f.mean(0))
        joint.conv_scale.copy_(std * live.sqrt())
        joint.patch_scale.copy_(patches.total_variance.sqrt().clamp(min=1e-6))
        return joint.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = (self.conv(x) - self.conv_mean) / self.conv_scale
        return torch.cat([conv, self.patches(x) / self.patch_scale], dim=1)


class _Rows:
    """Rows `rows` of a pool, read a batch at a time (what `encode` needs: len and slicing)."""

    def __init__(self, pool: Pixels, rows: np.ndarray) -> None:
        self.pool, self.rows = pool, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: slice) -> np.ndarray:
        return np.asarray(self.pool[self.rows[key]], dtype=np.float32)


def encoder_config(encoder: nn.Module) -> dict[str, Any]:
    """What rebuilds `encoder`'s architecture (`build_encoder`), to save beside its state dict."""
    from models.patches import PatchEncoder

    if isinstance(encoder, JointEncoder):
        return {"kind": "joint", "conv": encoder_config(encoder.conv), "patches": encoder_config(encoder.patches)}
    if isinstance(encoder, PatchEncoder):
        return {"kind": "patches", **encoder.config()}
    if isinstance(encoder, ConvEncoder):
        return {"kind": "conv", "in_channels": encoder.in_channels, "widths": list(encoder.widths)}
    raise TypeError(f"not a representation encoder: {type(encoder).__name__}")


def build_encoder(config: dict[str, Any]) -> nn.Module:
    """An untrained encoder of the architecture `encoder_config` described (load its state dict into
    it). A config without "kind" is a plain SimCLR encoder, as saved before joint encoders existed."""
    from models.patches import PatchEncoder

    kind = config.get("kind", "conv")
    if kind == "joint":
        return JointEncoder(build_encoder(config["conv"]), build_encoder(config["patches"]))
    if kind == "patches":
        return PatchEncoder(
            config["in_channels"],
            config["image_size"],
            n_centroids=config["n_centroids"],
            out_dim=config["out_dim"],
            # Encoders stored before the colour axis existed read RGB patches as they were learned.
            colour_axis=bool(config.get("colour_axis", False)),
        )
    if kind == "conv":
        return ConvEncoder(config["in_channels"], config["widths"])
    raise ValueError(f"unknown encoder kind {kind!r}")


def native_cpu_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware: Intel AMX tiles, or AVX512-BF16 dot products
    (AMD Zen 4 and later, some Xeons). There autocast trains the encoder's steps faster than float32:
    3.2x with AMX on a 2-core Xeon, 1.7x with AVX512-BF16 on a 2-core AMD EPYC
    (benchmarks/results/precision.md). Elsewhere bfloat16 is emulated and slower than float32."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(probe is not None and bool(probe()) for probe in probes)


def bfloat16_by_default(device_type: str) -> bool:
    """Whether the encoder trains in bfloat16 autocast on this kind of device when nobody says."""
    return device_type == "cuda" or (device_type == "cpu" and native_cpu_bfloat16())


def to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float32 host batch on `device`; to a GPU through pinned memory, so the copy is one DMA
    transfer that does not wait on the host (pageable memory is staged through a bounce buffer)."""
    tensor = torch.as_tensor(batch, dtype=torch.float32)
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def module_device(module: nn.Module) -> torch.device:
    """Where a module lives, from its parameters or, for one that only holds buffers, its buffers."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def encode(encoder: nn.Module, x: Pixels, *, batch_size: int = 512, progress: ProgressFn | None = None) -> np.ndarray:
    """[N, C, S, S] images -> [N, D] float32 features, a batch at a time into one array (a million
    images' features are a gigabyte; batches concatenated, then cast, held three). `progress`
    gets the fraction encoded after each batch."""
    device = module_device(encoder)
    encoder.eval()
    out = np.empty((len(x), encoder.out_dim), np.float32)
    for i in range(0, len(x), batch_size):
        batch = to_device(x[i : i + batch_size], device)
        if device.type == "cpu":
            # The layout the encoder trained in, whatever the layout of its weights (a loaded encoder's
            # are contiguous), so features encoded before and after a reload are the same numbers.
            batch = batch.contiguous(memory_format=torch.channels_last)
        # Features stay float32 (no autocast): rounds compare features encoded at different times.
        out[i : i + batch_size] = encoder(batch).float().cpu().numpy()
        if progress is not None:
            progress(min(1.0, (i + batch_size) / len(x)))
    return out


def pixel_pca(
    pool_x: Pixels, other_x: Pixels, dims: int = 64, sample: int = 5000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The pool (and another split) projected on the pool pixels' top principal components: the
    stand-in representation a round uses while the learned one trains. Fitted on at most `sample`
    pool images and projected a chunk at a time, so it costs seconds and no float copy of the pool
    even for a million images."""
    rng = np.random.default_rng(seed)
    n = len(pool_x)
    fit_rows = np.asarray(pool_x[np.arange(n)] if n <= sample else pool_x[rng.choice(n, sample, replace=False)])
    fit_rows = fit_rows.reshape(len(fit_rows), -1).astype(np.float32)
    mean = fit_rows.mean(0)
    centred = fit_rows - mean
    # Eigenvectors of the D x D covariance: cheaper than an SVD of the rows when N > D.
    values, vectors = np.linalg.eigh(centred.T @ centred / max(len(centred) - 1, 1))
    k = max(1, min(dims, len(fit_rows) - 1, fit_rows.shape[1]))
    basis = vectors[:, np.argsort(values)[::-1][:k]]

    def project(x: Pixels) -> np.ndarray:
        out = np.zeros((len(x), k), np.float32)
        for start, rows in chunks(x):
            out[start : start + len(rows)] = (rows.reshape(len(rows), -1) - mean) @ basis
        return out

    return project(pool_x), project(other_x)
