"""The operator's own settings, from its environment (the Deployment in manifests/base/operator.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from distillery.storage import S3_URI


@dataclass(frozen=True)
class OperatorSettings:
    kfp_host: str = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    """KFP API endpoint (``KFP_HOST``); auth: the projected token at ``KF_PIPELINES_SA_TOKEN_PATH``
    (read by ``kfp.Client``) or a bearer token in ``KFP_TOKEN``."""
    kfp_token: str | None = None
    kfp_namespace: str | None = None
    """The KFP profile namespace of multi-user installations (``KFP_NAMESPACE``)."""
    poll_s: float = 30.0
    """Seconds between two polls of a KFP run (``DISTILLERY_POLL_SECONDS``)."""
    tick_s: float = 15.0
    """Seconds between two checks whether an experiment's analysis is due (``DISTILLERY_TICK_SECONDS``)."""
    retry_s: float = 30.0
    """Delay before retrying when a dependency is not ready (``DISTILLERY_RETRY_SECONDS``)."""
    serving_repository: str = "s3://distillery-models/triton"
    """The Triton model repository a DistillationRun publishes into when its ``spec.serving.repository`` is unset
    (``DISTILLERY_SERVING_REPOSITORY``; the one manifests/base/triton.yaml serves). Empty: runs deploy nothing."""

    def __post_init__(self) -> None:
        for name in ("poll_s", "tick_s", "retry_s"):
            if not 0 < getattr(self, name) <= 86400:
                raise ValueError(f"operator setting {name}={getattr(self, name)!r}: must be in (0, 86400] seconds")
        if self.serving_repository and not S3_URI.match(self.serving_repository):
            raise ValueError(f"operator setting DISTILLERY_SERVING_REPOSITORY={self.serving_repository!r}: "
                             "must be s3://BUCKET/PREFIX or empty")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        e = os.environ if env is None else env
        d = cls()
        return cls(
            kfp_host=e.get("KFP_HOST", d.kfp_host),
            kfp_token=e.get("KFP_TOKEN") or None,
            kfp_namespace=e.get("KFP_NAMESPACE") or None,
            poll_s=float(e.get("DISTILLERY_POLL_SECONDS", d.poll_s)),
            tick_s=float(e.get("DISTILLERY_TICK_SECONDS", d.tick_s)),
            retry_s=float(e.get("DISTILLERY_RETRY_SECONDS", d.retry_s)),
            serving_repository=e.get("DISTILLERY_SERVING_REPOSITORY", d.serving_repository),
        )
