"""kustomize build of each overlay → kubernetes-validate --strict, golden files, and the fields that
matter: security context, requests/limits, GPU only in the gpu overlay, secrets, probes, RBAC, images."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import GOLDEN, OVERLAYS, REPO, find

KUBE_VERSIONS = ("1.32.0", "1.37.0")


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(deployment name, pod spec, container) for every container of every Deployment."""
    out = []
    for d in docs:
        if d["kind"] == "Deployment":
            pod = d["spec"]["template"]["spec"]
            out += [(d["metadata"]["name"], pod, c) for c in pod.get("initContainers", []) + pod["containers"]]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_overlay_validates_strictly(overlay: str, version: str, rendered: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered[overlay])
    cli = Path(sys.executable).parent / "kubernetes-validate"
    out = subprocess.run([str(cli), "--strict", "-k", version, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    passed = re.findall(r"passed for resource (\S+)", out.stdout + out.stderr)
    # Every object is checked, the CRDs included (they are built-in kinds of apiextensions).
    assert len(passed) == rendered[overlay].count("\nkind: ") + rendered[overlay].startswith("kind: ")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_golden(overlay: str, rendered: dict[str, str]) -> None:
    golden = GOLDEN / f"{overlay}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered[overlay])
    assert golden.exists(), f"{golden} is missing: run with UPDATE_GOLDEN=1 once and review the diff"
    assert rendered[overlay] == golden.read_text(), (
        f"kubectl kustomize manifests/overlays/{overlay} differs from {golden.relative_to(REPO)}; "
        "if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay: str, docs: dict[str, list[dict[str, Any]]]) -> None:
    for dep, pod, c in containers(docs[overlay]):
        where = f"{overlay}: {dep}/{c['name']}"
        sc = c.get("securityContext", {})
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert "privileged" not in sc and "add" not in sc.get("capabilities", {}), where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"].get(kind, {})), f"{where}: {kind}"


def test_namespace_and_labels_set_once(docs: dict[str, list[dict[str, Any]]]) -> None:
    for d in docs["cpu-dev"]:
        kind = d["kind"]
        if kind not in ("Namespace", "CustomResourceDefinition"):
            assert d["metadata"]["namespace"] == "relevance-distillery", f"{kind}/{d['metadata']['name']}"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "relevance-distillery"


def test_gpu_only_in_gpu_overlay(docs: dict[str, list[dict[str, Any]]]) -> None:
    for overlay in OVERLAYS:
        for dep, _, c in containers(docs[overlay]):
            has_gpu = "nvidia.com/gpu" in c["resources"]["limits"]
            assert has_gpu == (overlay == "gpu" and dep == "triton"), f"{overlay}: {dep}/{c['name']}"
    pod = find(docs["gpu"], "Deployment", "triton")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" == c["resources"]["requests"]["nvidia.com/gpu"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    cpu = find(docs["cpu-dev"], "Deployment", "triton")["spec"]["template"]["spec"]
    assert "tolerations" not in cpu and "nodeSelector" not in cpu


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_reads_s3_with_secret_and_health_probes(overlay: str, docs: dict[str, list[dict[str, Any]]]) -> None:
    pod = find(docs[overlay], "Deployment", "triton")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MODEL_REPOSITORY"]["value"].startswith("s3://")
    assert "--model-repository=$(MODEL_REPOSITORY)" in c["args"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "distillery-s3", key
        assert "value" not in env[key], f"{key} must come from the Secret, never inline"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    svc = find(docs[overlay], "Service", "triton")
    assert {p["name"] for p in svc["spec"]["ports"]} == {"http", "grpc", "metrics"}
    assert pod["automountServiceAccountToken"] is False


def test_splitter_mounts_the_configmap_the_operator_writes(docs: dict[str, list[dict[str, Any]]]) -> None:
    import json

    from distillery.abtest.arms import split_from_dict
    from distillery.operator.render import SPLIT_KEY

    cm = find(docs["cpu-dev"], "ConfigMap", "distillery-splitter")
    split = split_from_dict(json.loads(cm["data"][SPLIT_KEY]), "ConfigMap distillery-splitter")
    assert split.weights == {"champion": 100.0, "challenger": 0.0}
    pod = find(docs["cpu-dev"], "Deployment", "splitter")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "distillery-splitter"
    assert find(docs["cpu-dev"], "Service", "splitter")["spec"]["ports"][0]["targetPort"] == "http"


def test_rbac_is_least_privilege(docs: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {d["kind"] for d in docs["gpu"]}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = find(docs["gpu"], "Role", "distillery-operator")
    allowed = {
        "distillery.relevance.dev": {"distillationruns", "relevanceexperiments", "distillationruns/status",
                                     "relevanceexperiments/status"},
        "": {"configmaps", "events"},
        "events.k8s.io": {"events"},
    }
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        for group in rule["apiGroups"]:
            assert set(rule["resources"]) <= allowed[group], rule
    binding = find(docs["gpu"], "RoleBinding", "distillery-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "distillery-operator",
                                    "namespace": "relevance-distillery"}]
    op = find(docs["gpu"], "Deployment", "distillery-operator")["spec"]["template"]["spec"]
    assert op["serviceAccountName"] == "distillery-operator"
    assert "--namespace=relevance-distillery" in op["containers"][0]["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_come_from_the_one_constant(overlay: str, docs: dict[str, list[dict[str, Any]]]) -> None:
    from distillery.images import image

    expected = {"distillery-operator": image("operator"), "triton": image("serving"), "splitter": image("splitter")}
    for dep, _, c in containers(docs[overlay]):
        assert c["image"] == expected[dep], f"{overlay}: {dep} runs {c['image']}, the constant says {expected[dep]}"
