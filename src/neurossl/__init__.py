"""neurossl: a benchmark of self-supervised pretraining for neural population models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurossl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"
