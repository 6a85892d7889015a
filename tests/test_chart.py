"""The helm chart, rendered by Helm's own engine and checked against Kubernetes' schemas.

Helm comes from ``helm-python-sdk`` (Helm's Go library behind ctypes, no helm binary, no
cluster, no network); the schemas from ``kubernetes-validate`` (strict: an unknown field fails).
KEDA's and the Prometheus operator's kinds are not in those schemas: their shape is checked by
hand. Queue names are read from the worker's own constants (``contracts.wire``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from packaging.version import Version

from contracts.wire import LANES, lane_queue, queue_key
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "ovh-sms-worker"
EXAMPLE_POOLS = CHART / "examples" / "pools.yaml"

#: The three newest Kubernetes versions kubernetes-validate ships schemas for.
K8S_VERSIONS = sorted(set(all_versions()), key=Version)[-3:]

#: Kinds of custom resources (KEDA, Prometheus operator) that Kubernetes' own schemas lack.
CRD_API_GROUPS = ("keda.sh/", "monitoring.coreos.com/")

SECRET = "sms-worker-secrets"
MINIMAL = {"existingSecret": SECRET}
KEDA_REDIS = {"redis": {"address": "redis-master.redis.svc:6379", "databaseIndex": 2, "passwordKey": "REDIS_PASSWORD"}}
SENTINEL = {"addresses": "s1:26379,s2:26379,s3:26379", "masterName": "mymaster", "passwordKey": "SENTINEL_PASSWORD"}
OVH_KEYS = ["OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY", "OVH_CLIENT_ID", "OVH_CLIENT_SECRET"]


def example_pools() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(EXAMPLE_POOLS.read_text())
    return {**MINIMAL, **values}


def one_pool(**pool: Any) -> dict[str, Any]:
    return {"name": "default", "lanes": list(LANES), **pool}


#: The values matrix: each must render and validate.
CASES: dict[str, dict[str, Any]] = {
    "minimal": MINIMAL,
    "existing secret, OAuth2 and config": {
        **MINIMAL,
        "config": {"OVH_ENDPOINT": "ovh-ca", "SMS_WORKER_SERVICE_NAME": "sms-xx11111-1", "SMS_WORKER_RATE_LIMIT": 5},
    },
    "secret.create": {
        "secret": {
            "create": True,
            "values": {"REDIS_URL": "redis://redis:6379/0", "OVH_APPLICATION_KEY": "ak", "OVH_CONSUMER_KEY": "ck"},
        }
    },
    "secretsAsFiles": {**MINIMAL, "secretsAsFiles": True},
    "keda": {**MINIMAL, "pools": [one_pool(keda={"enabled": True})], "keda": KEDA_REDIS},
    "hpa": {**MINIMAL, "pools": [one_pool(autoscaling={"enabled": True, "maxReplicas": 4})]},
    "keda through Sentinel, TLS with a private CA": {
        **MINIMAL,
        "pools": [one_pool(keda={"enabled": True})],
        "keda": {"redis": {"enableTLS": True, "passwordKey": "REDIS_PASSWORD", "sentinel": SENTINEL}},
        "redis": {"caSecret": "redis-ca"},
        "inbound": {"enabled": True},
    },
    "two pools (examples/pools.yaml)": example_pools(),
    "quotas file": {**MINIMAL, "quotas": {"enabled": True, "content": "[users.marketing]\nquota = 5000\n"}},
    "serviceMonitor and networkPolicy": {
        **MINIMAL,
        "inbound": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"ports": [{"port": 443}, {"port": 6379}]}],
        },
    },
    "inbound with ingress": {
        **MINIMAL,
        "inbound": {
            "enabled": True,
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": ["sms-callbacks.example.com"],
                "tls": [{"secretName": "sms-callbacks-tls", "hosts": ["sms-callbacks.example.com"]}],
            },
        },
    },
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every manifest the chart renders for ``values`` (NOTES.txt aside)."""
    rendered = chart.render(values=values, name="sms", namespace="sms")
    manifests: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def by_name(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in of_kind(manifests, kind)}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def workers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def check_custom_resource(manifest: dict[str, Any]) -> None:
    """The shape of the CRD kinds the chart renders, by hand."""
    kind, api_version = manifest["kind"], manifest["apiVersion"]
    assert manifest["metadata"]["name"]
    if kind == "ScaledObject":
        assert api_version == "keda.sh/v1alpha1"
        spec = manifest["spec"]
        assert spec["scaleTargetRef"]["name"]
        assert spec["minReplicaCount"] >= 1
        assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
        assert spec["triggers"]
        for trigger in spec["triggers"]:
            metadata = trigger["metadata"]
            common = {"databaseIndex", "enableTLS", "listName", "listLength"}
            assert all(isinstance(value, str) for value in metadata.values()), "KEDA metadata values are strings"
            if trigger["type"] == "redis-sentinel":
                assert set(metadata) <= common | {"addresses", "sentinelMaster"}
                assert all(re.fullmatch(r"[^:/\s]+:\d+", a) for a in metadata["addresses"].split(","))
                assert metadata["sentinelMaster"]
            else:
                assert trigger["type"] == "redis"
                assert set(metadata) <= common | {"address"}
                assert re.fullmatch(r"[^:/\s]+:\d+", metadata["address"])
    elif kind == "TriggerAuthentication":
        assert api_version == "keda.sh/v1alpha1"
        for ref in manifest["spec"]["secretTargetRef"]:
            assert ref["parameter"] in {"password", "username", "sentinelPassword", "sentinelUsername", "tls", "ca"}
            assert ref["name"] and ref["key"]
    elif kind == "ServiceMonitor":
        assert api_version == "monitoring.coreos.com/v1"
        assert manifest["spec"]["selector"]["matchLabels"]
        assert all(endpoint["port"] and endpoint["path"] == "/metrics" for endpoint in manifest["spec"]["endpoints"])
    else:
        pytest.fail(f"unexpected custom resource {kind} {api_version}")


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
def test_renders_valid_manifests(chart: helm.Chart, values: dict[str, Any]) -> None:
    manifests = render(chart, values)
    assert workers(manifests)
    for manifest in manifests:
        if manifest["apiVersion"].startswith(CRD_API_GROUPS):
            check_custom_resource(manifest)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_bare_defaults_ask_for_the_secret(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match="set existingSecret to the name of a Secret"):
        render(chart, None)


def test_existing_secret_is_the_only_source_of_credentials(chart: helm.Chart) -> None:
    manifests = render(chart, {**MINIMAL, "inbound": {"enabled": True}})
    assert not of_kind(manifests, "Secret"), "no Secret is made when an existing one is named"
    (worker,) = workers(manifests)
    env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "REDIS_URL"}
    for key in OVH_KEYS:  # either the application keys or the OAuth2 pair: each key is optional
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key, "optional": True}
    assert "SMS_WORKER_INBOUND_TOKEN" not in env, "workers do not need the callback token"
    (inbound,) = [d for d in of_kind(manifests, "Deployment") if d not in workers(manifests)]
    inbound_env = env_of(inbound["spec"]["template"]["spec"]["containers"][0])
    token = inbound_env["SMS_WORKER_INBOUND_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": SECRET, "key": "SMS_WORKER_INBOUND_TOKEN"}, "the inbound service requires it"
    configmap = by_name(manifests, "ConfigMap")["sms-ovh-sms-worker"]
    assert not any(name in configmap["data"] for name in ["REDIS_URL", *OVH_KEYS]), "no secret in the ConfigMap"


def test_secret_create_holds_only_the_values_given(chart: helm.Chart) -> None:
    manifests = render(chart, CASES["secret.create"])
    (secret,) = of_kind(manifests, "Secret")
    assert secret["stringData"] == {
        "REDIS_URL": "redis://redis:6379/0",
        "OVH_APPLICATION_KEY": "ak",
        "OVH_CONSUMER_KEY": "ck",
    }
    (worker,) = workers(manifests)
    ref = env_of(worker["spec"]["template"]["spec"]["containers"][0])["REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert "checksum/secret" in worker["spec"]["template"]["metadata"]["annotations"], "pods roll when it changes"


def test_secrets_as_files_are_read_by_the_worker_settings(chart: helm.Chart, tmp_path: Path) -> None:
    manifests = render(chart, CASES["secretsAsFiles"])
    (worker,) = workers(manifests)
    pod = worker["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(container)
    assert not [e for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})], "no secret in the environment"
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == SECRET
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert env["SMS_WORKER_SECRETS_DIR"]["value"] == mount["mountPath"]
    # Given the Secret's keys as files, as Kubernetes mounts them, the worker's settings read them.
    (tmp_path / "REDIS_URL").write_text("redis://redis:6379/3")
    assert Settings(_secrets_dir=tmp_path).redis_url == "redis://redis:6379/3"


def test_lane_names_in_the_schema_are_the_worker_lanes(chart: helm.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    lanes = schema["properties"]["pools"]["items"]["properties"]["lanes"]["items"]["enum"]
    assert lanes == list(LANES)


def test_each_pool_scales_on_exactly_its_lanes_queues(chart: helm.Chart) -> None:
    values = example_pools()
    manifests = render(chart, values)
    scaled = by_name(manifests, "ScaledObject")
    deployments = {d["metadata"]["labels"]["ovh-sms-worker/pool"]: d for d in workers(manifests)}
    assert sorted(deployments) == sorted(pool["name"] for pool in values["pools"])
    for pool in values["pools"]:
        deployment = deployments[pool["name"]]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert env_of(container)["SMS_WORKER_LANES"]["value"] == ",".join(pool["lanes"])
        scaled_object = scaled[deployment["metadata"]["name"]]
        assert scaled_object["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        keys = [trigger["metadata"]["listName"] for trigger in scaled_object["spec"]["triggers"]]
        assert keys == [queue_key(lane_queue(lane)) for lane in pool["lanes"]]
        for trigger in scaled_object["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == values["keda"]["redis"]["address"]
            assert trigger["authenticationRef"]["name"] == "sms-ovh-sms-worker-redis"
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": SECRET, "key": "REDIS_PASSWORD"}]


def test_keda_without_a_password_needs_no_trigger_authentication(chart: helm.Chart) -> None:
    keda = {"redis": {"address": "redis:6379"}}
    manifests = render(chart, {**MINIMAL, "pools": [one_pool(keda={"enabled": True})], "keda": keda})
    assert not of_kind(manifests, "TriggerAuthentication")
    (scaled_object,) = of_kind(manifests, "ScaledObject")
    assert all("authenticationRef" not in trigger for trigger in scaled_object["spec"]["triggers"])
    assert len(scaled_object["spec"]["triggers"]) == len(LANES)


@pytest.mark.parametrize("case", ["keda", "hpa", "two pools (examples/pools.yaml)"])
def test_no_replicas_in_a_deployment_an_autoscaler_drives(chart: helm.Chart, case: str) -> None:
    manifests = render(chart, CASES[case])
    targets = {
        m["spec"]["scaleTargetRef"]["name"]
        for m in manifests
        if m["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}
    }
    for deployment in workers(manifests):
        assert deployment["metadata"]["name"] in targets
        assert "replicas" not in deployment["spec"]


def test_replicas_without_autoscaler(chart: helm.Chart) -> None:
    manifests = render(chart, {**MINIMAL, "pools": [one_pool(replicas=3)]})
    assert [d["spec"]["replicas"] for d in workers(manifests)] == [3]
    assert not [m for m in manifests if m["kind"] in {"ScaledObject", "HorizontalPodAutoscaler"}]


def test_hpa_on_cpu(chart: helm.Chart) -> None:
    (hpa,) = of_kind(render(chart, CASES["hpa"]), "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["maxReplicas"] == 4
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]


REFUSED = {
    "keda and hpa on one pool": (
        {"pools": [one_pool(keda={"enabled": True}, autoscaling={"enabled": True})], "keda": KEDA_REDIS},
        "autoscaling.enabled and keda.enabled are both true; choose one",
    ),
    "keda down to zero": (
        {"pools": [one_pool(keda={"enabled": True, "minReplicaCount": 0})], "keda": KEDA_REDIS},
        "keda.minReplicaCount must be at least 1: a pool scaled to zero strands",
    ),
    "keda without a Redis address": (
        {"pools": [one_pool(keda={"enabled": True})]},
        r"keda.enabled needs keda.redis.address",
    ),
    "keda through Sentinel without the primary's name": (
        {"pools": [one_pool(keda={"enabled": True})], "keda": {"redis": {"sentinel": {"addresses": "s1:26379"}}}},
        r"keda.redis.sentinel.addresses needs keda.redis.sentinel.masterName",
    ),
    "two pools of one name": (
        {"pools": [one_pool(lanes=["high"]), one_pool(lanes=["low"])]},
        'the name "default" is used twice',
    ),
    "secret.create without REDIS_URL": (
        {"existingSecret": "", "secret": {"create": True}},
        "secret.values.REDIS_URL is empty",
    ),
    "ingress without hosts": (
        {"inbound": {"enabled": True, "ingress": {"enabled": True}}},
        "inbound.ingress.enabled needs inbound.ingress.hosts",
    ),
    "quotas without content": ({"quotas": {"enabled": True}}, "quotas.content is empty"),
}


@pytest.mark.parametrize(("values", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_with_a_clear_message(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, {**MINIMAL, **values})


SCHEMA_ERRORS = {
    "typo": ({"drainSecond": 30}, "additional properties 'drainSecond' not allowed"),
    "typo in a pool": ({"pools": [one_pool(replica=2)]}, "additional properties 'replica' not allowed"),
    "bad lane": ({"pools": [one_pool(lanes=["urgent"])]}, "value must be one of 'high', 'medium', 'low', 'veryLow'"),
    "wrong type": ({"metricsPort": "9300"}, "got string, want integer"),
    "variable the chart sets": ({"config": {"SMS_WORKER_LANES": "high"}}, "invalid propertyName 'SMS_WORKER_LANES'"),
    "secret in a pool's env": ({"pools": [one_pool(env={"REDIS_URL": "x"})]}, "invalid propertyName 'REDIS_URL'"),
    "public URL without its scheme": ({"inbound": {"enabled": True, "publicUrl": "sms.example.com"}}, "publicUrl"),
}


@pytest.mark.parametrize(("values", "message"), SCHEMA_ERRORS.values(), ids=SCHEMA_ERRORS.keys())
def test_schema_refuses_bad_values(chart: helm.Chart, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(chart, {**MINIMAL, **values})


@pytest.mark.parametrize("case", ["minimal", "inbound with ingress", "two pools (examples/pools.yaml)"])
def test_pods_run_non_root_on_a_read_only_filesystem(chart: helm.Chart, case: str) -> None:
    for deployment in of_kind(render(chart, CASES[case]), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


@pytest.mark.parametrize("drain", [20, 45])
def test_grace_period_outlasts_the_drain(chart: helm.Chart, drain: int) -> None:
    for deployment in workers(render(chart, {**MINIMAL, "drainSeconds": drain})):
        pod = deployment["spec"]["template"]["spec"]
        assert env_of(pod["containers"][0])["SMS_WORKER_DRAIN_S"]["value"] == str(drain)
        assert pod["terminationGracePeriodSeconds"] > drain


def test_worker_env_and_probes(chart: helm.Chart) -> None:
    (worker,) = workers(render(chart, MINIMAL))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert container["args"] == ["run"]
    assert env["SMS_WORKER_LANES"]["value"] == ",".join(LANES)
    assert env["SMS_WORKER_METRICS_PORT"]["value"] == "9300"
    assert env["SMS_WORKER_LOG_FORMAT"]["value"] == "json"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9300, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["envFrom"] == [{"configMapRef": {"name": "sms-ovh-sms-worker"}}]


def test_quotas_file_is_mounted_where_the_worker_looks(chart: helm.Chart) -> None:
    manifests = render(chart, CASES["quotas file"])
    quotas = by_name(manifests, "ConfigMap")["sms-ovh-sms-worker-quotas"]
    assert quotas["data"]["quotas.toml"] == "[users.marketing]\nquota = 5000\n"
    (worker,) = workers(manifests)
    container = worker["spec"]["template"]["spec"]["containers"][0]
    path = env_of(container)["SMS_WORKER_QUOTAS_FILE"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    assert mount["subPath"] == "quotas.toml" and mount["readOnly"] is True


def test_inbound_service_and_its_ingress(chart: helm.Chart) -> None:
    manifests = render(chart, CASES["inbound with ingress"])
    inbound = by_name(manifests, "Deployment")["sms-ovh-sms-worker-inbound"]
    container = inbound["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert container["args"] == ["inbound"]
    assert (env["SMS_WORKER_INBOUND_HOST"]["value"], env["SMS_WORKER_INBOUND_PORT"]["value"]) == ("0.0.0.0", "8090")
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = by_name(manifests, "Service")["sms-ovh-sms-worker-inbound"]
    assert service["spec"]["selector"] == inbound["spec"]["selector"]["matchLabels"]
    (ingress,) = of_kind(manifests, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/ovh/", "Prefix")], "only the callbacks are public"
    assert paths[0]["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert {pdb["metadata"]["name"] for pdb in of_kind(manifests, "PodDisruptionBudget")} == {
        "sms-ovh-sms-worker-default",
        "sms-ovh-sms-worker-inbound",
    }


@pytest.mark.parametrize(
    ("inbound", "url"),
    [
        (CASES["inbound with ingress"]["inbound"], "https://sms-callbacks.example.com"),
        ({"enabled": True, "publicUrl": "https://sms.example.com:8443/"}, "https://sms.example.com:8443"),
    ],
    ids=["the ingress host", "inbound.publicUrl"],
)
def test_workers_serve_bulk_documents_under_the_inbound_public_url(
    chart: helm.Chart, inbound: dict[str, Any], url: str
) -> None:
    """A bulk campaign's receivers document is served at <public URL>/ovh/<token>/receivers/...:
    the workers that hand OVH that URL need both, or bulk mode cannot work on Kubernetes."""
    (worker,) = workers(render(chart, {**MINIMAL, "inbound": inbound}))
    env = env_of(worker["spec"]["template"]["spec"]["containers"][0])
    assert env["SMS_WORKER_INBOUND_PUBLIC_URL"]["value"] == url
    assert env["SMS_WORKER_INBOUND_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": SECRET,
        "key": "SMS_WORKER_INBOUND_TOKEN",
    }


def test_a_disruption_budget_per_pool(chart: helm.Chart) -> None:
    manifests = render(chart, example_pools())
    budgets = {pdb["metadata"]["name"]: pdb for pdb in of_kind(manifests, "PodDisruptionBudget")}
    for deployment in workers(manifests):
        budget = budgets[deployment["metadata"]["name"]]
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_service_monitors_scrape_ports_that_exist(chart: helm.Chart) -> None:
    manifests = render(chart, CASES["serviceMonitor and networkPolicy"])
    services = of_kind(manifests, "Service")
    for monitor in of_kind(manifests, "ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        port_names = {port["name"] for port in service["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
    policies = by_name(manifests, "NetworkPolicy")
    assert policies["sms-ovh-sms-worker-worker"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policies["sms-ovh-sms-worker-worker"]["spec"]["ingress"][0]["ports"] == [
        {"port": "metrics", "protocol": "TCP"}
    ]


@pytest.mark.parametrize(
    "values", [MINIMAL, example_pools(), CASES["inbound with ingress"]], ids=["minimal", "pools", "inbound"]
)
def test_helm_lint_strict(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def _schema_paths(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, sub in schema.get("properties", {}).items():
        yield (*path, key)
        yield from _schema_paths(sub, (*path, key))
    if "items" in schema:
        yield from _schema_paths(schema["items"], (*path, "[]"))


_KEY = re.compile(r"^(\s*)(- )?([A-Za-z_][A-Za-z0-9_]*):")


def test_every_value_is_commented(chart: helm.Chart) -> None:
    """values.yaml: each chart key (not the free-form Kubernetes objects inside) has a comment."""
    assert chart.schema is not None
    known = set(_schema_paths(chart.schema))
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, tuple[str, ...]]] = []
    uncommented = []
    for number, line in enumerate(lines):
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ()
        if match[2]:  # "- key:" opens a list item: its keys sit 2 columns further in
            parent = (*parent, "[]")
            stack.append((indent + 1, parent))
            indent += 2
        path = (*parent, match[3])
        stack.append((indent, path))
        previous = next((lines[i].strip() for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if path in known and not (previous.startswith("#") or " # " in line):
            uncommented.append(".".join(path))
    assert uncommented == []


def test_keda_through_sentinel_and_the_redis_ca_in_every_pod(chart: helm.Chart) -> None:
    manifests = render(chart, CASES["keda through Sentinel, TLS with a private CA"])
    (scaled_object,) = of_kind(manifests, "ScaledObject")
    triggers = scaled_object["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["redis-sentinel"] * len(LANES)
    assert [t["metadata"]["listName"] for t in triggers] == [queue_key(lane_queue(lane)) for lane in LANES]
    for trigger in triggers:
        assert (trigger["metadata"]["addresses"], trigger["metadata"]["sentinelMaster"]) == (
            SENTINEL["addresses"],
            "mymaster",
        )
        assert "enableTLS" not in trigger["metadata"], "KEDA takes a CA only as tls + ca, never with enableTLS"
    (auth,) = of_kind(manifests, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": SECRET, "key": "REDIS_PASSWORD"},
        {"parameter": "sentinelPassword", "name": SECRET, "key": "SENTINEL_PASSWORD"},
        {"parameter": "tls", "name": "sms-ovh-sms-worker-keda-tls", "key": "tls"},
        {"parameter": "ca", "name": "redis-ca", "key": "ca.crt"},
    ]
    (tls,) = [m for m in of_kind(manifests, "Secret") if m["metadata"]["name"] == "sms-ovh-sms-worker-keda-tls"]
    assert tls["stringData"] == {"tls": "enable"}
    # The CA is mounted where REDIS_URL's ssl_ca_certs points, in the workers and the inbound service
    deployments = of_kind(manifests, "Deployment")
    assert len(deployments) == 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "redis-ca"]
        assert volume["secret"]["secretName"] == "redis-ca"
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "redis-ca"]
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/sms-worker/redis-ca", True)
