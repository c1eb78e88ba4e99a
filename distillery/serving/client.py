"""Client of the ``relevance`` ensemble over ``tritonclient`` HTTP or gRPC.

    from distillery.serving.client import RelevanceClient
    client = RelevanceClient("127.0.0.1:8000")                   # or protocol="grpc" with the gRPC port
    probs = client.score(["usb c cable"], ["Anker USB-C cable 2m"])   # (1, classes) label probabilities

An item is its joined text (``title | brand | …``) or a JSON object of fields, which the server joins
with the student's own ``item_fields``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ClientError(RuntimeError):
    """A request the server refused or could not answer; names the model and Triton's message."""


class RelevanceClient:
    """Scores (query, item) pairs through Triton; ``score`` splits large inputs into ``batch_size`` chunks."""

    def __init__(self, url: str, protocol: str = "http", timeout_s: float = 30.0, batch_size: int = 64) -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol={protocol!r}: expected 'http' or 'grpc'")
        self.url = url.removeprefix("http://").removeprefix("grpc://")
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        if protocol == "http":
            import tritonclient.http as module
            self._client: Any = module.InferenceServerClient(self.url, connection_timeout=timeout_s,
                                                             network_timeout=timeout_s)
        else:
            import tritonclient.grpc as module
            self._client = module.InferenceServerClient(self.url)
        self._module: Any = module
        self._max_batch: dict[tuple[str, str], int] = {}

    def live(self) -> bool:
        return bool(self._client.is_server_live())

    def server_ready(self) -> bool:
        return bool(self._client.is_server_ready())

    def ready(self, model: str = "relevance", version: str = "") -> bool:
        """Whether ``model`` (a given ``version``, or its default) is loaded and ready."""
        try:
            return bool(self._client.is_model_ready(model, version))
        except Exception:  # an unknown model is simply not ready
            return False

    def max_batch(self, model: str, version: str = "") -> int:
        """The model's ``max_batch_size`` (0: no batching), read once from the server."""
        key = (model, version)
        if key not in self._max_batch:
            try:
                cfg = self._client.get_model_config(model, version, **({"as_json": True} if self.protocol == "grpc"
                                                                      else {}))
            except self._module_error() as exc:
                raise ClientError(f"{model} (version {version or 'default'}) at {self.url}: {exc}") from None
            cfg = cfg.get("config", cfg)
            self._max_batch[key] = int(cfg.get("max_batch_size", cfg.get("maxBatchSize", 0)))
        return self._max_batch[key]

    def _infer(self, queries: list[str], items: list[str], model: str, version: str) -> np.ndarray:
        inputs = []
        for name, texts in (("QUERY", queries), ("ITEM", items)):
            arr = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
            tensor = self._module.InferInput(name, list(arr.shape), "BYTES")
            tensor.set_data_from_numpy(arr)
            inputs.append(tensor)
        outputs = [self._module.InferRequestedOutput("PROBS")]
        kwargs: dict[str, Any] = {"model_version": version, "outputs": outputs}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        try:
            result = self._client.infer(model, inputs, **kwargs)
        except self._module_error() as exc:
            raise ClientError(f"{model} (version {version or 'default'}) at {self.url}: {exc}") from None
        return np.asarray(result.as_numpy("PROBS"), dtype=np.float32)

    def _module_error(self) -> type[Exception]:
        from tritonclient.utils import InferenceServerException

        return InferenceServerException

    def score(self, queries: list[str], items: list[str], model: str = "relevance", version: str = ""
              ) -> np.ndarray:
        """Label probabilities, shape (len(queries), classes), in input order."""
        if len(queries) != len(items):
            raise ValueError(f"score: {len(queries)} queries but {len(items)} items")
        if not queries:
            raise ValueError("score: no pairs")
        step = min(self.batch_size, self.max_batch(model, version) or self.batch_size)
        parts = [self._infer(queries[i:i + step], items[i:i + step], model, version)
                 for i in range(0, len(queries), step)]
        return np.concatenate(parts, axis=0)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RelevanceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
