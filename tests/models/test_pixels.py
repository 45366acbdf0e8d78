"""The pool as bytes (models.pixels): every consumer of pool pixels gives the same result on it as
on the float array, so a round can keep a million images as a memory map instead of a float copy."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from models.pixels import PoolPixels, subset
from models.representation import SimCLR, pixel_pca
from models.training import fit_classifier, predict_proba
from models.vae_training import encode_means, fit_vae


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    # 8x8 digits up to 16x16, stored as bytes and read back: exactly the values PoolPixels gives.
    x = np.kron(data.images[:n] / 16.0, np.ones((2, 2)))[:, None].astype(np.float32)
    x = (np.round(x * 255.0) / 255.0).astype(np.float32)
    return x, data.target[:n]


def test_pool_pixels_match_the_float_array_in_every_consumer() -> None:
    x, y = _digits(300)
    pool = PoolPixels.from_array(x)
    np.testing.assert_array_equal(pool.to_array(), x)
    np.testing.assert_array_equal(np.asarray(subset(pool, np.arange(10, 20))), x[10:20])

    a_pool, a_val = pixel_pca(x, x[:7], dims=8)
    b_pool, b_val = pixel_pca(pool, pool.subset(np.arange(7)), dims=8)
    np.testing.assert_allclose(a_pool, b_pool, atol=1e-5)
    np.testing.assert_allclose(a_val, b_val, atol=1e-5)

    cpu = torch.device("cpu")
    vae_a, hist_a = fit_vae(x, latent_dim=4, epochs=2, seed=3, device=cpu)
    vae_b, hist_b = fit_vae(pool, latent_dim=4, epochs=2, seed=3, device=cpu)
    assert hist_a == hist_b
    np.testing.assert_allclose(encode_means(vae_a, x), encode_means(vae_b, pool), atol=1e-6)

    model = fit_classifier(x[:100], y[:100], 10, seed=0, device=cpu)
    np.testing.assert_allclose(predict_proba(model, x[100:]), predict_proba(model, pool.subset(slice(100, None))))

    simclr_a = SimCLR(widths=(8, 16, 16), epochs=1, batch_size=64, seed=1, device=cpu).fit(x)
    simclr_b = SimCLR(widths=(8, 16, 16), epochs=1, batch_size=64, seed=1, device=cpu).fit(pool)
    assert simclr_a.history is not None and simclr_b.history is not None
    assert simclr_a.history.losses == simclr_b.history.losses


def test_a_vae_on_a_pool_larger_than_its_step_budget_trains_on_a_sample() -> None:
    x, _ = _digits(600)
    heard: list[float] = []
    _, history = fit_vae(
        PoolPixels.from_array(x), latent_dim=4, epochs=30, max_steps=20, batch_size=16, seed=0, progress=heard.append
    )
    # 20 steps of 16: one epoch over a seeded sample of 320 images, finished at step 20 (the whole
    # pool would be 38 steps, and step 20 would report 20/38).
    assert len(history) == 1 and heard == [1.0]
