"""Triton python backend: the exported student on onnxruntime or OpenVINO, as the version's runtime.json
says (logic in distillery.serving.runtime).

The dynamic batcher's requests are padded to one length and run as one engine call.
"""

import os

import triton_python_backend_utils as pb_utils

from distillery.serving.preprocess import INPUT_NAMES, int_parameter
from distillery.serving.runtime import load_student, merge_requests, split_rows


class TritonPythonModel:
    def initialize(self, args):
        config = args["model_config"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.student = load_student(path, threads=int_parameter(config, "intra_op_threads"),
                                    micro_batch=int_parameter(config, "micro_batch"))

    def execute(self, requests):
        try:
            feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in INPUT_NAMES} for r in requests]
            merged, counts = merge_requests(feeds)
            per_request = split_rows(self.student.run(merged), counts)
        except Exception as exc:
            error = pb_utils.TritonError(str(exc))
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in out.items()])
                for out in per_request]
