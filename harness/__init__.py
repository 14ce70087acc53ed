"""segconform: a pytest-driven conformance and regression harness for deployed segmentation models."""

__version__ = "0.1.0"
