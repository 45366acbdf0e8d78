"""The task CNN's pooling: the same numbers as PyTorch's adaptive average pooling, through an
operation whose CUDA backward is deterministic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.nets.classifier import BinAverage, SmallCNN


@pytest.mark.parametrize("shape", [(7, 7), (8, 8), (5, 9), (3, 3), (4, 4), (16, 2)])
def test_bin_average_matches_adaptive_average_pooling_forward_and_backward(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, *shape, requires_grad=True)
    same = x.detach().clone().requires_grad_()
    expected, got = nn.AdaptiveAvgPool2d(4)(x), BinAverage(4)(same)
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(same.grad, x.grad, rtol=0, atol=1e-6)


def test_weights_saved_from_the_adaptive_pooling_cnn_load_and_predict_the_same() -> None:
    torch.manual_seed(1)
    old = SmallCNN(3, 10).eval()
    old.features[8] = nn.AdaptiveAvgPool2d(4)
    new = SmallCNN(3, 10).eval()
    new.load_state_dict(old.state_dict())
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-5)
