"""Export a trained router to a torch-free bundle (ONNX, int8, parity gates). ``python -m aco_bert.export``."""

from aco_bert.export.build import ExportConfig, ExportError, export

__all__ = ["ExportConfig", "ExportError", "export"]
