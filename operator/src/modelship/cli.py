"""The `modelship` command: run the operator, and manage the local development cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from modelship import constants, controls
from modelship.devenv import demo as demo_run
from modelship.devenv import tools
from modelship.devenv.cluster import LocalCluster, default_state_dir


@click.group()
def main() -> None:
    """modelship: train, gate and publish models, then roll them out safely on Triton."""


@main.command()
@click.option("--namespace", "-n", "namespaces", multiple=True,
              help="Watch only these namespaces (default: the whole cluster).")
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True,
              help="Liveness endpoint URL; empty to disable.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator(namespaces: tuple[str, ...], liveness: str, verbose: bool) -> None:
    """Run the operator against the cluster in KUBECONFIG (or in-cluster config)."""
    from modelship.handlers.main import run  # imports kopf only when the operator runs

    run(list(namespaces), liveness, verbose)


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
@click.option("--keep", is_flag=True,
              help="Keep everything running after the story until Ctrl-C (at most an hour).")
@click.option("--chart", type=click.Path(path_type=Path), default=Path("modelship-demo.png"),
              show_default=True, help="Where to write the PNG chart.")
def demo(keep: bool, chart: Path) -> None:
    """The whole loop on this machine: build what is missing, bring up a cluster with a node
    whose pods are real processes, a gateway, Prometheus and the operator; train v1 and serve
    it; send gRPC traffic through the gateway; promote a better v2 by canary, see the gate
    reject a run, roll back a slow v3 automatically; print the timeline, write a chart, and
    tear everything down."""
    demo_run.run(log=click.echo, keep=keep, chart=chart)


@main.group()
def dev() -> None:
    """The local environment: a real control plane built from Go modules."""


def _cluster(state_dir: Path | None) -> LocalCluster:
    return LocalCluster(state_dir or default_state_dir(), log=click.echo)


_state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                             help="Where the cluster keeps its state (default: "
                             "$MODELSHIP_STATE or ~/.local/state/modelship/dev-cluster).")


@dev.command()
def build() -> None:
    """Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok
    (cached under ~/.cache/modelship/bin)."""
    tools.build_all(log=click.echo)


@dev.command()
@_state_option
@click.option("--crds/--no-crds", default=True, show_default=True,
              help="Install modelship's CRDs.")
def up(state_dir: Path | None, crds: bool) -> None:
    """Build what is missing, then start the local cluster."""
    tools.build_all(log=click.echo)
    cluster = _cluster(state_dir)
    cluster.up()
    if crds:
        install_crds(cluster)


def install_crds(cluster: LocalCluster) -> None:
    demo_run.install_crds(cluster)
    click.echo("CRDs installed")


@dev.command()
@_state_option
def down(state_dir: Path | None) -> None:
    """Stop the local cluster and remove its state."""
    _cluster(state_dir).down()


@dev.command(context_settings={"ignore_unknown_options": True})
@_state_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(state_dir: Path | None, args: tuple[str, ...]) -> None:
    """Run the built kubectl against the local cluster."""
    cluster = _cluster(state_dir)
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    sys.exit(subprocess.call([str(tools.binary("kubectl")), *args], env=env))


if __name__ == "__main__":
    main()
