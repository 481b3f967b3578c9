"""CKD: Coupled Knowledge Distillation RGB-thermal tracker (network, tracker, data, distillation, evaluation)."""

__version__ = "0.1.0"
