"""Synthetic data: a demo chain (`chain`) and its in-store camera traffic (`instore`)."""
