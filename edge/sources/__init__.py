"""Stage 1, frame sources: files, RTSP, USB cameras, and the agent's per-camera feed thread."""
