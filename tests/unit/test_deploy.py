"""docker-compose.yml and deploy/ agree with the code: no Docker engine runs here, so what
`docker compose up` would start is checked against the CLI and the ACL file instead.
(`.ci/run` also runs `docker compose config` where the client exists.)"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs in the lock; a test's only use
from click.testing import CliRunner

from dateline.cli.main import cli

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = ["ingest", "validator", "projector", "query", "deliver"]
ACL = {
    line.split()[1]: line.split()
    for line in (ROOT / "deploy" / "users.acl").read_text().splitlines()
    if line.startswith("user ")
}


CLUSTER = [f"cluster-{i}" for i in range(1, 7)]
ONE_SHOTS = {"cluster-create", "cluster-seal"}


def test_compose_runs_redis_and_every_service_with_a_health_check() -> None:
    assert set(COMPOSE["services"]) == {
        "redis",
        "views",
        "redis-replica",
        *SERVICES,
        *CLUSTER,
        *ONE_SHOTS,
        *(f"{name}-cluster" for name in SERVICES),
        "prometheus",
    }
    for name, service in COMPOSE["services"].items():
        if name in ONE_SHOTS:  # they run once and exit
            assert service["restart"] == "no", name
        else:
            assert "healthcheck" in service, name
    redis = " ".join(COMPOSE["services"]["redis"]["command"])
    assert "--appendonly yes" in redis
    assert "--appendfsync always" in redis
    assert "--aclfile /etc/dateline/users.acl" in redis
    views = " ".join(COMPOSE["services"]["views"]["command"])
    assert "--appendonly yes --appendfsync everysec" in views
    assert "--aclfile /etc/dateline/views.acl" in views


VIEWS_ACL = {
    line.split()[1]: line.split()
    for line in (ROOT / "deploy" / "views.acl").read_text().splitlines()
    if line.startswith("user ")
}


@pytest.mark.parametrize("name", ["projector", "query"])
def test_the_read_models_store_is_given_to_who_uses_it_as_their_own_user(name: str) -> None:
    """The projector and the query service reach the store as the same users, with the
    same passwords, as the log's server; no other service goes there."""
    service = COMPOSE["services"][name]
    url = service["environment"]["DATELINE_VIEWS_URL"]
    m = re.fullmatch(r"redis://(\w+):\$\{\w+:-([\w-]+)\}@views:6379/0", url)
    assert m, url
    assert m[1] == name
    assert f"#{hashlib.sha256(m[2].encode()).hexdigest()}" in VIEWS_ACL[name]
    assert service["depends_on"]["views"]["condition"] == "service_healthy"
    others = [s for s in SERVICES if s not in ("projector", "query")]
    assert not [s for s in others if "DATELINE_VIEWS_URL" in COMPOSE["services"][s]["environment"]]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_command_is_a_real_command_with_real_options(name: str) -> None:
    command = COMPOSE["services"][name]["command"]
    assert command[0] == name
    result = CliRunner().invoke(cli, [command[0], "--help"])
    assert result.exit_code == 0, result.output
    for flag in (a for a in command[1:] if a.startswith("--")):
        assert flag in result.output, f"{name}: {flag} is not an option of `dateline {name}`"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_logs_in_as_its_own_acl_user_with_the_documented_password(
    name: str,
) -> None:
    url = COMPOSE["services"][name]["environment"]["REDIS_URL"]
    m = re.fullmatch(r"redis://(\w+):\$\{\w+:-([\w-]+)\}@redis:6379/0", url)
    assert m, url
    user, password = m[1], m[2]
    assert user == name
    assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in ACL[user]


@pytest.mark.parametrize("name", ["ingest", "validator", "projector", "query"])
def test_health_checks_ask_the_port_the_service_serves(name: str) -> None:
    service = COMPOSE["services"][name]
    port = service["command"][
        service["command"].index("--port" if "--port" in service["command"] else "--probe-port") + 1
    ]
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_the_replica_profile_syncs_as_the_replication_user_with_its_password() -> None:
    replica = COMPOSE["services"]["redis-replica"]
    assert replica["profiles"] == ["replica"]
    command = " ".join(replica["command"])
    assert "--replicaof redis 6379" in command
    assert "--masteruser replication" in command
    password = re.fullmatch(r"\$\{\w+:-([\w-]+)\}", replica["command"][-1])
    assert password, replica["command"][-1]
    assert f"#{hashlib.sha256(password[1].encode()).hexdigest()}" in ACL["replication"]
    assert ACL["replication"][-4:] == ["-@all", "+psync", "+replconf", "+ping"]


def test_the_default_user_is_off_and_feeds_only_append() -> None:
    assert ACL["default"][2] == "off"
    feed = ACL["feed-wire-a"]
    assert feed[-2:] == ["-@all", "+xadd"]


def test_the_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_seal_key_goes_to_the_readers_of_the_log_and_never_to_its_appenders() -> None:
    services = COMPOSE["services"]
    keys = {n: services[n]["environment"].get("DATELINE_SEAL_KEY") for n in SERVICES}
    assert {n for n, k in keys.items() if k} == {"projector", "query", "deliver"}
    dev = keys["projector"]
    assert re.fullmatch(r"\$\{DATELINE_SEAL_KEY:-[0-9a-f]{64}\}", dev), dev
    assert keys["query"] == keys["deliver"] == dev
    # A new log is sealed by the projector as it starts: nothing appends before that.
    for name in ("ingest", "validator"):
        assert services[name]["depends_on"]["projector"]["condition"] == "service_healthy"
    # The appending users read where a partition is sealed from and call the function;
    # they cannot write the marker.
    for user in ("ingest", "validator"):
        assert "%R~dateline:{p*}:seal" in ACL[user] and "+fcall" in ACL[user]
        assert "~dateline:{p*}:seal" not in ACL[user]


def test_the_cluster_profile_forms_seals_and_runs_every_service_on_a_cluster() -> None:
    services = COMPOSE["services"]
    profiled = {n for n, svc in services.items() if svc.get("profiles") == ["cluster"]}
    on_it = {f"{s}-cluster" for s in ("ingest", "validator", "projector", "query", "deliver")}
    assert profiled == {*CLUSTER, *ONE_SHOTS, *on_it}
    for name in CLUSTER:
        node = services[name]
        assert node["hostname"] == name  # what it announces to clients
        command = " ".join(node["command"])
        for setting in ("--cluster-enabled yes", "--appendfsync always", "--masterauth"):
            assert setting in command, (name, setting)
        assert node["volumes"] == [f"{name}-data:/data"]
        assert f"{name}-data" in COMPOSE["volumes"]
    create = services["cluster-create"]
    assert set(create["depends_on"]) == set(CLUSTER)
    script = create["command"][0]
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert "cluster_state:ok" in script  # a formed cluster is left as it is
    # The seal and the ingest are real commands, run one after the other.
    seal, ingest = services["cluster-seal"], services["ingest-cluster"]
    assert seal["depends_on"] == {"cluster-create": {"condition": "service_completed_successfully"}}
    assert ingest["depends_on"] == {"cluster-seal": {"condition": "service_completed_successfully"}}
    for service in (seal, *(services[name] for name in sorted(on_it))):
        result = CliRunner().invoke(cli, [service["command"][0], "--help"])
        assert result.exit_code == 0, result.output
        assert service["environment"]["REDIS_URL"].endswith("@cluster-1:6379/0")
    # Every service of the profile's starts once the log is sealed (the query after the
    # projector, which starts after it).
    for name in on_it - {"query-cluster"}:
        assert services[name]["depends_on"] == {
            "cluster-seal": {"condition": "service_completed_successfully"}
        }, name
    readers = ("projector-cluster", "query-cluster", "deliver-cluster")
    for name in readers:  # they open sealed records
        assert (
            services[name]["environment"]["DATELINE_SEAL_KEY"]
            == seal["environment"]["DATELINE_SEAL_KEY"]
        )
    assert (
        seal["environment"]["DATELINE_SEAL_KEY"]
        == services["projector"]["environment"]["DATELINE_SEAL_KEY"]
    )
    assert "DATELINE_SEAL_KEY" not in ingest["environment"]
    port = ingest["command"][ingest["command"].index("--port") + 1]
    assert f"127.0.0.1:{port}/readyz" in " ".join(ingest["healthcheck"]["test"])
