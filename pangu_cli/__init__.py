"""pangu: the Pangu Ultra training pipeline as one command-line toolkit."""

__version__ = "0.1.0"
