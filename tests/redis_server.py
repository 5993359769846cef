"""Real Redis servers for the ``anyway.redis`` tests (no fake in their place).

* :class:`RedisServer`: one ``redis-server`` on a free 127.0.0.1 port, in a
  temporary directory, without persistence (``--save "" --appendonly no``);
  stopped by PID, and restartable on the same port (the outage tests).
* :class:`RedisClusterServers`: three such servers in cluster mode, joined by
  ``redis-cli --cluster create ... --cluster-replicas 0``.

The fixtures (``redis_server``, ``redis_cluster``: session-scoped;
``own_redis_server``: one per test, for tests that stop it) are imported by
the test modules: ``from redis_server import redis_server``. They skip when
``redis-server`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_TIMEOUT = 10.0

# coredis 6.9 creates three anyio memory object streams per connection and
# does not close them when a connection fails or a Cluster client drops one
# (coredis/connection/_base.py): their __del__ warns. Not ours to close; the
# Redis test modules ignore exactly that warning.
# The garbage is collected at the end of each such test (the conftest's
# collect_coredis_streams fixture), so that its warning never lands in a later,
# unrelated test that does not ignore it.
COREDIS_UNCLOSED_STREAMS = (
    pytest.mark.filterwarnings(
        r"ignore:Unclosed <MemoryObject(Send|Receive)Stream:ResourceWarning"
    ),
    pytest.mark.usefixtures("collect_coredis_streams"),
)


def _free_port(*, with_bus: bool = False) -> int:
    """A TCP port free on 127.0.0.1 (and, for a cluster node, its bus port +10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not with_bus:
            return int(port)
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port pair found")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _command(port: int, *args: str) -> bytes:
    """Send one command with redis-cli-free RESP and return the raw reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(b"".join(parts))
        return sock.recv(65536)


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1. ``url`` for coredis."""

    def __init__(self, *, port: int | None = None, cluster: bool = False) -> None:
        self.port = port if port is not None else _free_port(with_bus=cluster)
        self.cluster = cluster
        self._dir = Path(tempfile.mkdtemp(prefix="anyway-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("already running")
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self._dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self._dir / "redis.log"),
        ]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self._dir / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while not _ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5.0)

    def restart(self) -> None:
        """Start again on the same port (the data is gone: no persistence)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def command(self, *args: str) -> bytes:
        """A raw command, outside any event loop (e.g. ``SCRIPT FLUSH``)."""
        return _command(self.port, *args)


class RedisClusterServers:
    """Three cluster-mode servers joined into one cluster (3 masters, no replicas)."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        try:
            for _ in range(3):
                node = RedisServer(cluster=True)
                self.nodes.append(node)
                node.start()
            subprocess.run(
                [
                    shutil.which("redis-cli") or "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            deadline = time.monotonic() + _START_TIMEOUT
            while not all(b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.02)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes.clear()


def _require_redis() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip(
            "redis-server/redis-cli not installed (apt-get install redis-server; .ci/run does it)"
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server shared by the session's tests (never stopped by them)."""
    _require_redis()
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A Redis server for one test, which may stop and restart it."""
    _require_redis()
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A three-master Redis Cluster shared by the session's cluster tests."""
    _require_redis()
    cluster = RedisClusterServers()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


class Recorder:
    """A stand-in for a coredis client that forwards the two calls the limiters
    make (``evalsha``, ``eval``) and records the server time (us) of every
    grant the GCRA script answers with: the grant times the tests check.

    *delay*: seconds to hold each reply (after the server has answered), to
    cancel a caller while its grant is in flight."""

    def __init__(self, client: object, *, delay: float = 0.0) -> None:
        self.client = client
        self.grants: list[int] = []
        self.calls = 0
        self.delay = delay

    def _record(self, reply: object) -> None:
        self.calls += 1
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == 1:
            self.grants.append(int(reply[2]))

    async def evalsha(self, sha: str, keys: object, args: object) -> object:
        reply = await self.client.evalsha(sha, keys, args)  # type: ignore[attr-defined]
        self._record(reply)
        if self.delay:
            import anyio

            await anyio.sleep(self.delay)
        return reply

    async def eval(self, script: str, keys: object, args: object) -> object:
        reply = await self.client.eval(script, keys, args)  # type: ignore[attr-defined]
        self._record(reply)
        return reply


def worst_window(times_us: list[int], per: float) -> int:
    """The most grants in any half-open window ``[t, t + per)`` (times in us)."""
    times = sorted(times_us)
    width = round(per * 1_000_000)
    worst = 0
    j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + width:
            j += 1
        worst = max(worst, j - i)
    return worst
