"""One camera's chain, detections to tracks to scene events, and its health numbers."""
