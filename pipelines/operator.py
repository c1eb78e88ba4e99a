"""kopf's entry module for the operator: its handlers, with the KFP pipeline backend injected.

    kopf run --standalone --namespace=relevance-distillery -m pipelines.operator

The handlers (``distillery.operator.handlers``) know the backend only as the ``PipelineBackend`` protocol of
``distillery.operator.runs``; this adapter, which may import ``kfp``, supplies :class:`KfpBackend`. Wiring it
here rather than in the handlers keeps the imports one way: ``pipelines`` → ``distillery.operator``.
"""

from __future__ import annotations

from distillery.operator import handlers
from pipelines.kfp_backend import KfpBackend

handlers.use_backend(KfpBackend)
