"""Versioned round artifacts (VAE weights, latents, latent index) in the shared storage.

Keys carry the project and the round that wrote them, so a redelivered round overwrites its own
files and never touches another round's. Weights are saved as a state dict plus the constructor
arguments, and loaded with `weights_only=True`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.storage import Storage
from models.nets.vae import ConvVAE


@dataclass
class VAEArtifact:
    model: ConvVAE
    key: str
    pool_ids: set[int]


def artifact_key(project_id: int, round_id: int, name: str) -> str:
    return f"projects/{project_id}/rounds/{round_id}/{name}"


def save_vae(storage: Storage, key: str, model: ConvVAE, pool_ids: np.ndarray) -> None:
    buf = io.BytesIO()
    torch.save(
        {
            "config": {
                "in_channels": model.in_channels,
                "image_size": model.image_size,
                "latent_dim": model.latent_dim,
            },
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "pool_ids": torch.as_tensor(pool_ids, dtype=torch.int64),
        },
        buf,
    )
    storage.put(key, buf.getvalue())


def load_vae(storage: Storage, key: str, device: torch.device) -> VAEArtifact:
    payload: dict[str, Any] = torch.load(io.BytesIO(storage.get(key)), map_location=device, weights_only=True)
    model = ConvVAE(**payload["config"]).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return VAEArtifact(model=model, key=key, pool_ids=set(payload["pool_ids"].tolist()))


def save_latents(storage: Storage, key: str, ids: np.ndarray, codes: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=ids, codes=codes.astype(np.float32))
    storage.put(key, buf.getvalue())


def load_latents(storage: Storage, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], codes [N, D]) as save_latents stored them."""
    with np.load(io.BytesIO(storage.get(key))) as npz:
        return npz["ids"], npz["codes"]


def save_challenger(storage: Storage, key: str, challenger: Any, *, image_size: int, n_classes: int) -> None:
    """A models.learner.Challenger: its networks as state dicts with what rebuilds them, its verdict."""
    from models.nets.classifier import SmallCNN
    from models.representation import encoder_config

    networks: dict[str, Any] = {}
    for name, network in challenger.networks.items():
        state = {k: v.cpu() for k, v in network.state_dict().items()}
        if isinstance(network, SmallCNN):
            config = {"kind": "cnn", "in_channels": network.in_channels, "width": network.width}
        else:  # models.nets.fine_tuned.FineTuned over the representation's encoder
            config = {"kind": "fine-tuned", "encoder": encoder_config(network.encoder)}
        networks[name] = {"config": config, "state_dict": state}
    buf = io.BytesIO()
    torch.save(
        {
            "networks": networks,
            "labels": challenger.labels,
            "held_out": challenger.held_out,
            "scores": challenger.scores,
            "chosen": challenger.chosen,
            "temperatures": challenger.temperatures,
            "image_size": image_size,
            "n_classes": n_classes,
        },
        buf,
    )
    storage.put(key, buf.getvalue())


def load_challenger(storage: Storage, key: str, device: torch.device, *, image_size: int, n_classes: int) -> Any:
    """The Challenger save_challenger stored, on `device`; None when it was fitted for another image
    size or class list (its networks would not fit this round's images)."""
    from models.learner import Challenger
    from models.nets.classifier import SmallCNN
    from models.nets.fine_tuned import FineTuned
    from models.representation import build_encoder

    payload: dict[str, Any] = torch.load(io.BytesIO(storage.get(key)), map_location=device, weights_only=True)
    if payload["image_size"] != image_size or payload["n_classes"] != n_classes:
        return None
    networks: dict[str, Any] = {}
    for name, saved in payload["networks"].items():
        config = saved["config"]
        if config["kind"] == "cnn":
            network: torch.nn.Module = SmallCNN(config["in_channels"], n_classes, config["width"])
        else:
            # Saved before joint encoders: the ConvEncoder's config sat in the network's own.
            encoder = build_encoder(config.get("encoder", config | {"kind": "conv"}))
            dim = encoder.out_dim
            network = FineTuned(
                encoder,
                np.zeros((n_classes, dim), np.float32),
                np.zeros(n_classes, np.float32),
                np.zeros(dim, np.float32),
                np.ones(dim, np.float32),
            )
        network.load_state_dict(saved["state_dict"])
        networks[name] = network.to(device).eval()
    return Challenger(
        networks,
        int(payload["labels"]),
        payload["held_out"],
        payload["scores"],
        payload["chosen"],
        dict(payload["temperatures"]),
    )
