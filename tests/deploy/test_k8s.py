"""deploy/k8s against the Kubernetes JSON schemas that kubernetes-validate bundles.

Strict mode: an unknown field (a typo) is an error, as `kubectl apply --validate=strict`
would say. Checked against the oldest and newest minor versions we support.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.deploy_files import K8S, k8s_manifest_paths, k8s_objects, load_yaml

KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


def _objects(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{obj['kind']}/{obj['metadata']['name']}", obj) for obj in documents]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    objects = [obj for _, obj in k8s_objects()]
    assert objects
    for name, obj in _objects(objects):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name} (Kubernetes {version}): {error.message} at {list(error.path)}")


def test_strict_validation_rejects_a_misspelt_field() -> None:
    api = next(obj for _, obj in k8s_objects() if obj["kind"] == "Deployment")
    broken = copy.deepcopy(api)
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [p.name for p in k8s_manifest_paths()]


def test_kustomize_build_renders_valid_objects() -> None:
    """`kubectl kustomize` (kustomize built into kubectl) renders the kustomization; the
    rendered objects (namespace and image rewritten) pass the schemas too."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (kustomize is built into it); no registry has it")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    objects = [obj for obj in yaml.safe_load_all(rendered) if obj]
    assert len(objects) == len(k8s_objects())
    for name, obj in _objects(objects):
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "headwater", name
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for _, obj in k8s_objects() if obj["kind"] == kind}


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_services_and_autoscaler_point_at_real_workloads() -> None:
    deployments = _by_kind("Deployment")
    workloads = [*deployments.values(), *_by_kind("StatefulSet").values()]
    for name, service in _by_kind("Service").items():
        selector = service["spec"]["selector"]
        matches = [
            d
            for d in workloads
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"Service {name} selects no pods"
    (hpa,) = _by_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    assert hpa["spec"]["minReplicas"] >= 2


def test_referenced_configmaps_secrets_and_claims_exist() -> None:
    config_maps, secrets = _by_kind("ConfigMap"), _by_kind("Secret")
    claims = _by_kind("PersistentVolumeClaim")
    for _, obj in k8s_objects():
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


@pytest.mark.parametrize("name", ["llm-small", "llm-large"])
def test_llm_servers_run_on_gpu_nodes(name: str) -> None:
    pod = _pod(_by_kind("Deployment")[name])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] >= 1
    served = next(a for a in container["args"] if a.startswith("--served-model-name="))
    config = _by_kind("ConfigMap")["headwater-config"]["data"]
    tier = name.removeprefix("llm-").upper()
    assert config[f"HEADWATER_LLM_{tier}_MODEL"] == served.split("=", 1)[1]
    assert config[f"HEADWATER_LLM_{tier}_URL"] == f"http://{name}:8000/v1"


def test_ingest_replicas_do_not_exceed_topic_partitions() -> None:
    """A consumer group gives each partition to one consumer: extra workers idle."""
    partitions = int(
        _by_kind("ConfigMap")["headwater-config"]["data"]["HEADWATER_TOPIC_PARTITIONS"]
    )
    assert _by_kind("Deployment")["ingest"]["spec"]["replicas"] <= partitions


def test_headwater_pods_run_as_non_root_with_read_only_root() -> None:
    for name in ("api", "ingest"):
        pod = _pod(_by_kind("Deployment")[name])
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_external_services_are_documented_examples() -> None:
    """Strimzi's CRs and Qdrant's Helm values are outside the kustomization (they need
    CRDs or Helm); they parse, and the ConfigMap points at the Services they create."""
    strimzi = list(yaml.safe_load_all((K8S / "external" / "strimzi-kafka.yaml").read_text()))
    kafka = next(obj for obj in strimzi if obj["kind"] == "Kafka")
    qdrant = load_yaml(K8S / "external" / "qdrant-values.yaml")
    config = _by_kind("ConfigMap")["headwater-config"]["data"]
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap.kafka.svc:9092"
    assert config["HEADWATER_KAFKA_BOOTSTRAP"] == bootstrap
    assert config["HEADWATER_QDRANT_URL"] == "http://qdrant.qdrant.svc:6333"
    assert qdrant["config"]["cluster"]["enabled"] is True


def test_redis_runs_the_local_config_and_only_the_api_reaches_it() -> None:
    """The shared store: deploy/redis/redis.conf's settings (but on the pod network),
    at the URL the API is given, behind a policy that admits the API pods alone."""
    (redis,) = _by_kind("StatefulSet").values()
    (container,) = _pod(redis)["containers"]
    args = container["args"]
    given = dict(zip(args[::2], args[1::2], strict=True))
    local = {}
    for line in (K8S.parent / "redis" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            local[f"--{key}"] = value.strip('"')
    network = {"--bind", "--protected-mode", "--daemonize"}
    assert {k: v for k, v in local.items() if k not in network} == {
        k: v for k, v in given.items() if k not in network | {"--dir"}
    }
    assert given["--bind"] == "0.0.0.0"
    service = _by_kind("Service")[redis["spec"]["serviceName"]]
    port = service["spec"]["ports"][0]["port"]
    config = _by_kind("ConfigMap")["headwater-config"]["data"]
    assert config["HEADWATER_REDIS_URL"] == f"redis://{service['metadata']['name']}:{port}/0"
    (policy,) = _by_kind("NetworkPolicy").values()
    api_labels = _pod_labels(_by_kind("Deployment")["api"])
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= api_labels.items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= _pod_labels(redis).items()


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels
