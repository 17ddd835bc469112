"""Frame sources, the first stage: files, RTSP, USB cameras, and the agent's per-camera feed
thread (stage order: EDGE_STAGES in tests/test_layering.py)."""
