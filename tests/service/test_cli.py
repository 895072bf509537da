"""The command line's contract apart from ``dev``: usage and configuration errors, one
definition of the exit codes, and no command that is only a promise."""

from __future__ import annotations

import argparse
import ast
import asyncio
import pkgutil
from pathlib import Path

import pytest

import tenantgate.cli
from tenantgate.cli import ExitCode, build_parser
from tenantgate.db.fleet import migrate_everything
from tenantgate.errors import ServiceUnavailableError

CLI_FOLDER = Path(tenantgate.cli.__file__).parent

NOT_CONFIGURED = {  # every setting serve and migrate need, pointing at nothing
    "TENANTGATE_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db",
    "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
    "TENANTGATE_ADMIN_TOKEN": "admin-token-0123456789",
    "TENANTGATE_KEY_PEPPER": "00" * 32,
}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict:
    """Every runnable command of ``parser`` (by its words) and its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                found |= _commands(subparser, (*prefix, name))
    if not found and prefix:
        found[prefix] = parser
    return found


def test_serve_without_configuration_names_the_variable_and_exits_2(run_tenantgate) -> None:
    result = run_tenantgate("serve", "--port", "1")
    assert result.returncode == ExitCode.USAGE == 2
    assert "TENANTGATE_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_with_a_malformed_setting_names_it(run_tenantgate) -> None:
    result = run_tenantgate("serve", environ={**NOT_CONFIGURED, "TENANTGATE_KEY_PEPPER": "not hex"})
    assert result.returncode == ExitCode.USAGE
    assert "TENANTGATE_KEY_PEPPER" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error(run_tenantgate) -> None:
    result = run_tenantgate("launch")
    assert result.returncode == ExitCode.USAGE
    assert "usage:" in result.stderr


def test_every_command_has_a_handler() -> None:
    commands = _commands(build_parser())
    assert {("serve",), ("dev",), ("migrate",), ("audit", "verify")} <= set(commands)
    for words, parser in commands.items():
        assert callable(parser.get_default("run")), words


@pytest.mark.parametrize(
    "command", sorted(" ".join(words) for words in _commands(build_parser()) if words != ("dev",))
)
def test_no_command_says_it_is_not_implemented(run_tenantgate, command: str) -> None:
    """Each command does its work or names what stops it (`dev` starts servers: see
    test_cli_dev); none is a placeholder, in its output or its source."""
    result = run_tenantgate(*command.split())
    assert "not implemented" not in (result.stdout + result.stderr).lower()
    assert result.returncode == ExitCode.USAGE
    assert "TENANTGATE_" in result.stderr  # the setting it misses
    sources = " ".join(path.read_text() for path in CLI_FOLDER.glob("*.py"))
    assert "not implemented" not in sources.lower()


def test_every_command_group_is_registered() -> None:
    """A module in cli/ is a command group, unless it is one of the shared helpers."""
    helpers = {"arguments", "exit_codes", "reporting"}
    groups = {module.name for module in pkgutil.iter_modules([str(CLI_FOLDER)])} - helpers
    registered = {
        register.__module__.rpartition(".")[2] for register in tenantgate.cli.COMMAND_GROUPS
    }
    assert registered == groups


def test_exit_codes_are_written_once() -> None:
    """No command returns or exits with a bare number: the statuses come from ExitCode."""
    bare = []
    for path in CLI_FOLDER.glob("*.py"):
        if path.name == "exit_codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value = None
            if isinstance(node, ast.Return):
                value = node.value
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in {
                "sys.exit",
                "SystemExit",
                "exit",
            }:
                value = node.args[0] if node.args else None
            if isinstance(value, ast.Constant) and type(value.value) is int:
                bare.append(f"{path.name}:{node.lineno}")
    assert bare == []
    assert [(code.name, code.value) for code in ExitCode] == [
        ("OK", 0),
        ("FAILURE", 1),
        ("USAGE", 2),
        ("INTERRUPTED", 130),
    ]


def test_an_unreachable_database_is_service_unavailable_without_its_password() -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        asyncio.run(migrate_everything(NOT_CONFIGURED["TENANTGATE_DATABASE_URL"]))
    assert "127.0.0.1:1" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
