"""Export a saved student for serving: ONNX with a parity gate, int8, TensorRT plans, Triton repositories."""
