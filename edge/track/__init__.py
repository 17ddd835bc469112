"""Tracking, after detection: detections to person tracks (IoU and appearance), crossings,
attire (stage order: EDGE_STAGES in tests/test_layering.py)."""
