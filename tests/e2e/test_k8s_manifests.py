"""deploy/k8s/: every document valid against the Kubernetes schema (offline, the schemas the
``kubernetes-validate`` package ships), and in step with docker-compose.yml: the same images,
commands and setting names, the migration as the compose file's ``migrate`` command."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import CI
from tests.e2e.workers import ROOT

K8S = ROOT / "deploy" / "k8s"
# the oldest Kubernetes these manifests are for, and the newest the package knows
VERSIONS = ("1.28", "latest")


def _documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


DOCS = _documents()
BY_NAME = {(d["kind"], d["metadata"]["name"]): d for d in DOCS}
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
# manifest workload -> the compose service it deploys
WORKLOADS = {
    ("Deployment", "bilevel-api"): "api",
    ("Deployment", "bilevel-worker-cpu"): "worker-cpu",
    ("Deployment", "bilevel-worker-gpu"): "worker-gpu",
    ("Job", "bilevel-migrate"): "migrate",
}


def _validator():
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate not installed (the dev extras: pip install -e .[dev])"
        if CI:
            pytest.fail(message + " (CI=true)", pytrace=False)
        pytest.skip(message)
    return kubernetes_validate


def _container(kind: str, name: str) -> dict:
    (container,) = BY_NAME[(kind, name)]["spec"]["template"]["spec"]["containers"]
    return container


def _env_names(container: dict) -> set[str]:
    """The variables a container gets: its own and every key of the objects it reads."""
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref_kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )  # fmt: skip
        obj = BY_NAME[(ref_kind, ref["name"])]  # a missing object: KeyError names it
        names |= set(obj.get("data", {})) | set(obj.get("stringData", {}))
    return names


def _settings_names() -> set[str]:
    """Every environment name the API's and the worker's settings read."""
    from pydantic import AliasChoices

    from api.settings import ApiSettings
    from worker.settings import WorkerSettings

    names = set()
    for cls in (ApiSettings, WorkerSettings):
        prefix = cls.model_config.get("env_prefix", "")
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names |= {c for c in alias.choices if isinstance(c, str)}
            else:
                names.add(f"{prefix}{field}".upper())
    return names


@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_is_valid_against_the_kubernetes_schema(version):
    kv = _validator()
    version = kv.latest_version() if version == "latest" else version
    assert len(DOCS) >= 8
    for doc in DOCS:
        try:
            kv.validate(doc, version, strict=True)  # strict: no unknown field either
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")


def test_the_validator_refuses_what_kubernetes_would():
    # the check can fail: a misspelt field and a wrong type are refused
    kv = _validator()
    bad = yaml.safe_load(yaml.safe_dump(BY_NAME[("Deployment", "bilevel-api")]))
    bad["spec"]["replica"] = 2
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.28", strict=True)
    bad = yaml.safe_load(yaml.safe_dump(BY_NAME[("Deployment", "bilevel-api")]))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.28", strict=True)


@pytest.mark.parametrize(("workload", "service"), WORKLOADS.items(), ids=WORKLOADS.values())
def test_each_workload_runs_the_compose_services_image_command_and_settings(workload, service):
    container = _container(*workload)
    compose = COMPOSE[service]
    assert container["command"] == compose["command"]
    # the same image, by name (the manifests pin a release tag where compose builds :latest)
    repo, _, tag = container["image"].partition(":")
    compose_repo, _, compose_tag = compose["image"].partition(":")
    assert repo == compose_repo
    assert tag == compose_tag if compose_tag != "latest" else tag
    assert set(compose["environment"]) <= _env_names(container)


def test_the_migration_job_runs_migrate_with_the_apis_image():
    job = BY_NAME[("Job", "bilevel-migrate")]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    container = _container("Job", "bilevel-migrate")
    assert container["command"] == ["bilevel", "migrate"] == COMPOSE["migrate"]["command"]
    assert container["image"] == _container("Deployment", "bilevel-api")["image"]
    # and it is a real command of the CLI
    from cli.main import build_parser

    args = build_parser(with_experiments=False).parse_args(container["command"][1:])
    assert callable(args.func)


def test_every_setting_is_read_by_the_service_and_secrets_stay_in_the_secret():
    known = _settings_names() | {"FORWARDED_ALLOW_IPS"}  # uvicorn's, for X-Forwarded-For
    config = BY_NAME[("ConfigMap", "bilevel-config")]["data"]
    secret = BY_NAME[("Secret", "bilevel-secrets")]["stringData"]
    for name in set(config) | set(secret):
        assert name in known, name
    for name in ("DATABASE_URL", "BILEVEL_KEY_SECRET", "BILEVEL_KEY_SECRET_PREVIOUS"):
        assert name in secret and name not in config
    for workload in WORKLOADS:
        for e in _container(*workload).get("env", []):
            assert e["name"] in known, e["name"]
            assert "SECRET" not in e["name"] and e["name"] != "DATABASE_URL"


def test_the_api_is_one_service_with_probes_on_the_health_routes():
    from api.routes.health import router

    routes = {r.path for r in router.routes}
    api = BY_NAME[("Deployment", "bilevel-api")]
    container = _container("Deployment", "bilevel-api")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(container["command"][container["command"].index("--port") + 1])
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and "/healthz" in routes
    assert probes["readinessProbe"]["path"] == "/readyz" and "/readyz" in routes
    assert all(p["port"] in ports for p in probes.values())
    service = BY_NAME[("Service", "bilevel-api")]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert api["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert api["spec"]["replicas"] >= 2


def test_gpu_workers_take_one_gpu_each_on_gpu_nodes():
    spec = BY_NAME[("Deployment", "bilevel-worker-gpu")]["spec"]["template"]["spec"]
    container = _container("Deployment", "bilevel-worker-gpu")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # the device plugin shows the pod its one GPU as device 0
    assert container["command"][-2:] == ["--gpus", "0"]
    assert spec["nodeSelector"]
    cpu = _container("Deployment", "bilevel-worker-cpu")
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    # every workload's selector matches its own pods and no other workload's
    labels = {
        w: BY_NAME[w]["spec"]["template"]["metadata"]["labels"]
        for w in WORKLOADS if w[0] == "Deployment"
    }  # fmt: skip
    for w in labels:
        selector = BY_NAME[w]["spec"]["selector"]["matchLabels"].items()
        assert [v for v, other in labels.items() if selector <= other.items()] == [w]
