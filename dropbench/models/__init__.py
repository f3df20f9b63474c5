"""Models (``configs/model/*.yaml``). Each takes the image shape (C, H, W), the number of
classes and a regularizer factory, and derives every layer size from them."""

from dropbench.models.cnn import CNN
from dropbench.models.lstm import LSTM
from dropbench.models.mlp import MLP

__all__ = ["CNN", "LSTM", "MLP"]
