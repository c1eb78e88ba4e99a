"""Triton python backend: the server-side tokenizer (logic in distillery.serving.preprocess)."""

import os

import triton_python_backend_utils as pb_utils

from distillery.serving.preprocess import INPUT_NAMES, TextEncoder, int_parameter


class TritonPythonModel:
    def initialize(self, args):
        pad_to = int_parameter(args["model_config"], "pad_to_length")
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.encoder = TextEncoder.from_dir(os.path.join(version_dir, "student"), pad_to=pad_to)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                feeds = self.encoder.encode_request(
                    pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy(),
                    pb_utils.get_input_tensor_by_name(request, "ITEM").as_numpy())
                outputs = [pb_utils.Tensor(n, feeds[n]) for n in INPUT_NAMES]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except Exception as exc:  # one bad request must not fail the others in its batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
