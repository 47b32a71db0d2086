"""Signals the decision layer reads besides the encoder: handcrafted text features and domain detectors
(:mod:`.handcrafted`), and the fitted stacker signals (:mod:`.base` + :mod:`.registry`: TF-IDF-LR logits, kNN
neighbour outcomes, spec-declared metadata) with the stacker's single sources and guarantee (:mod:`.sources`)."""
