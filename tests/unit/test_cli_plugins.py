"""`modelship` takes extra commands from the `modelship.commands` entry-point group; one that
fails to load is shown as unavailable and never breaks the operator's own commands."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import click
import pytest
from click.testing import CliRunner

from modelship import cli

OWN = ["abort", "operator", "pause", "promote", "resume", "retry", "review", "status"]


def _group(*entries: tuple[str, str]) -> list[EntryPoint]:
    return [EntryPoint(name, value, cli.COMMANDS_GROUP) for name, value in entries]


def test_the_development_environment_adds_dev_and_demo() -> None:
    # This test runs where all four distributions are installed (hack/setup.sh).
    names = cli.main.list_commands(click.Context(cli.main))
    assert names == [*OWN, "demo", "dev"]
    result = CliRunner().invoke(cli.main, ["dev", "--help"])
    assert result.exit_code == 0, result.output
    assert "up" in result.output and "down" in result.output and "kubectl" in result.output


def test_a_broken_plugin_is_reported_and_the_operators_commands_still_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: _group(
        ("broken", "no_such_module_for_modelship:command"),
        ("notacommand", "modelship.constants:GROUP"),
        ("status", "no_such_module_for_modelship:status")))  # cannot replace an own command
    runner = CliRunner()

    listing = runner.invoke(cli.main, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert "broken       (unavailable: failed to load)" in listing.output
    assert "notacommand  (unavailable: failed to load)" in listing.output
    assert "Show a ModelDeployment" in listing.output

    broken = runner.invoke(cli.main, ["broken", "--anything"])
    assert broken.exit_code == 1
    assert ("`modelship broken` is provided by no_such_module_for_modelship:command "
            "(modelship.commands entry point), which failed to load: ModuleNotFoundError"
            in broken.output)
    wrong = runner.invoke(cli.main, ["notacommand"])
    assert wrong.exit_code == 1 and "str is not a click command" in wrong.output

    own = runner.invoke(cli.main, ["status", "--help"])
    assert own.exit_code == 0 and "--watch" in own.output


def test_without_plugins_only_the_operators_commands_exist(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    runner = CliRunner()
    assert cli.main.list_commands(click.Context(cli.main)) == OWN
    result = runner.invoke(cli.main, ["demo"])
    assert result.exit_code == 2 and "No such command 'demo'" in result.output
