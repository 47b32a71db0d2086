"""The neural router: encoder + pooling + one success head per tier, its losses, tokenisation and training loop.

Kept import-free: :mod:`.tokenization` is also used by the torch-free runtime, so importing this package must not
import torch.
"""
