"""Frames in and video out: sources, the run folder (frame store) and the video writer."""
