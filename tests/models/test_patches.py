"""The patch representation (k-means on whitened patches) and the joint encoder it forms with SimCLR's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.head import fit_head
from models.patches import PatchEncoder, _normalise, fit_patch_encoder, geometry
from models.representation import JointEncoder, SimCLR, build_encoder, encode, encoder_config

CPU = torch.device("cpu")


def _stripes(y: np.ndarray, size: int = 16, seed: int = 0) -> np.ndarray:
    """RGB images of stripes in a random colour, phase and brightness: class 0 horizontal, 1 vertical.
    No pixel says which class an image is (the phase is uniform), only the local orientation does."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    out = np.empty((len(y), 3, size, size), np.float32)
    for i, label in enumerate(y):
        period = rng.integers(3, 6)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (grid + rng.random() * period) / period)
        pattern = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
        colour = rng.uniform(0.2, 1.0, 3)[:, None, None]
        out[i] = np.clip(colour * pattern * rng.uniform(0.5, 1.0) + rng.normal(0, 0.05, (3, size, size)), 0, 1)
    return out


def _small(pool: np.ndarray, seed: int = 0) -> PatchEncoder:
    return fit_patch_encoder(pool, seed=seed, n_centroids=48, out_dim=16, n_patches=4000, n_images_for_pca=200)


def test_patch_features_carry_the_orientation_that_no_pixel_carries() -> None:
    y = np.random.default_rng(1).integers(0, 2, 400)
    x = _stripes(y)
    encoder = _small(x)
    features = encode(encoder, x)
    assert features.shape == (400, 16) and np.isfinite(features).all()
    train, test = np.arange(100), np.arange(100, 400)
    on_patches = fit_head(features[train], y[train], 2, pool_features=features)
    pixels = x.reshape(len(x), -1)
    on_pixels = fit_head(pixels[train], y[train], 2, pool_features=pixels)
    patch_accuracy = (on_patches.predict_proba(features[test]).argmax(1) == y[test]).mean()
    pixel_accuracy = (on_pixels.predict_proba(pixels[test]).argmax(1) == y[test]).mean()
    assert patch_accuracy > 0.95 and pixel_accuracy < 0.8


def test_the_patch_encoder_is_deterministic_for_a_seed_and_whitens_its_patches() -> None:
    x = _stripes(np.random.default_rng(2).integers(0, 2, 120), seed=3)
    first, again, other = _small(x, seed=0), _small(x, seed=0), _small(x, seed=1)
    np.testing.assert_array_equal(encode(first, x), encode(again, x))
    assert not np.allclose(encode(first, x), encode(other, x))
    u, side = first.whitened_patches(torch.as_tensor(x[:50]))
    assert side == 16 - 6 + 1
    # Stripes' patches vary along a few directions; whitening evens the spread out (the first
    # eigenvalue is the zero left by removing each patch's mean).
    whitened = torch.linalg.eigvalsh(torch.cov(u.reshape(-1, u.shape[-1]).T.double()))[1:]
    raw = _normalise(F.unfold(torch.as_tensor(x[:50]), 6).transpose(1, 2)).reshape(-1, u.shape[-1])
    unwhitened = torch.linalg.eigvalsh(torch.cov(raw.T.double()))[1:]
    assert float(whitened.max() / whitened.median()) < 10 < 50 < float(unwhitened.max() / unwhitened.median())


def test_pooled_activations_are_the_triangle_code_summed_over_quadrants() -> None:
    # The encoder computes in place and in float32 for speed; this is the paper's formula written out
    # plainly in float64 (squared distances expanded in float32 lose a few digits near zero).
    x = _stripes(np.random.default_rng(5).integers(0, 2, 80), seed=6)
    encoder = _small(x)
    batch = torch.as_tensor(x[:70])  # more than one of the encoder's internal batches
    u, side = encoder.whitened_patches(batch)
    distance = torch.cdist(u.double(), encoder.centroids.double())
    active = (distance.mean(-1, keepdim=True) - distance).clamp(min=0).view(len(batch), side, side, -1)
    half = side // 2
    quadrants = [active[:, :half, :half], active[:, :half, half:], active[:, half:, :half], active[:, half:, half:]]
    expected = torch.cat([q.sum((1, 2)) for q in quadrants], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(encoder.pooled(batch).double(), expected, rtol=2e-3, atol=1e-2)


@pytest.mark.parametrize(("size", "patch", "stride"), [(8, 4, 1), (28, 6, 1), (32, 6, 1), (64, 6, 2), (256, 6, 8)])
def test_patch_geometry_keeps_the_grid_small_on_large_images(size: int, patch: int, stride: int) -> None:
    assert geometry(size) == (patch, stride)
    x = np.random.default_rng(0).random((40, 1, size, size)).astype(np.float32)
    encoder = fit_patch_encoder(x, n_centroids=8, out_dim=4, n_patches=500, n_images_for_pca=40)
    assert encode(encoder, x).shape == (40, 4)


def test_simclr_with_patches_gives_a_joint_encoder_with_balanced_blocks_that_survives_storage() -> None:
    from app.storage import LocalStorage
    from worker.representation import load_encoder, save_encoder

    x = _stripes(np.random.default_rng(4).integers(0, 2, 96), seed=5)
    kwargs = {"widths": (8, 16, 16), "epochs": 1, "batch_size": 32, "seed": 0, "device": CPU}
    model = SimCLR(patches=True, **kwargs).fit(x)
    assert isinstance(model.encoder, JointEncoder)
    features = model.transform(x)
    patch_dim = model.encoder.patches.out_dim
    assert features.shape == (96, 16 + patch_dim)
    # Each block has unit total variance over the pool, so neither decides the distances alone.
    conv_block, patch_block = features[:, :16], features[:, 16:]
    assert conv_block.var(0).sum() == pytest.approx(1.0, rel=1e-3)
    assert patch_block.var(0).sum() == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(SimCLR(patches=True, **kwargs).fit(x).transform(x), features, rtol=1e-5, atol=1e-5)
    assert encoder_config(model.encoder)["kind"] == "joint"

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder))
        save_encoder(storage, "encoder.pt", model.encoder)
        np.testing.assert_array_equal(encode(load_encoder(storage, "encoder.pt", CPU), x), features)


def test_encoding_a_pool_in_batches_reports_its_progress_and_matches_one_pass() -> None:
    # The representation job's bar moves while a large pool is encoded (a million images take
    # longer than the training's budget on a CPU), and batching changes no feature.
    x = _stripes(np.random.default_rng(2).integers(0, 2, 40), seed=3)
    encoder = SimCLR(widths=(8, 16, 16), epochs=1, batch_size=16, seed=0, device=CPU, patches=True).fit(x).encoder
    seen: list[float] = []
    batched = encode(encoder, x, batch_size=16, progress=seen.append)
    assert seen == [0.4, 0.8, 1.0]
    assert batched.dtype == np.float32 and batched.shape == (40, encoder.out_dim)
    np.testing.assert_allclose(batched, encode(encoder, x, batch_size=64), rtol=1e-5, atol=1e-5)
    assert encode(encoder, x[:0]).shape == (0, encoder.out_dim)


def test_an_encoder_saved_before_joint_encoders_still_loads() -> None:
    # Artifacts written by earlier versions carry a ConvEncoder's config without a "kind".
    encoder = build_encoder({"in_channels": 3, "widths": [8, 16, 16]})
    assert encoder_config(encoder) == {"kind": "conv", "in_channels": 3, "widths": [8, 16, 16]}
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build_encoder({"kind": "vit"})


def test_a_fine_tuned_joint_encoder_starts_at_the_head_and_survives_the_challenger_store() -> None:
    from app.storage import LocalStorage
    from models.learner import Challenger, fine_tunable
    from worker.artifacts import load_challenger, save_challenger

    y = np.random.default_rng(6).integers(0, 2, 64)
    x = _stripes(y, seed=7)
    model = SimCLR(patches=True, widths=(8, 16, 16), epochs=1, batch_size=32, seed=0, device=CPU).fit(x)
    features = model.transform(x)
    head = fit_head(features, y, 2, pool_features=features)
    network = fine_tunable(model.encoder, head).eval()
    with torch.no_grad():
        start = network(torch.as_tensor(x[:16])).numpy()
    np.testing.assert_allclose(start, head.logits(features[:16]), atol=1e-4)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        storage = LocalStorage(Path(folder))
        challenger = Challenger({"fine-tuned": network}, 64, "validation")
        save_challenger(storage, "c.pt", challenger, image_size=16, n_classes=2)
        loaded = load_challenger(storage, "c.pt", CPU, image_size=16, n_classes=2)
        with torch.no_grad():
            again = loaded.networks["fine-tuned"](torch.as_tensor(x[:16])).numpy()
    np.testing.assert_allclose(again, start, atol=1e-5)


def _two_colour_stripes(y: np.ndarray, size: int = 16, seed: int = 0) -> np.ndarray:
    """Stripes as `_stripes`, but between two random colours: the class is the orientation, and the
    colours, like the ground of the RGB benchmarks, tell nothing."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    out = np.empty((len(y), 3, size, size), np.float32)
    for i, label in enumerate(y):
        period = rng.integers(3, 6)
        wave = (np.sin(2 * np.pi * (grid + rng.random() * period) / period) > 0).astype(np.float32)
        pattern = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
        ink, ground = rng.uniform(0, 1, (2, 3, 1, 1))
        out[i] = np.clip(ground + (ink - ground) * pattern + rng.normal(0, 0.03, (3, size, size)), 0, 1)
    return out


def test_colour_axis_patches_read_contrast_whatever_the_colours_and_leave_grayscale_alone() -> None:
    y = np.random.default_rng(8).integers(0, 2, 300)
    x = _two_colour_stripes(y, seed=9)
    kwargs = {"seed": 0, "n_centroids": 48, "out_dim": 16, "n_patches": 4000, "n_images_for_pca": 200}
    axis = fit_patch_encoder(x, colour_axis=True, **kwargs)
    plain = fit_patch_encoder(x, **kwargs)
    assert axis.colour_axis and not plain.colour_axis
    assert axis.whitening.shape == (36, 36) and plain.whitening.shape == (108, 108)
    # The same picture with its channels swapped is the same contrast along its own colour axis.
    swapped = np.ascontiguousarray(x[:, [2, 0, 1]])
    np.testing.assert_allclose(encode(axis, swapped), encode(axis, x), rtol=1e-3, atol=1e-3)
    assert not np.allclose(encode(plain, swapped), encode(plain, x), rtol=1e-3, atol=1e-3)
    features = encode(axis, x)
    train, test = np.arange(100), np.arange(100, 300)
    head = fit_head(features[train], y[train], 2, pool_features=features)
    assert (head.predict_proba(features[test]).argmax(1) == y[test]).mean() > 0.95

    # One channel has one axis: a grayscale encoder asked for the colour axis is the paper's.
    gray = x.mean(1, keepdims=True)
    gray_axis = fit_patch_encoder(gray, colour_axis=True, **kwargs)
    assert not gray_axis.colour_axis
    np.testing.assert_array_equal(encode(gray_axis, gray), encode(fit_patch_encoder(gray, **kwargs), gray))


def test_a_colour_axis_encoder_survives_its_config_and_older_configs_read_rgb_patches() -> None:
    x = _two_colour_stripes(np.random.default_rng(10).integers(0, 2, 60), seed=11)
    encoder = fit_patch_encoder(x, colour_axis=True, n_centroids=8, out_dim=4, n_patches=500, n_images_for_pca=40)
    config = encoder_config(encoder)
    assert config["colour_axis"] is True
    rebuilt = build_encoder(config)
    rebuilt.load_state_dict(encoder.state_dict())
    np.testing.assert_array_equal(encode(rebuilt, x), encode(encoder, x))
    # A config stored before the colour axis existed has no such key: its encoder reads RGB patches.
    older = {key: value for key, value in config.items() if key != "colour_axis"}
    assert build_encoder(older).whitening.shape == (108, 108)


def test_both_settings_read_colour_patches_along_their_axis() -> None:
    from models.representation import setting_for, setting_tag

    x = _two_colour_stripes(np.random.default_rng(12).integers(0, 2, 64), seed=13)
    for device_type in ("cpu", "cuda"):
        setting = setting_for(device_type, epochs=1) | {"widths": (8, 16, 16), "batch_size": 32}
        assert setting["patch_colour_axis"] is True and setting_tag(setting).endswith(
            "-patches-axis" + ("-bf16" if setting["bfloat16"] else "")
        )
        model = SimCLR.from_setting(setting, seed=0, device=CPU).fit(x)
        assert isinstance(model.encoder, JointEncoder) and model.encoder.patches.colour_axis
