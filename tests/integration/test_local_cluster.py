"""`LocalCluster`: a Redis Cluster of embedded servers, and what dateline says on one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from dateline.store.cluster import LocalCluster, cli_binary
from dateline.store.connection import OnACluster, connect
from dateline.store.embedded import EmbeddedRedisError, stable_ports
from dateline.store.layout import Keys
from dateline.store.log import Log
from tests.e2e.processes import DATELINE
from tests.factories import encode, update


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), 3, 1, "everysec", "s3cret") as c:
        yield c


def roles(cluster: LocalCluster) -> list[str]:
    out = []
    for node in cluster.nodes:
        client = redis.Redis.from_url(node.url)
        try:
            out.append(client.info("replication")["role"])
        finally:
            client.close()
    return out


def test_three_masters_each_with_a_replica_serve_every_slot(cluster: LocalCluster) -> None:
    assert sorted(roles(cluster)) == ["master"] * 3 + ["slave"] * 3
    client = RedisCluster.from_url(cluster.url)
    try:
        keys = [f"k{i}" for i in range(30)]  # over every master
        assert len({client.keyslot(k) * 3 // 16384 for k in keys}) == 3  # type: ignore[no-untyped-call]
        for k in keys:
            client.set(k, k)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        info = client.cluster_info()
        assert (info["cluster_state"], int(info["cluster_slots_ok"])) == ("ok", 16384)
    finally:
        client.close()
    refused = redis.Redis.from_url(cluster.url.replace(":s3cret@", ":wrong@"))
    with pytest.raises(redis.AuthenticationError):
        refused.ping()  # every node requires the password


def test_started_again_on_its_directory_the_same_cluster_comes_back(tmp_path: Path) -> None:
    first = LocalCluster(tmp_path, 3, 0, "always")
    with first:
        ports = [n.port for n in first.nodes]
        client = RedisCluster.from_url(first.url)
        client.set("kept", "yes")
        client.close()
    with LocalCluster(tmp_path, 3, 0, "always") as again:  # not created anew: it rejoins
        assert [n.port for n in again.nodes] == ports
        client = RedisCluster.from_url(again.url)
        assert client.get("kept") == b"yes"
        client.close()
    with pytest.raises(EmbeddedRedisError, match="start it with --masters 3 --replicas 0"):
        LocalCluster(tmp_path, 4, 0, "always").start()


async def test_dateline_on_a_cluster_node_says_what_it_is(cluster: LocalCluster) -> None:
    """Not a bare MOVED or CROSSSLOT: the error names a cluster and what to do."""
    log = Log(connect(cluster.url), Keys("onc", 8))
    try:
        with pytest.raises(
            OnACluster, match=r"is a Redis Cluster node.*open it with `open_client`"
        ):
            await log.append([encode(update(subject=f"s{i}")) for i in range(16)])
        answers: list[str] = []
        for i in range(12):  # one key a call: those of other nodes' slots are MOVED
            try:
                answers.append(str(await log.version(f"s{i}")))
            except OnACluster as exc:
                answers.append(str(exc))
        moved = [a for a in answers if "MovedError" in a]
        assert 0 < len(moved) < 12
        assert set(answers) - set(moved) == {"0"}
    finally:
        await log.close()


def test_dateline_redis_cluster_starts_a_node_that_died_again(tmp_path: Path) -> None:
    """`dateline redis --cluster` keeps its nodes: one SIGKILLed is started again on its
    directory and port, and rejoins its shard (a dead master, as its new master's
    replica), so the cluster is whole again without anyone's hand."""
    env = {**os.environ, "DATELINE_DATA_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    err = (tmp_path / "stderr").open("w+b")
    proc = subprocess.Popen(
        [str(DATELINE), "redis", "--cluster"], env=env, stdout=subprocess.PIPE, stderr=err
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        victim = redis.Redis.from_url(url)  # the first master's node
        pid = int(victim.info("server")["process_id"])
        victim.close()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        whole = False
        while time.monotonic() < deadline and not whole:
            time.sleep(0.2)
            whole = _whole(url)
        assert whole, "the cluster was not whole again within 30 s"
        err.seek(0)
        assert b"exited (-9); started it again" in err.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        err.close()


def _whole(url: str) -> bool:
    """Every slot served, and 3 masters and 3 linked replicas."""
    try:
        client = RedisCluster.from_url(url)
        try:
            info = client.cluster_info()
            nodes = client.cluster_nodes()
        finally:
            client.close()
    except (redis.RedisError, RedisClusterException):  # the node it asks is still down
        return False
    flags = [str(n["flags"]) for n in nodes.values()]
    masters = sum("master" in f and "fail" not in f for f in flags)
    replicas = sum("slave" in f and "fail" not in f for f in flags)
    return info["cluster_state"] == "ok" and (masters, replicas) == (3, 3)


def test_a_node_that_cannot_start_again_is_tried_again(tmp_path: Path) -> None:
    """Its port taken meanwhile: the restart fails and says why, the other nodes go on,
    and the next try, once the port is free, starts it."""
    with LocalCluster(tmp_path, 3, 1, "everysec", None) as nodes:
        victim = nodes.nodes[-1]
        assert victim.process is not None and victim.rewrites is not None
        # This process's own connection to the node (its AOF watch) would leave the
        # port in TIME_WAIT when the node dies with it open, and the port not ours to take.
        victim.rewrites.stop()
        victim.process.kill()  # a crash (`kill()` forgets the process: not one to restart)
        victim.process.wait()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", victim.port))  # bound, not listening: no answers
        try:
            [(port, _, failed)] = nodes.restart_exited()
            assert port == victim.port and failed is not None
            assert victim.exited() is not None  # exited again: the next call tries it
        finally:
            squatter.close()
        [(port, _, failed)] = nodes.restart_exited()
        assert (port, failed) == (victim.port, None)
        assert victim.exited() is None
        nodes.wait_ready(30.0)


def test_a_new_cluster_whose_port_was_taken_starts_on_others(tmp_path: Path) -> None:
    """Ports chosen free can be taken before the nodes bind them (seen once in CI, a
    failover test's node exited at start): a cluster not formed yet takes others, one
    formed says which node did not start, and why, from its log."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    try:
        layout = {"masters": 3, "replicas": 0, "ports": [taken, *stable_ports(5)]}
        (tmp_path / "cluster.json").write_text(json.dumps(layout))
        with LocalCluster(tmp_path, 3, 0, "always") as nodes:
            ports = [n.port for n in nodes.nodes]
            assert taken not in ports
            assert not (tmp_path / f"node-{taken}").exists()  # the try that failed, gone
        formed = json.loads((tmp_path / "cluster.json").read_text())["ports"]
        assert formed[::2] == ports
        squatter.close()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", ports[1]))
        with pytest.raises(EmbeddedRedisError, match=r"(?s)exited with 1.*in use"):
            LocalCluster(tmp_path, 3, 0, "always").start()
        assert json.loads((tmp_path / "cluster.json").read_text())["ports"] == formed
    finally:
        squatter.close()


class _HalfCreated(LocalCluster):
    """As `valkey-cli --cluster create` can leave a cluster (seen once in CI): every
    node met, but the would-be replicas still masters without slots."""

    def _create(self) -> None:
        masters = self.nodes[: self.masters]
        subprocess.run(
            [
                str(cli_binary()),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in masters),
                "--cluster-yes",
            ],
            capture_output=True,
            check=True,
        )
        both = json.loads(self.layout_file.read_text())["ports"]
        bus_port = dict(zip(both[::2], both[1::2], strict=True))
        client = redis.Redis.from_url(masters[0].url)
        try:
            for node in self.nodes[self.masters :]:
                client.execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "MEET", "127.0.0.1", node.port, bus_port[node.port]
                )
        finally:
            client.close()


def test_nodes_left_masters_without_slots_at_creation_become_replicas(tmp_path: Path) -> None:
    with _HalfCreated(tmp_path, 3, 1, "everysec", None) as nodes:
        assert sorted(roles(nodes)) == ["master"] * 3 + ["slave"] * 3
        client = RedisCluster.from_url(nodes.url)
        try:
            masters = {
                n["node_id"] for n in client.cluster_nodes().values() if "master" in str(n["flags"])
            }
            replicas_of = [
                n["master_id"]
                for n in client.cluster_nodes().values()
                if "slave" in str(n["flags"])
            ]
        finally:
            client.close()
        assert sorted(replicas_of) == sorted(masters)  # one each
