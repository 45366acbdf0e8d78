"""A pre-trained encoder with a linear head on top, as one network to fine-tune on labelled pixels."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


class FineTuned(nn.Module):
    """A copy of `encoder` followed by the linear map ((f - mean) / scale) @ weight.T + bias, folded
    into one layer, so the network starts out predicting exactly what that head predicts.

    Input [B, C, S, S] in [0, 1]; output [B, K] logits. The given encoder is never changed.
    """

    def __init__(
        self, encoder: nn.Module, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
    ) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).float()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            # ((f - mean) / scale) @ W.T + b = f @ (W / scale).T + (b - (W / scale) @ mean)
            w = weight / scale
            self.linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            self.linear.bias.copy_(torch.as_tensor(bias - w @ mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encoder(x))
