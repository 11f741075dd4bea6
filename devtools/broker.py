"""A real Apache Kafka broker, assembled from Maven Central and run on 127.0.0.1 (no Docker).

Why: every machine (a laptop, CI) gets the same real broker with only Java and Maven installed.
The jars are fetched once per machine and version into `<home>/kafka/<version>/libs`, outside the repo;
each broker gets its own data directory, KRaft storage and free ports, and always stops its JVM:
SIGTERM to its process group, then SIGKILL. A watchdog process also kills the JVM if the Python
process that started it dies without cleaning up (a killed pytest, a crashed shell).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

DEFAULT_KAFKA_VERSION = "3.9.2"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
KAFKA_FILES = Path(__file__).resolve().parent / "kafka"
"""The broker's dependency POM and logging configs: package data, so an installed holdwatch has them."""

Progress = Callable[[str], None]
LoggingBackend = Literal["reload4j", "log4j2"]

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SASL_USER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started, reached or stopped; the message says why."""


def _silent(_: str) -> None:
    return None


# --- pure helpers --------------------------------------------------------------------------------


def kafka_major(version: str) -> int:
    """The Kafka line (3 or 4) of a release version such as "3.9.2"."""
    match = _VERSION_RE.match(version)
    if not match:
        raise BrokerError(f"invalid Kafka version {version!r}: expected MAJOR.MINOR.PATCH, e.g. 3.9.2")
    major = int(match.group(1))
    if major not in (3, 4):
        raise BrokerError(f"unsupported Kafka version {version}: the local broker supports 3.x and 4.x")
    return major


def logging_backend(version: str) -> LoggingBackend:
    """The logging backend Kafka's own distribution ships for this line (the POM leaves it out)."""
    return "reload4j" if kafka_major(version) == 3 else "log4j2"


def jar_dir(home: Path, version: str) -> Path:
    return home / "kafka" / version / "libs"


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding: the format `StorageTool random-uuid` prints.

    Never starting with `-`: StorageTool's argument parser would take it for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def validate_sasl_users(users: Mapping[str, str]) -> None:
    """Reject names/passwords that would break the JAAS line instead of producing a broken broker."""
    for name, password in users.items():
        if not _SASL_USER_RE.match(name):
            raise BrokerError(f"invalid SASL user name {name!r}: use letters, digits, '_', '.', '-'")
        if not password or any(ch in password for ch in '"\\\n\r;'):
            raise BrokerError(f"invalid SASL password for {name!r}: empty, or contains a quote/backslash/;")


@dataclass(frozen=True)
class BrokerPorts:
    plaintext: int
    controller: int
    sasl_plaintext: int | None = None


def render_server_properties(
    *,
    ports: BrokerPorts,
    log_dirs: Path,
    major: int,
    sasl_users: Mapping[str, str] | None = None,
    auto_create_topics: bool = False,
    retention_check_interval_ms: int | None = None,
) -> str:
    """server.properties for one combined broker+controller with a static quorum on 127.0.0.1.

    `retention_check_interval_ms` (static in Kafka, default 5 min, first check 30 s after start):
    tests that prove nothing is lost to retention set it low, so a segment past its retention is
    deleted within seconds (the first check too: `log.initial.task.delay.ms`, Kafka 3.7+).
    """
    host = "127.0.0.1"
    listeners = [f"PLAINTEXT://{host}:{ports.plaintext}", f"CONTROLLER://{host}:{ports.controller}"]
    advertised = [f"PLAINTEXT://{host}:{ports.plaintext}"]
    protocol_map = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    lines = [
        "# Written by holdwatch (streams/broker.py) for one local combined broker+controller.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{ports.controller}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={log_dirs}",
        f"auto.create.topics.enable={'true' if auto_create_topics else 'false'}",
        "num.partitions=1",
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=6",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=6",
        "group.initial.rebalance.delay.ms=0",
        # A 2-core dev machine: few threads, a small log-cleaner buffer (default 128 MiB).
        "num.network.threads=2",
        "num.io.threads=4",
        "background.threads=4",
        "num.recovery.threads.per.data.dir=1",
        "log.cleaner.dedupe.buffer.size=33554432",
        "log.cleaner.backoff.ms=5000",
    ]
    if retention_check_interval_ms is not None:
        lines += [
            f"log.retention.check.interval.ms={retention_check_interval_ms}",
            f"log.initial.task.delay.ms={retention_check_interval_ms}",
        ]
    if major >= 4:
        lines += [
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
        ]
    if sasl_users:
        validate_sasl_users(sasl_users)
        if ports.sasl_plaintext is None:
            raise BrokerError("SASL users given but no SASL_PLAINTEXT port")
        listeners.append(f"SASL_PLAINTEXT://{host}:{ports.sasl_plaintext}")
        advertised.append(f"SASL_PLAINTEXT://{host}:{ports.sasl_plaintext}")
        protocol_map.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
        users = " ".join(f'user_{name}="{password}"' for name, password in sorted(sasl_users.items()))
        lines += [
            "sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        ]
    lines += [
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        f"listener.security.protocol.map={','.join(protocol_map)}",
    ]
    return "\n".join(lines) + "\n"


def jvm_options(*, version: str, logs_dir: Path, heap_mb: int) -> list[str]:
    """Fixed heap (no surprise growth on a shared machine), serial GC (one small node), file logging."""
    if kafka_major(version) == 3:
        log_flag = f"-Dlog4j.configuration=file:{KAFKA_FILES / 'log4j.properties'}"
    else:
        log_flag = f"-Dlog4j2.configurationFile={KAFKA_FILES / 'log4j2.properties'}"
    return [
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={logs_dir}",
        log_flag,
    ]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


# --- tools and jars --------------------------------------------------------------------------------


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(
            f"`{name}` is not on PATH; it is needed to {purpose}. Install Java 17 and Maven "
            "(Debian/Ubuntu: apt-get install openjdk-17-jdk-headless maven), "
            "or point holdwatch at an existing cluster with HOLDWATCH_KAFKA_BOOTSTRAP=host:port."
        )
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock: two processes never fetch the same version at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_broker_jars(version: str, home: Path, *, progress: Progress = _silent) -> Path:
    """The broker's classpath directory, fetched with Maven on first use (then cached)."""
    backend = logging_backend(version)
    libs = jar_dir(home, version)
    complete = libs / ".complete"
    if complete.exists():
        return libs
    version_dir = libs.parent
    with _file_lock(version_dir / ".fetch.lock"):
        if complete.exists():  # another process fetched while we waited
            return libs
        mvn = require_tool("mvn", "fetch Apache Kafka's broker jars from Maven Central")
        pom = KAFKA_FILES / "pom.xml"
        if not pom.is_file():
            raise BrokerError(f"{pom} is missing: the holdwatch installation is incomplete (reinstall it)")
        staging = version_dir / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        fetch_log = version_dir / "fetch.log"
        command = [
            mvn, "-q", "-B", "-f", str(pom),
            f"-Dkafka.version={version}", f"-Dkafka.logging={backend}",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        progress(f"fetching Apache Kafka {version} broker jars with Maven into {libs} (once per machine) ...")
        started = time.monotonic()
        with fetch_log.open("w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            try:
                result = subprocess.run(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=version_dir, timeout=900, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(f"mvn took over 15 minutes; see {fetch_log}") from exc
        main_jar = staging / f"kafka_2.13-{version}.jar"
        if result.returncode != 0 or not main_jar.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise BrokerError(
                f"could not fetch Kafka {version} with Maven (exit {result.returncode}); "
                "does that version exist, and is Maven Central reachable? "
                f"Last lines of {fetch_log}:\n{tail(fetch_log)}"
            )
        (staging / ".complete").write_text(f"{version}\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        progress(f"fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.0f} s")
    return libs


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` at `host` (the metrics server binds every address: "0.0.0.0")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped
    return True


def pid_runs_kafka(pid: int, data_dir: Path) -> bool:
    """True if pid is alive and is the kafka.Kafka JVM of this data dir (guards against pid reuse)."""
    if not pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    return b"kafka.Kafka" in args and any(str(data_dir).encode() in arg for arg in args)


def terminate_process_group(pgid: int, *, timeout_s: float = 30.0) -> None:
    """SIGTERM the group, wait for its leader to exit, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_alive(pgid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


_WATCHDOG = """
import os, signal, sys, time
owner, pgid = int(sys.argv[1]), int(sys.argv[2])
def group_alive():
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
while os.getppid() == owner:
    if not group_alive():
        sys.exit(0)
    time.sleep(1)
try:
    os.killpg(pgid, signal.SIGTERM)
    for _ in range(100):
        time.sleep(0.2)
        os.killpg(pgid, 0)
    os.killpg(pgid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


def probe_metadata(bootstrap: str, *, timeout_s: float = 10.0) -> str:
    """One real metadata request (DescribeCluster); returns the cluster id."""
    from kafka.admin import KafkaAdminClient  # heavy import, only when a broker is probed

    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="holdwatch-probe",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    if not cluster.get("brokers"):
        raise BrokerError(f"{bootstrap} answered without brokers")
    return str(cluster.get("cluster_id"))


# --- state of a detached broker (the `holdwatch broker` commands) ---------------------------------


@dataclass(frozen=True)
class BrokerState:
    """What `holdwatch broker start` leaves behind so later commands can find or stop the broker."""

    pid: int
    bootstrap: str
    version: str
    data_dir: str
    log_file: str
    sasl_bootstrap: str | None = None

    def running(self) -> bool:
        return pid_runs_kafka(self.pid, Path(self.data_dir))


def state_dir(home: Path) -> Path:
    return home / "broker"


def state_file(home: Path) -> Path:
    return state_dir(home) / "state.json"


def write_state(home: Path, state: BrokerState) -> None:
    path = state_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(path)
    (path.parent / "broker.pid").write_text(f"{state.pid}\n")
    (path.parent / "bootstrap").write_text(f"{state.bootstrap}\n")


def read_state(home: Path) -> BrokerState | None:
    """The recorded broker (running or not), or None if there is no readable record."""
    try:
        raw = json.loads(state_file(home).read_text())
        return BrokerState(**raw)
    except (OSError, ValueError, TypeError):
        return None


def clear_state(home: Path) -> None:
    for name in ("state.json", "broker.pid", "bootstrap"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir(home) / name).unlink()


def running_broker(home: Path) -> BrokerState | None:
    state = read_state(home)
    return state if state is not None and state.running() else None


# --- the broker -------------------------------------------------------------------------------------


class LocalBroker:
    """One combined KRaft broker+controller on 127.0.0.1, on free ports, logging to files.

    Use as a context manager (tests) or `start(detached=True)` (the CLI; stop later by pid).
    `sasl_users={"alice": "secret"}` adds a SASL_PLAINTEXT listener with PLAIN users next to the
    PLAINTEXT one; its address is `sasl_bootstrap`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        home: Path,
        version: str = DEFAULT_KAFKA_VERSION,
        sasl_users: Mapping[str, str] | None = None,
        heap_mb: int = 512,
        port: int = 0,
        startup_timeout_s: float = 120.0,
        auto_create_topics: bool = False,
        retention_check_interval_ms: int | None = None,
        progress: Progress = _silent,
    ) -> None:
        kafka_major(version)  # fail fast on a bad version
        if sasl_users:
            validate_sasl_users(sasl_users)
        self.data_dir = data_dir.resolve()
        self.home = home
        self.version = version
        self.sasl_users = dict(sasl_users or {})
        self.heap_mb = heap_mb
        self.requested_port = port
        self.startup_timeout_s = startup_timeout_s
        self.auto_create_topics = auto_create_topics
        self.retention_check_interval_ms = retention_check_interval_ms
        self.progress = progress
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._ports: BrokerPorts | None = None

    def __repr__(self) -> str:  # never shows the SASL passwords
        users = sorted(self.sasl_users)
        return f"LocalBroker(version={self.version}, data_dir={self.data_dir}, sasl_users={users})"

    # paths
    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_file(self) -> Path:
        return self.logs_dir / "broker.out"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    # addresses
    @property
    def bootstrap(self) -> str:
        if self._ports is None:
            raise BrokerError("the broker is not started")
        return f"127.0.0.1:{self._ports.plaintext}"

    @property
    def sasl_bootstrap(self) -> str | None:
        if self._ports is None or self._ports.sasl_plaintext is None:
            return None
        return f"127.0.0.1:{self._ports.sasl_plaintext}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def state(self) -> BrokerState:
        if self.pid is None:
            raise BrokerError("the broker is not started")
        return BrokerState(
            pid=self.pid, bootstrap=self.bootstrap, version=self.version, data_dir=str(self.data_dir),
            log_file=str(self.log_file), sasl_bootstrap=self.sasl_bootstrap,
        )  # fmt: skip

    # lifecycle
    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, *, detached: bool = False) -> LocalBroker:
        """Fetch jars if needed, format storage if new, run the JVM and wait for a metadata answer.

        Not detached: the JVM dies with this Python process (atexit + watchdog).
        Detached: it keeps running after this process exits; stop it with `stop_detached`.
        """
        if self._process is not None:
            raise BrokerError("the broker is already started")
        java = require_tool("java", "run the Kafka broker")
        libs = fetch_broker_jars(self.version, self.home, progress=self.progress)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._ports = BrokerPorts(
            plaintext=self.requested_port or free_port(),
            controller=free_port(),
            sasl_plaintext=free_port() if self.sasl_users else None,
        )
        self.config_file.write_text(
            render_server_properties(
                ports=self._ports, log_dirs=self.kraft_dir, major=kafka_major(self.version),
                sasl_users=self.sasl_users, auto_create_topics=self.auto_create_topics,
                retention_check_interval_ms=self.retention_check_interval_ms,
            )
        )  # fmt: skip
        self.config_file.chmod(0o600)  # may hold SASL passwords
        classpath = f"{libs}/*"
        if not (self.kraft_dir / "meta.properties").exists():
            self._format_storage(java, classpath)
        command = [
            java, *jvm_options(version=self.version, logs_dir=self.logs_dir, heap_mb=self.heap_mb),
            "-cp", classpath, "kafka.Kafka", str(self.config_file),
        ]  # fmt: skip
        self.progress(f"starting Kafka {self.version} on {self.bootstrap} (logs: {self.log_file}) ...")
        with self.console_file.open("ab") as console:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True,
            )  # fmt: skip
        if not detached:
            atexit.register(self.stop)
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self._process.pid)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _format_storage(self, java: str, classpath: str) -> None:
        cluster_id = new_cluster_id()
        self.progress(f"formatting KRaft storage in {self.kraft_dir} (cluster id {cluster_id})")
        format_log = self.logs_dir / "format.log"
        command = [
            java, *jvm_options(version=self.version, logs_dir=self.logs_dir, heap_mb=128),
            "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", cluster_id, "-c", str(self.config_file),
        ]  # fmt: skip
        with format_log.open("wb") as log:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=120, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed; {format_log}:\n{tail(format_log)}")

    def _wait_ready(self) -> None:
        assert self._process is not None and self._ports is not None
        started = time.monotonic()
        deadline = started + self.startup_timeout_s
        next_report = started + 10
        last_error = "listener not open yet"
        while True:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with code {self._process.returncode} while starting.\n"
                    f"{self.console_file}:\n{tail(self.console_file, 15)}\n"
                    f"{self.log_file}:\n{tail(self.log_file, 25)}"
                )
            if port_open(self._ports.plaintext):
                try:
                    probe_metadata(self.bootstrap, timeout_s=5)
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = f"metadata request failed: {exc}"
                else:
                    sasl = self._ports.sasl_plaintext
                    if sasl is None or port_open(sasl):
                        elapsed = time.monotonic() - started
                        self.progress(f"Kafka is ready on {self.bootstrap} after {elapsed:.0f} s")
                        return
                    last_error = "SASL listener not open yet"
            now = time.monotonic()
            if now >= deadline:
                raise BrokerError(
                    f"the Kafka broker did not answer within {self.startup_timeout_s:.0f} s "
                    f"({last_error}).\n{self.log_file}:\n{tail(self.log_file, 25)}"
                )
            if now >= next_report:
                self.progress(f"  still waiting for Kafka ({now - started:.0f} s, {last_error})")
                next_report = now + 10
            time.sleep(0.5)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the JVM's process group, wait up to timeout_s, then SIGKILL. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.progress(f"Kafka did not stop within {timeout_s:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        atexit.unregister(self.stop)


def stop_detached(state: BrokerState, *, timeout_s: float = 30.0) -> bool:
    """Stop a broker started by another process; False if it was not running."""
    if not state.running():
        return False
    terminate_process_group(state.pid, timeout_s=timeout_s)
    return True
