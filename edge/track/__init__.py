"""Stage 3, tracking: detections to person tracks (IoU and appearance), crossings, attire."""
