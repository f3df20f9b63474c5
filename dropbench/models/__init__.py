"""Models (``configs/model/*.yaml``). Each takes the image shape (C, H, W), the number of
classes and regularizer factories, and derives every layer size from them. A model that is
not a classifier declares its task (``model.task``, :mod:`dropbench.tasks`)."""

from dropbench.models.autoencoder import Autoencoder
from dropbench.models.cnn import CNN
from dropbench.models.lstm import LSTM
from dropbench.models.mlp import MLP
from dropbench.models.resnet import ResNet

__all__ = ["CNN", "LSTM", "MLP", "Autoencoder", "ResNet"]
