"""Free loopback TCP ports for the embedded servers.

Ports are drawn at random from *below* the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), so an outgoing client connection can never
occupy a server's port while that server is stopped for a restart. Every port handed out is
remembered for the life of the process, so servers started in parallel threads never get the
same port twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port", "free_ports", "port_is_free", "release_ports"]

LOOPBACK = "127.0.0.1"
_LOWEST = 15000
_FALLBACK_EPHEMERAL_START = 32768

_lock = threading.Lock()
_handed_out: set[int] = set()
_rng = random.SystemRandom()


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_START


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` can be bound right now (no SO_REUSEADDR, so TIME_WAIT counts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that are free now and were never handed out by this process."""
    if count < 1:
        raise ValueError("count must be at least 1")
    high = _ephemeral_start()
    if high - _LOWEST < 1000:  # an unusual port range: fall back to the kernel's choice
        return _kernel_ports(count, host)
    chosen: list[int] = []
    with _lock:
        for _ in range(count * 200):
            port = _rng.randrange(_LOWEST, high)
            if port in _handed_out or port in chosen or not port_is_free(port, host):
                continue
            chosen.append(port)
            if len(chosen) == count:
                _handed_out.update(chosen)
                return chosen
    raise OSError(f"could not find {count} free ports on {host}")


def _kernel_ports(count: int, host: str) -> list[int]:
    chosen: list[int] = []
    with _lock:
        while len(chosen) < count:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out and port not in chosen:
                chosen.append(port)
        _handed_out.update(chosen)
    return chosen


def free_port(host: str = LOOPBACK) -> int:
    """One free loopback port (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def release_ports(ports: list[int]) -> None:
    """Forget ports handed out earlier so they may be chosen again (rarely needed)."""
    with _lock:
        _handed_out.difference_update(ports)
