"""Argument types shared by the command groups."""

from __future__ import annotations

import argparse

__all__ = ["at_least_one", "tcp_port"]


def tcp_port(text: str) -> int:
    """A TCP port number, 1 to 65535."""
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return port


def at_least_one(text: str) -> int:
    """A whole number of at least 1."""
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return number
