"""A real Kafka broker for development and tests, provisioned by the project itself.

Resolution order (:func:`resolve_bootstrap`): ``FLOWLEDGER_KAFKA_BOOTSTRAP``, then a Docker
engine (testcontainers, image apache/kafka), then a local single-node KRaft broker whose jars Maven
resolves from Maven Central into a cache outside the repository, run on the machine's JDK 17.
Production sets ``FLOWLEDGER_KAFKA_BOOTSTRAP`` and never starts any of these; the topics the
service declares on any broker are ``services/infra/kafka_topics.py``'s.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.dev_provisioning.docker_engine import docker_available
from services.infra.kafka_topics import KafkaTopicsError, declare_topics

_KAFKA_DIR = Path(__file__).parent / "kafka_broker"
_POM = _KAFKA_DIR / "pom.xml"
_LOG4J2 = _KAFKA_DIR / "log4j2.properties"

# The pom is the single place the version is pinned, so the jars and the Docker image cannot drift.
_PINNED = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _POM.read_text())
if _PINNED is None:
    raise RuntimeError(f"no <kafka.version> in {_POM}")
KAFKA_VERSION = _PINNED[1]
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"

BOOTSTRAP_ENV = "FLOWLEDGER_KAFKA_BOOTSTRAP"
CACHE_ENV = "FLOWLEDGER_CACHE_DIR"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class KafkaProvisioningError(RuntimeError):
    """Kafka could not be had; the message is one line saying what to install or what failed."""


@dataclass
class LocalBroker:
    bootstrap: str
    pid: int
    state_dir: Path


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flowledger"


# --- tools ---------------------------------------------------------------------------------------


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise KafkaProvisioningError(
            "java not found: install a JDK 17 or newer (e.g. `apt-get install"
            " openjdk-17-jdk-headless`) and put it on PATH or set JAVA_HOME"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)', out)
    if not found or int(found[1]) < 17:
        raise KafkaProvisioningError(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer, {java} is "
            f"{found[1] if found else 'unknown'}: install a JDK 17 (openjdk-17-jdk-headless)"
        )
    return java


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaProvisioningError(
            "mvn not found: install Apache Maven 3.8+ (e.g. `apt-get install maven`) to fetch the"
            " Kafka broker jars from Maven Central"
        )
    return mvn


# --- jars ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars() -> Path:
    """The directory holding the broker's runtime jars, resolving them with Maven on first use."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs, marker = home / "libs", home / "complete"
    # Keyed on the pom's content, so editing the pom (e.g. the logging backend) re-resolves.
    digest = hashlib.sha256(_POM.read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text() == digest:
        return libs
    with _locked(home.parent / f"{home.name}.lock"):
        if marker.is_file() and marker.read_text() == digest:  # another process finished meanwhile
            return libs
        _java()  # Maven itself needs it; fail with the clearer message
        mvn = _mvn()
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_POM, home / "pom.xml")
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log = home / "mvn.log"
        cmd = [mvn, "-B", "-q", "dependency:copy-dependencies", "-DincludeScope=runtime",
               f"-DoutputDirectory={staging}"]  # fmt: skip
        with log.open("w") as out:
            result = subprocess.run(cmd, cwd=home, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise KafkaProvisioningError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} from Maven"
                f" Central (exit {result.returncode}): {_last_error(log)} (full output: {log})"
            )
        # Swap in a complete directory only, so a crash mid-download never leaves half a classpath.
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest)
    return libs


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("[ERROR]")]
    return (errors or lines or ["no output"])[0][:300]


# --- local broker --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Orphans are reparented to PID 1, which in containers often never reaps them: a zombie is dead.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def broker_status(state_dir: Path) -> LocalBroker | None:
    state_dir = state_dir.resolve()
    try:
        pid = int((state_dir / "broker.pid").read_text())
        bootstrap = (state_dir / "bootstrap").read_text().strip()
    except (OSError, ValueError):
        return None
    # Guards against a recycled pid (e.g. after a reboot) that now belongs to another program.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and str(state_dir / "server.properties").encode() not in _read(cmdline):
        return None
    return LocalBroker(bootstrap, pid, state_dir) if _alive(pid) else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _cluster_id() -> str:
    while True:
        # Kafka's own Uuid format; a leading '-' would be read as an option by the storage tool.
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _server_properties(state_dir: Path, port: int, cport: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(state_dir / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _run_java(java: str, libs: Path, *args: str) -> list[str]:
    return [
        # 1 GiB: a whole `make test` (or `make repeat`) declares thousands of test topics on
        # one broker; at 512 MiB a long session's broker died of OutOfMemoryError.
        java, "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J2}", "-cp", f"{libs}/*", *args,
    ]  # fmt: skip


def _log_tail(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no broker log)"
    # A JVM failure ends in stack frames; the lines naming the error are the useful part.
    errors = [ln for ln in lines if re.search(r"ERROR|FATAL|Exception|Error\b", ln)]
    return " | ".join((errors or lines)[-4:])[:1500] or "(empty broker log)"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the JVM binds its server sockets: a port lingering in TIME_WAIT is still usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _recorded_ports(props: Path) -> tuple[int, int] | None:
    text = props.read_text() if props.is_file() else ""
    found = re.search(r"^listeners=PLAINTEXT://[^:]+:(\d+),CONTROLLER://[^:]+:(\d+)$", text, re.M)
    return (int(found[1]), int(found[2])) if found else None


def _prepare_storage(java: str, libs: Path, state_dir: Path, port: int | None) -> tuple[Path, int]:
    """server.properties of a formatted node, and its port: the previous node's if it can
    restart, else a new node's."""
    props = state_dir / "server.properties"
    ports = _recorded_ports(props)
    # The voter set written at format time pins the controller's endpoint, so the stored data can
    # be kept (topics, offsets) only when the node comes back on the very same ports.
    if (
        ports
        and (state_dir / "data" / "meta.properties").is_file()
        and port in (None, ports[0])
        and all(map(_port_free, ports))
    ):
        return props, ports[0]
    port = port or _free_port()
    shutil.rmtree(state_dir / "data", ignore_errors=True)
    props.write_text(_server_properties(state_dir, port, _free_port()))
    fmt = subprocess.run(
        _run_java(java, libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                  "-c", str(props), "--standalone"),
        capture_output=True, text=True,
    )  # fmt: skip
    if fmt.returncode != 0:
        detail = " | ".join((fmt.stdout + fmt.stderr).strip().splitlines()[-5:])
        raise KafkaProvisioningError(f"formatting Kafka storage in {props} failed: {detail}")
    return props, port


def start_broker(state_dir: Path, *, port: int | None = None) -> LocalBroker:
    """Start (or find already running) the single-node KRaft broker that lives in ``state_dir``."""
    state_dir = state_dir.resolve()
    running = broker_status(state_dir)
    if running:
        if port is not None and not running.bootstrap.endswith(f":{port}"):
            raise KafkaProvisioningError(
                f"the broker in {state_dir} already runs at {running.bootstrap}, not on port {port}"
            )
        return running
    java = _java()
    libs = ensure_kafka_jars()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir / "start.lock"):
        running = broker_status(state_dir)  # another process may have won the race for this dir
        if running:
            return running
        props, port = _prepare_storage(java, libs, state_dir, port)
        bootstrap = f"127.0.0.1:{port}"
        log = state_dir / "broker.log"
        # Through sh so the broker is not our child: it outlives this process and, once stopped,
        # never lingers as our zombie. Its own session keeps it clear of the terminal's Ctrl-C.
        launched = subprocess.run(
            ["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!', "sh",
             str(log), *_run_java(java, libs, "kafka.Kafka", str(props))],
            capture_output=True, text=True, check=True, start_new_session=True,
        )  # fmt: skip
        pid = int(launched.stdout.strip())
        (state_dir / "broker.pid").write_text(f"{pid}\n")
        (state_dir / "bootstrap").write_text(f"{bootstrap}\n")
        try:
            _run_sync(_wait_ready(bootstrap, pid, READY_TIMEOUT_S))
        except BaseException as exc:
            stop_broker(state_dir)
            if isinstance(exc, KafkaProvisioningError):
                raise KafkaProvisioningError(f"{exc}; broker log: {_log_tail(log)}") from None
            raise
        return LocalBroker(bootstrap, pid, state_dir)


def stop_broker(state_dir: Path) -> bool:
    """Stop the broker recorded in ``state_dir``; True when one was running."""
    broker = broker_status(state_dir.resolve())
    (state_dir / "broker.pid").unlink(missing_ok=True)
    if broker is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(broker.pid, signal.SIGTERM)  # controlled shutdown: flushes logs, closes cleanly
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(broker.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(broker.pid):
            os.kill(broker.pid, signal.SIGKILL)
    return True


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    # The sync API may be called while an event loop runs in this thread (async fixtures, apps).
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _listening(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


async def _wait_ready(bootstrap: str, pid: int, timeout: float) -> None:
    # "Answers metadata" is not enough: right after start the controller may not yet accept
    # topic creation, and that is the first thing every caller does.
    probe = f"__flowledger_ready_{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise KafkaProvisioningError(f"the Kafka broker (pid {pid}) exited during start-up")
        if not _listening(bootstrap):  # spares aiokafka's error log a refused connection per try
            await asyncio.sleep(0.2)
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await declare_topics(admin, {probe: 1}, timeout=10.0)
            await admin.delete_topics([probe])
            return
        except (KafkaError, KafkaTopicsError, OSError, TimeoutError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise KafkaProvisioningError(
        f"the Kafka broker at {bootstrap} was not ready within {timeout:.0f}s ({last!r})"
    )


# --- resolution ----------------------------------------------------------------------------------


def _start_container() -> tuple[str, Callable[[], None]]:
    from testcontainers.community.kafka import KafkaContainer

    # testcontainers-python's KafkaContainer scripts Confluent's image; the apache/kafka image only
    # differs in its start command, so keep its environment and replace the start script.
    class ApacheKafkaContainer(KafkaContainer):
        def configure(self) -> None:
            self._configure_kraft()  # with_kraft() would reject "4.x" as older than Confluent 7.0
            # Internal topics default to 3 replicas, which one broker cannot host.
            for internal in ("TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
                self.with_env(f"KAFKA_{internal}_REPLICATION_FACTOR", "1")
                self.with_env(f"KAFKA_{internal}_MIN_ISR", "1")

        def tc_start(self) -> None:
            host, port = self.get_container_host_ip(), self.get_exposed_port(self.port)
            script = (
                f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},"
                "BROKER://$(hostname -i):9092\nexec /etc/kafka/docker/run\n"
            )
            self.create_file(script.encode(), self.TC_START_SCRIPT)

    container = ApacheKafkaContainer(KAFKA_IMAGE)
    try:
        container.start(timeout=120)
    except BaseException:
        container.stop()
        raise
    return container.get_bootstrap_server(), container.stop


def resolve_bootstrap(state_dir: Path) -> tuple[str, Callable[[], None]]:
    """A Kafka bootstrap address and the function that releases it, in the order of the
    module's docstring."""
    if env := os.environ.get(BOOTSTRAP_ENV, "").strip():
        return env, lambda: None
    if docker_available():
        try:
            return _start_container()
        except Exception as exc:  # e.g. the image cannot be pulled: the local broker still can run
            _log.warning("Kafka container %s failed (%s); using a local broker", KAFKA_IMAGE, exc)
    if running := broker_status(state_dir):  # someone else's broker: not ours to stop
        return running.bootstrap, lambda: None
    broker = start_broker(state_dir)

    def stop() -> None:
        stop_broker(broker.state_dir)

    return broker.bootstrap, stop
