"""Triton python backend: text in, label probabilities out in one stub (logic in distillery.serving.scorer).

The same answer as the ``relevance`` ensemble with one process hop fewer per request.
"""

import os

import triton_python_backend_utils as pb_utils

from distillery.serving.preprocess import int_parameter
from distillery.serving.scorer import TextScorer


class TritonPythonModel:
    def initialize(self, args):
        config = args["model_config"]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.scorer = TextScorer.from_dir(version_dir, threads=int_parameter(config, "intra_op_threads"),
                                          micro_batch=int_parameter(config, "micro_batch"),
                                          pad_to=int_parameter(config, "pad_to_length"))

    def execute(self, requests):
        texts = [(pb_utils.get_input_tensor_by_name(r, "QUERY").as_numpy(),
                  pb_utils.get_input_tensor_by_name(r, "ITEM").as_numpy()) for r in requests]
        try:
            results = self.scorer.score_requests(texts)
        except Exception as exc:  # the graph failed: every request of the batch gets the reason
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(r))) if isinstance(r, Exception) else
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in r.items()])
                for r in results]
