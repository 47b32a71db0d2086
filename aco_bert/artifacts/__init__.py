"""Artifacts that stages hand to each other: bundle manifests, strict JSON, and (in :mod:`.layout`) the names of
every file in a run dir, a stack dir and a bundle. Torch-free: the runtime imports it."""
