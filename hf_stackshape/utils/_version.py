"""The package version (read by the root package and by run manifests, without importing the root)."""

__version__ = "0.1.0"
