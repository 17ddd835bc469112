"""Fusion, where the card and camera branches meet: swipes onto visits, and one store-wide
visit across cameras (stage order: EDGE_STAGES in tests/test_layering.py)."""
