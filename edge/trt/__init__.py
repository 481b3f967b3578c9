"""TensorRT engines: API feature detection, rung plans, the engine cache and the builder (tensorrt imported lazily)."""
