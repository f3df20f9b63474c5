"""dropbench: compare dropout-family regularizers on MLP, CNN, ResNet and LSTM models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dropbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
