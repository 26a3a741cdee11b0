"""Model registry, loading through nnsight, and per-architecture adapters."""

from circuitgate.models.adapters import Adapter, Shape, adapter_for
from circuitgate.models.loading import LoadedModel, load_model, model_info
from circuitgate.models.registry import ModelSpec, aliases, resolve

__all__ = ["Adapter", "LoadedModel", "ModelSpec", "Shape", "adapter_for", "aliases", "load_model", "model_info", "resolve"]
