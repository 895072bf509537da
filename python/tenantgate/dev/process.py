"""Process helpers shared by the embedded servers.

* Every server runs in its own process group (``start_new_session``), so stopping it can
  SIGKILL the whole group and no helper process is left behind.
* Every server gets a parent-death signal (``prctl(PR_SET_PDEATHSIG)``): if the Python process
  dies, even by SIGKILL, its servers die with it. Linux sends that signal when the *thread*
  that forked the child exits, so all servers are spawned from one long-lived spawner thread,
  never from the short-lived threads that start servers in parallel.
* A server's output goes to its log file, or, with no log file, to our own stderr (the
  ``tenantgate serve`` that ``tenantgate dev`` runs).
* Readiness means the server *answers* (a real query, PING, ListBuckets), polled until a
  deadline; a server that exits meanwhile fails at once with the tail of its log.
* Stopping sends the server's polite signal, waits a short time, then SIGKILLs the group.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping, Sequence
    from typing import Any

__all__ = [
    "EmbeddedServer",
    "ManagedProcess",
    "RunAs",
    "find_executable",
    "run_sync",
    "wait_until",
]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
_libc_prctl: Any = None
with contextlib.suppress(OSError, AttributeError):
    _libc_prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl

_STDERR = 2
"""The file descriptor a server without a log file writes to."""

# One long-lived thread forks every server (see the module docstring).
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tenantgate-spawner")


def find_executable(name: str) -> Path | None:
    """``name`` from this Python environment's scripts folder (the virtualenv's ``bin``).

    System paths are deliberately not searched: the servers must be the versions the
    ``embedded`` extra installed.
    """
    folders: list[Path] = []
    scripts = sysconfig.get_path("scripts")
    if scripts:
        folders.append(Path(scripts))
    folders += [Path(sys.prefix) / "bin", Path(sys.executable).parent]
    seen: set[Path] = set()
    for folder in folders:
        if folder in seen:
            continue
        seen.add(folder)
        found = shutil.which(name, path=str(folder))
        if found:
            return Path(found)
    return None


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    server: str,
    what: str,
    alive: Callable[[], str | None] | None = None,
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns without raising; raise EmbeddedServerError on timeout.

    ``alive`` returns ``None`` while the server process runs, or why it is gone.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        if alive is not None:
            gone = alive()
            if gone is not None:
                raise EmbeddedServerError(server, f"{gone} while waiting for {what}")
        try:
            return check()
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f"{type(last).__name__}: {last}" if last is not None else "no answer"
            raise EmbeddedServerError(
                server, f"did not answer {what} within {timeout:.0f} s ({detail})"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


@dataclass(frozen=True)
class RunAs:
    """An unprivileged system user to run a server as (PostgreSQL refuses to run as root)."""

    uid: int
    gid: int


def _child_setup(death_signal: int, parent_pid: int) -> Callable[[], None]:
    prctl = _libc_prctl

    def setup() -> None:  # runs in the child between fork and exec: keep it tiny
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


@dataclass
class ManagedProcess:
    """One long-running server process in its own process group.

    ``log_path`` receives its stdout and stderr; ``None`` sends both to our stderr.
    """

    name: str
    argv: Sequence[str]
    log_path: Path | None
    cwd: Path | None = None
    env: Mapping[str, str] | None = None
    run_as: RunAs | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0
    death_signal: int = signal.SIGKILL
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)

    def start(self) -> None:
        if self.running:
            raise EmbeddedServerError(self.name, "already running")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = _spawner.submit(self._spawn).result()
        atexit.register(self.stop)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with contextlib.ExitStack() as files:
            output: int | BinaryIO = (
                _STDERR if self.log_path is None else files.enter_context(self.log_path.open("ab"))
            )
            try:
                return subprocess.Popen(  # noqa: S603 - argv built by us, no shell
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=dict(self.env) if self.env is not None else None,
                    start_new_session=True,
                    user=self.run_as.uid if self.run_as else None,
                    group=self.run_as.gid if self.run_as else None,
                    extra_groups=[] if self.run_as else None,
                    preexec_fn=_child_setup(self.death_signal, os.getpid()),
                    close_fds=True,
                )
            except OSError as exc:
                raise EmbeddedServerError(self.name, f"cannot start {self.argv[0]}: {exc}") from exc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_reason(self) -> str | None:
        """``None`` while running, else a sentence saying how it ended, with its log tail."""
        if self._proc is None:
            return "not started"
        code = self._proc.poll()
        if code is None:
            return None
        if self.log_path is None:
            return f"exited with code {code} (its output is above)"
        return f"exited with code {code}; log tail:\n{self.log_tail()}"

    def log_tail(self, lines: int = 25) -> str:
        """The last lines this run wrote to its log (none without a log file)."""
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self) -> int:
        """Block until the process exits; its exit status (negative: the killing signal)."""
        if self._proc is None:
            raise EmbeddedServerError(self.name, "not started")
        return self._proc.wait()

    def stop(self) -> None:
        """Polite signal, ``stop_timeout`` seconds, then SIGKILL of the process group."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session: the server leads its own group
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(self.stop_timeout)
        # Kill whatever is left in the group (the leader, or children that outlived it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        _wait_group_gone(pgid, 5.0)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


class EmbeddedServer(ABC):
    """Common life cycle of one embedded server: prepare once, start, wait, stop, restart.

    Ports are chosen at the first start and kept, so ``restart()`` comes back on the same
    port with the same data. If the first start fails because a port was taken meanwhile
    (another process won the race), new ports are chosen and the start is retried.
    """

    name: str = "server"
    ready_timeout: float = 60.0
    stop_timeout: float = 5.0
    stop_signal: int = signal.SIGTERM
    death_signal: int = signal.SIGKILL

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._process: ManagedProcess | None = None
        self._ports_pinned = False
        self._lock = threading.RLock()

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def _choose_ports(self) -> None:
        """Pick fresh free ports (called before the first start and on a bind race)."""

    @abstractmethod
    def _prepare(self) -> None:
        """Idempotent one-time set-up: data folders, config files, initialisation."""

    @abstractmethod
    def _argv(self) -> list[str]: ...

    @abstractmethod
    def check(self) -> None:
        """Raise unless the server answers a real request."""

    def _env(self) -> dict[str, str] | None:
        return None

    def _cwd(self) -> Path | None:
        return None

    def _run_as(self) -> RunAs | None:
        return None

    def _after_stop(self) -> None:  # noqa: B027 - optional hook
        """Clean-up after the process is gone (stale sockets and the like)."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / "log" / f"{self.name}.log"

    # -- life cycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        """The server's main process id while running."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start and wait until the server answers; on failure leave nothing running."""
        with self._lock:
            if self.running:
                return
            attempts = 1 if self._ports_pinned else 3
            for attempt in range(attempts):
                if not self._ports_pinned:
                    self._choose_ports()
                try:
                    self._start_once()
                except EmbeddedServerError as exc:
                    self._stop_process()
                    if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                        continue
                    raise
                except BaseException:
                    self._stop_process()
                    raise
                self._ports_pinned = True
                return

    def _start_once(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        self._process = ManagedProcess(
            name=self.name,
            argv=self._argv(),
            log_path=self.log_path,
            cwd=self._cwd(),
            env=self._env(),
            run_as=self._run_as(),
            stop_signal=self.stop_signal,
            stop_timeout=self.stop_timeout,
            death_signal=self.death_signal,
        )
        self._process.start()
        process = self._process
        wait_until(
            self.check,
            timeout=self.ready_timeout,
            server=self.name,
            what="a readiness request",
            alive=process.exit_reason,
        )

    def _stop_process(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
            self._after_stop()

    def stop(self) -> None:
        """Stop the server; idempotent; no process of it is left behind."""
        with self._lock:
            self._stop_process()

    def restart(self) -> None:
        """Stop, then start again on the same port(s) with the same data."""
        with self._lock:
            self.stop()
            self.start()

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
