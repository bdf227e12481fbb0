"""Model runtime: train, export to ONNX, quantize, and embed with ONNX Runtime."""
