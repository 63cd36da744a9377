"""Process handling shared by every launcher: ports, spawning, readiness, stopping.

Guarantees:

* Every server binds 127.0.0.1 only (each launcher writes that into the server's config).
* A server never outlives the process that started it: the child gets
  ``PR_SET_PDEATHSIG=SIGKILL`` (via ctypes in ``preexec_fn``) and its own process group;
  ``stop()`` signals the whole group, so helper processes (the Elasticsearch server JVM
  under its launcher JVM) go too. Note that Linux sends the parent-death signal when the
  *thread* that started the child ends: start servers from a long-lived thread (the main
  thread in pytest and in bench scripts).
* ``start()`` returns only after a real client round-trip succeeded; on failure the error
  carries the tail of the server's log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

log = logging.getLogger("realservers")

HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_CLONE_NEWUSER = 0x10000000
# Resolved once, before any fork: the child only calls these function pointers.
_LIBC = ctypes.CDLL(None, use_errno=True)
_prctl = _LIBC.prctl
_unshare = _LIBC.unshare

_PORT_IN_USE_HINTS = ("address already in use", "eaddrinuse", "bindexception")


class ServerError(RuntimeError):
    """Base class of every error raised by realservers."""


class ProvisioningMissing(ServerError):
    """The server's software is not installed; the message says which command installs it."""


class ServerStartError(ServerError):
    """The server was found but did not start or did not answer; carries the log tail."""


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (also free for UDP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise ServerStartError("could not find a free port on 127.0.0.1 after 50 tries")


def tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note saying why there are none."""
    if path is None:
        return "(no log file)"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError as exc:
        return f"(log file {path} unreadable: {exc})"
    text = data.decode("utf-8", errors="replace").splitlines()
    if not text:
        return f"(log file {path} is empty)"
    return "\n".join(text[-lines:])


def _child_setup(parent_pid: int, user_namespace: bool):  # noqa: ANN202 - runs post-fork
    """Build the ``preexec_fn``: runs in the child between fork and exec."""

    def setup() -> None:
        if user_namespace and _unshare(_CLONE_NEWUSER) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWUSER) failed: {os.strerror(err)}")
        # After any credential change (which would clear it), before exec (which keeps it).
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp [2])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", errors="replace")
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def group_identities(pgid: int) -> dict[int, str]:
    """{pid: start time} of the live (non-zombie) processes in process group ``pgid``.

    The start time (field 22 of /proc/<pid>/stat) tells a process from a later one that
    reuses its PID, which happens quickly when pid_max is 32768 and builds run alongside.
    """
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and len(fields) > 19 and fields[0] != "Z" and int(fields[2]) == pgid:
            members[int(entry)] = fields[19]
    return members


def alive_identities(identities: dict[int, str]) -> dict[int, str]:
    """The subset of ``identities`` still running as the same (non-zombie) processes."""
    alive = {}
    for pid, started in identities.items():
        fields = _stat_fields(pid)
        if fields and len(fields) > 19 and fields[0] != "Z" and fields[19] == started:
            alive[pid] = started
    return alive


def _group_members(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is ``pgid``."""
    return sorted(group_identities(pgid))


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_WORK_ROOT_NAME = "xprofiler-realservers"


def _work_root() -> Path:
    root = Path(tempfile.gettempdir()) / _WORK_ROOT_NAME
    root.mkdir(mode=0o755, exist_ok=True)
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_workdirs(root: Path) -> None:
    """Delete work directories left behind by test runs that were killed."""
    for child in root.iterdir():
        parts = child.name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        owner = int(parts[1])
        if owner != os.getpid() and not _pid_alive(owner):
            shutil.rmtree(child, ignore_errors=True)


_LIVE: set[Server] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


class Server:
    """One throwaway server process on 127.0.0.1.

    Lifecycle: ``start()`` (first call picks free ports and makes a temporary work
    directory), ``stop()`` (keeps ports and data), ``start()`` again (same port, same
    data), ``close()`` (stop and delete the work directory). ``down()`` is a context
    manager that stops the server and starts it again when the block ends.
    """

    name: ClassVar[str] = "server"
    scheme: ClassVar[str] = "tcp"
    url_suffix: ClassVar[str] = ""
    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 15.0
    provision_hint: ClassVar[str] = ""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.version: str | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._members: dict[int, str] = {}
        self._closed = False

    # -- public interface -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.url_suffix}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Server:
        """Start (or restart) the server and wait until a client round-trip succeeds."""
        if self._closed:
            raise ServerError(f"{self.name} server was closed; create a new one")
        if self.running:
            return self
        first = self.workdir is None
        if first:
            missing = self.missing_provisioning()
            if missing:
                raise ProvisioningMissing(missing)
            root = _work_root()
            _remove_stale_workdirs(root)
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-{os.getpid()}-", dir=root))
            self.log_path = self.workdir / "server.log"
        attempts = 3 if first else 1
        for attempt in range(1, attempts + 1):
            if first:
                self._allocate_ports()
            try:
                self._spawn_and_wait()
            except ServerStartError as exc:
                port_clash = any(h in str(exc).lower() for h in _PORT_IN_USE_HINTS)
                if first and port_clash and attempt < attempts:
                    log.warning("%s: port clash, retrying on new ports", self.name)
                    continue
                raise
            break
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Stop the process (its whole process group); keep the work directory and port."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        pgid = proc.pid
        # Signal the group only while its leader is unreaped: until then no other process
        # can get its id. Afterwards only processes seen as members are touched.
        members = dict(self._members)
        if proc.poll() is None:
            members.update(group_identities(pgid))
            self._signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, pgid)
                self._signal_group(pgid, signal.SIGKILL)
                proc.wait()
        # Members that outlived the leader (e.g. a JVM the launcher started).
        deadline = time.monotonic() + self.stop_timeout
        while alive_identities(members) and time.monotonic() < deadline:
            time.sleep(0.05)
        leftovers = alive_identities(members)
        for pid in leftovers:
            log.warning("%s: pid %d outlived its process group leader; killing it", self.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while alive_identities(leftovers) and time.monotonic() < end:
            time.sleep(0.05)
        self._members = {}
        self._after_stop()

    @contextlib.contextmanager
    def down(self) -> Iterator[Server]:
        """Stop the server for the duration of the block, then start it again."""
        self.stop()
        try:
            yield self
        finally:
            self.start()

    def close(self) -> None:
        """Stop the server and delete its work directory."""
        self.stop()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self.workdir is not None and not self._closed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def rss_bytes(self) -> int:
        """Resident memory of all processes of the server (its process group)."""
        if not self.running or self._proc is None:
            return 0
        return sum(_rss_kib(pid) for pid in _group_members(self._proc.pid)) * 1024

    def process_ids(self) -> list[int]:
        """PIDs of every live process in the server's process group."""
        if self._proc is None:
            return []
        return _group_members(self._proc.pid)

    def listening_sockets(self) -> list[tuple[str, str, int]]:
        """(protocol, address, port) of every listening TCP / bound UDP socket it holds."""
        inodes: set[str] = set()
        for pid in self.process_ids():
            fd_dir = f"/proc/{pid}/fd"
            with contextlib.suppress(OSError):
                for fd in os.listdir(fd_dir):
                    with contextlib.suppress(OSError):
                        target = os.readlink(f"{fd_dir}/{fd}")
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        found = []
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            for address, port, state, inode in _proc_net(proto):
                listening = state == "0A" if proto.startswith("tcp") else state == "07"
                if inode in inodes and listening:
                    found.append((proto, address, port))
        return sorted(found)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    # -- to be provided by each launcher ----------------------------------------------

    def missing_provisioning(self) -> str | None:
        """None when the software is installed, else what is missing and how to install."""
        raise NotImplementedError

    def _allocate_ports(self) -> None:
        self.port = free_port()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _prepare(self) -> None:
        """Write config files into the work directory (called before every spawn)."""

    def _check_ready(self) -> None:
        """One client round-trip; raise any exception while the server is not ready."""
        raise NotImplementedError

    def _user_namespace(self) -> bool:
        return False

    def _after_stop(self) -> None:
        """Hook run after the process group is gone."""

    # -- internals --------------------------------------------------------------------

    def _hint(self) -> str:
        return f"run: python3 testing/provision.py --only {self.name}"

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def _spawn_and_wait(self) -> None:
        assert self.workdir is not None and self.log_path is not None
        self._prepare()
        command = self._command()
        started = time.monotonic()
        self._members = {}
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"\n=== starting: {' '.join(command)}\n".encode())
            log_file.flush()
            try:
                self._proc = subprocess.Popen(
                    command,
                    cwd=self.workdir,
                    env=self._environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_child_setup(os.getpid(), self._user_namespace()),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise ServerStartError(
                    f"{self.name}: could not run {command[0]}: {exc}. {self._hint()}"
                ) from exc
        log.info("%s: started pid %d, waiting for it to answer", self.name, self._proc.pid)
        deadline = started + self.start_timeout
        delay = 0.05
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is None:  # leader unreaped: its group id is still ours
                self._members.update(group_identities(self._proc.pid))
            else:
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it answered on "
                    f"{self.host}:{self.port}. Last lines of {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            try:
                self._check_ready()
            except Exception as exc:  # any failure means: not ready yet
                last_error = exc
            else:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} did not answer on {self.host}:{self.port} within "
                    f"{self.start_timeout:.0f}s (last error: {last_error!r}). "
                    f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.3, 0.25)
        self.start_seconds = time.monotonic() - started
        self._members.update(group_identities(self._proc.pid))
        log.info("%s: ready at %s after %.2fs", self.name, self.url, self.start_seconds)


def _proc_net(proto: str) -> Iterator[tuple[str, int, str, str]]:
    """(address, port, state, inode) rows of /proc/net/<proto>."""
    try:
        with open(f"/proc/net/{proto}", encoding="ascii") as handle:
            next(handle, None)
            rows = handle.readlines()
    except OSError:
        return
    for row in rows:
        fields = row.split()
        if len(fields) < 10:
            continue
        hex_address, hex_port = fields[1].split(":")
        yield _decode_address(hex_address), int(hex_port, 16), fields[3], fields[9]


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # IPv6: four little-endian 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def udp_port_bound(address: str, port: int) -> bool:
    """Whether some process has a UDP socket bound to ``address:port`` (from /proc/net/udp)."""
    return any(a == address and p == port for a, p, _s, _i in _proc_net("udp"))


def port_accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ETIMEDOUT, None):
            log.debug("connect to %s:%d: %s", host, port, exc)
        return False
