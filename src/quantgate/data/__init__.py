"""Packaged demo datasets and demo model training (nothing is downloaded)."""
