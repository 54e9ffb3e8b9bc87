"""The `modelship` command: run the operator and steer its rollouts.

Other distributions add commands through the `modelship.commands` entry-point group (the
development environment, modelship-dev, adds `dev` and `demo`). They are loaded only when
named or listed, and one that fails to load is shown as unavailable without breaking the
operator's own commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import NoReturn

import click

from modelship import constants, controls

COMMANDS_GROUP = "modelship.commands"


def _plugins() -> dict[str, EntryPoint]:
    """Entry points of COMMANDS_GROUP by command name (the first of a name wins)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=COMMANDS_GROUP):
        found.setdefault(entry.name, entry)
    return found


def _unavailable(name: str, entry: EntryPoint, error: BaseException) -> click.Command:
    message = (f"`modelship {name}` is provided by {entry.value} ({COMMANDS_GROUP} entry "
               f"point), which failed to load: {type(error).__name__}: {error}")

    def fail() -> NoReturn:
        raise click.ClickException(message)

    return click.Command(
        name, callback=fail, help=message, short_help="(unavailable: failed to load)",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False)


class CommandGroup(click.Group):
    """A click group whose own commands come first, then those of installed plugins."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        own = super().list_commands(ctx)
        return own + sorted(name for name in _plugins() if name not in self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry = _plugins().get(cmd_name)
        if entry is None:
            return None
        try:
            loaded = entry.load()
        except Exception as error:
            return _unavailable(cmd_name, entry, error)
        if not isinstance(loaded, click.Command):
            return _unavailable(cmd_name, entry,
                                TypeError(f"{type(loaded).__name__} is not a click command"))
        return loaded


@click.group(cls=CommandGroup)
def main() -> None:
    """modelship: train, gate and publish models, then roll them out safely on Triton."""


@main.command()
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Watch only these namespaces (default: the whole cluster).")
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True,
              help="Liveness endpoint URL (a standby serves it too); empty to disable.")
@click.option("--leader-elect/--no-leader-elect", default=True, show_default=True,
              envvar="MODELSHIP_LEADER_ELECT",
              help="Act only while holding a Lease, so that replicas can stand by. Off: "
                   "this process acts alone (one replica, local runs).")
@click.option("--lease-name", default="modelship-operator", show_default=True,
              envvar="MODELSHIP_LEASE_NAME", help="Name of the leader Lease.")
@click.option("--lease-namespace", default="", envvar="MODELSHIP_LEASE_NAMESPACE",
              help="Namespace of the leader Lease (default: the pod's own namespace, else "
                   "the first --namespace, else default).")
@click.option("--lease-duration", default=8, show_default=True, type=click.IntRange(min=1),
              envvar="MODELSHIP_LEASE_DURATION",
              help="Seconds a Lease lasts without renewal: a dead leader's standby takes "
                   "over after about this long.")
@click.option("--lease-renew-period", default=2.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), envvar="MODELSHIP_LEASE_RENEW_PERIOD",
              help="Seconds between the leader's renewals (and a standby's reads).")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator(namespaces: tuple[str, ...], liveness: str, leader_elect: bool, lease_name: str,
             lease_namespace: str, lease_duration: int, lease_renew_period: float,
             verbose: bool) -> None:
    """Run the operator against the cluster in KUBECONFIG (or in-cluster config)."""
    from modelship.adapters.leader import LeaseSettings, default_identity, default_namespace
    from modelship.core.leadership import LeaseTiming

    lease = None
    if leader_elect:
        try:
            timing = LeaseTiming(lease_duration, lease_renew_period)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--lease-duration") from None
        lease = LeaseSettings(lease_name, lease_namespace or default_namespace(list(namespaces)),
                              default_identity(), timing)
    from modelship.handlers.main import run  # imports kopf only when the operator runs

    run(list(namespaces), liveness, verbose, lease)


_ns_option = click.option("--namespace", "-n", default=None,
                          help="Namespace (default: the kubeconfig context's).")


def _namespace(namespace: str | None) -> str:
    if namespace:
        return namespace
    from lightkube.config.kubeconfig import KubeConfig

    context = KubeConfig.from_env().get()
    return (context.namespace if context else None) or "default"


@main.command()
@click.argument("name")
@_ns_option
@click.option("--watch", "-w", is_flag=True, help="Refresh every second until interrupted.")
def status(name: str, namespace: str | None, watch: bool) -> None:
    """Show a ModelDeployment: phase, weights, each check with its value and threshold."""
    ns = _namespace(namespace)
    while True:
        text = asyncio.run(controls.describe(ns, name))
        if watch:
            click.clear()
        click.echo(text)
        if not watch:
            return
        time.sleep(1)


def _command(action: str) -> Callable[..., None]:
    def run(name: str, namespace: str | None, **_: object) -> None:
        ns = _namespace(namespace)
        value = asyncio.run(controls.send(ns, name, action))
        click.echo(f"{ns}/{name}: {action} requested ({constants.ANNOTATION_COMMAND}={value})")
    return run


@main.command()
@click.argument("name")
@_ns_option
@click.option("--full", is_flag=True,
              help="Skip all remaining steps and analysis: the candidate takes 100% now.")
def promote(name: str, namespace: str | None, full: bool) -> None:
    """Advance the rollout one step (skipping the current pause), or fully with --full."""
    _command("promote-full" if full else "promote")(name, namespace)


for _action, _help in (
    ("abort", "Roll the candidate back now: traffic to stable, then scale it down."),
    ("pause", "Hold the rollout at its current step (analysis keeps running)."),
    ("resume", "Continue a paused or held rollout."),
    ("retry", "Start the rollout of a rolled-back version again."),
):
    main.command(name=_action, help=_help)(_ns_option(click.argument("name")(_command(_action))))


@main.command()
@click.option("--volume-path", required=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="The dataset volume's path (a mounted PVC or hostPath folder); the "
                   "production area is <path>/production/<model>/.")
@click.option("--model", required=True, help="The production area's model (the Triton model).")
@click.option("--reviewer", required=True, help="Your name, written with each of your labels.")
@click.option("--label-set", default="default", show_default=True,
              help="The label set to write to and resolve.")
@click.option("--resolution", type=click.Choice(["consensus", "unclear"]), default=None,
              help="For a new label set: how reviewers' disagreements resolve, written to its "
                   "settings.json (consensus if never set). A set keeps what it has.")
@click.option("--listen", default="127.0.0.1:8090", show_default=True,
              help="HOST:PORT to serve the page on (port 0: any free port).")
@click.option("--classes", default="",
              help="Class names in index order, comma-separated (default: the newest "
                   "served version's lineage.json in --model-repository, else indices).")
@click.option("--model-repository", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="The model repository, to read class names from.")
@click.option("--accuracy-window", default=200, show_default=True,
              type=click.IntRange(min=1),
              help="The reviewed-accuracy gauges are over this many newest labelled "
                   "samples of each version.")
@click.option("--low-confidence", default=0.6, show_default=True,
              type=click.FloatRange(0, 1),
              help="Predictions less confident than this are flagged for review first.")
def review(volume_path: Path, model: str, reviewer: str, label_set: str,
           resolution: str | None, listen: str, classes: str, model_repository: Path | None,
           accuracy_window: int, low_confidence: float) -> None:
    """Serve a page where people confirm or correct the model on sampled production inputs.

    Keys: Enter confirms the model's answer, 1-9 pick a class, u marks unclear, b goes back.
    /metrics exports the reviewed accuracy per version for Prometheus."""
    from modelship.review.command import start

    start(volume_path=volume_path, model=model, reviewer=reviewer, label_set=label_set,
          resolution=resolution, listen=listen, classes=classes,
          model_repository=model_repository, accuracy_window=accuracy_window,
          low_confidence=low_confidence)


if __name__ == "__main__":
    main()
