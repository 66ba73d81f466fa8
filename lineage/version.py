"""The package version (one place: ``lineage.__version__`` and the OTLP scope read it)."""

__version__ = "0.1.0"
