"""Offline tools: analysis of recorded video, annotation, MOT output, camera splitting.

The agent never imports this package (tests/test_layering.py).
"""
