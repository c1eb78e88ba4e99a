"""A Kubernetes API emulator on loopback for the operator's end-to-end test: ``kmock`` plus the small
adapter kopf needs (see shared/docs/environment.md).

kmock 0.8 as released lacks what kopf relies on; this adapter adds it and nothing else:

* ``metadata.uid``, ``creationTimestamp``, ``generation``, a ``namespace`` from the URL and a name
  from ``generateName`` on create;
* a ``resourceVersion`` that moves on every write, and JSON-patch (RFC 6902, with its ``test`` op on
  ``/metadata/resourceVersion``: 422 on a mismatch) besides merge patches;
* ``groupVersion: v1`` (not ``/v1``) in core discovery, and ``kind``/``apiVersion`` on lists.

kopf's namespace and CRD scanning is off in the operator (``settings.scanning.disabled``: its Role
grants no cluster-wide reads), so ``GET /api/v1/namespaces``, which kmock cannot parse, is never sent.

It still has no validation, defaulting or admission: the operator applies the CRD's defaults itself
(``distillery.operator.spec``; ``test_crds.py`` checks that both agree).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any

import jsonpatch
import kmock
from kmock._internal import enums, k8s, rendering

# (group/version/plural, kind, namespaced, subresources)
RESOURCES = (
    ("distillery.relevance.dev/v1alpha1/distillationruns", "DistillationRun", True, ["status"]),
    ("distillery.relevance.dev/v1alpha1/relevanceexperiments", "RelevanceExperiment", True, ["status"]),
    ("v1/configmaps", "ConfigMap", True, []),
    ("v1/events", "Event", True, []),
    ("v1/namespaces", "Namespace", False, []),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, []),
)


def _merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new`` (None deletes a key)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old or old[k] != v:
            out[k] = _merge_patch(old.get(k), v)
    return out


class AdaptedEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the fields and behaviours kopf needs (module docstring)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._rv = itertools.count(1)
        for path, kind, namespaced, subs in RESOURCES:
            self.resources[path] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, subresources=set(subs),
                                                      verbs={"get", "list", "watch", "create", "patch"})

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            if not meta.get("name") and meta.get("generateName"):  # kopf's Events are named so
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = str(next(self._rv))
        elif request.resource is not None and request.action == enums.action.UPDATE and request.name:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                current = self.objects[key].raw
                data = request.data
                if isinstance(data, list):  # JSON patch
                    try:
                        new = jsonpatch.apply_patch(current, data)
                    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                        raise k8s.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
                    data = _merge_patch(current, new)
                data = dict(data or {})
                data["metadata"] = dict(data.get("metadata") or {}, resourceVersion=str(next(self._rv)))
                object.__setattr__(request, "data", data)
        return await super()._handle(request)

    async def _serve_version(self, request: rendering.Request) -> Any:
        doc = await super()._serve_version(request)
        if isinstance(doc, dict) and doc.get("groupVersion") == "/v1":
            doc["groupVersion"] = "v1"
        return doc

    async def _serve_list(self, request: rendering.Request) -> Any:
        doc = await super()._serve_list(request)
        if isinstance(doc, dict) and request.resource is not None:
            info = self.resources[request.resource]
            group, version = request.resource.group, request.resource.version
            doc["apiVersion"] = f"{group}/{version}" if group else version
            doc["kind"] = f"{info.kind}List"
            doc["metadata"] = {"resourceVersion": str(next(self._rv))}
        return doc


class Cluster:
    """The emulator served on 127.0.0.1 from a background thread; the test talks to it over HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with AdaptedEmulator() as handler, kmock.Server(handler) as server:
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Cluster:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock",
                                                       "namespace": "relevance-distillery"}}],
        }
