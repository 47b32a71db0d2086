"""Signals the decision layer reads besides the encoder: handcrafted text features and domain detectors."""
