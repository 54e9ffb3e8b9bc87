"""The development environment's commands, attached to the `modelship` command through the
`modelship.commands` entry-point group (see hack/pyproject.toml): `modelship demo` and
`modelship dev build|up|down|kubectl`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from modelship_dev import demo as demo_run
from modelship_dev import tools, workload
from modelship_dev.cluster import LocalCluster, default_state_dir

NODE = "local-0"  # the node agent's node, where pods run for real


@click.command()
@click.option("--keep", is_flag=True,
              help="Keep everything running after the story until Ctrl-C (at most an hour).")
@click.option("--chart", type=click.Path(path_type=Path), default=Path("modelship-demo.png"),
              show_default=True, help="Where to write the PNG chart.")
def demo(keep: bool, chart: Path) -> None:
    """The whole loop on this machine: build what is missing, bring up a cluster with a node
    whose pods are real processes, a gateway, the Prometheus Operator with its Prometheus and
    Alertmanager, and the operator; train v1 and serve it; send gRPC traffic through the
    gateway; promote a better v2 by canary, see the gate reject a run, roll back a slow v3
    automatically and page; dim the factory's lights until DataDrift, then let the operator
    retrain on production samples an automated reviewer labelled, gate on the dark slice and
    promote by canary, with no human step; print the timeline with the cycle time, write a
    chart, and tear everything down."""
    demo_run.run(log=click.echo, keep=keep, chart=chart)


@click.group()
def dev() -> None:
    """The local environment: a real control plane built from Go modules."""


def _cluster(state_dir: Path | None) -> LocalCluster:
    return LocalCluster(state_dir or default_state_dir(), log=click.echo)


_state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                             help="Where the cluster keeps its state (default: "
                             "$MODELSHIP_STATE or ~/.local/state/modelship/dev-cluster).")


@dev.command()
def build() -> None:
    """Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok,
    Prometheus, Prometheus Operator, Alertmanager, Envoy Gateway and helm (cached under
    ~/.cache/modelship/bin)."""
    tools.build_all(log=click.echo)


def _node_agent_missing() -> str | None:
    """Why this machine cannot run the node agent, or None."""
    if os.geteuid() != 0:
        return "it needs root (network and mount namespaces)"
    missing = [tool for tool in ("ip", "nsenter") if shutil.which(tool) is None]
    return f"it needs {' and '.join(missing)} (iproute2, util-linux)" if missing else None


@dev.command()
@_state_option
@click.option("--crds/--no-crds", default=True, show_default=True,
              help="Install modelship's CRDs.")
@click.option("--node-agent/--no-node-agent", default=True, show_default=True,
              help=f"Start node {NODE}, whose pods run from their images as real "
              "processes (needs root). "
              "Without it pods stay Pending: kwok's simulated nodes take only pods that "
              "tolerate kwok.x-k8s.io/node=fake:NoSchedule.")
def up(state_dir: Path | None, crds: bool, node_agent: bool) -> None:
    """Build what is missing, then start the local cluster and the node agent."""
    if node_agent and (why := _node_agent_missing()) is not None:
        raise click.UsageError(f"the node agent cannot run here: {why}. Run as root, or "
                               "pass --no-node-agent for a control plane whose pods stay "
                               "Pending.")
    tools.build_all(log=click.echo)
    cluster = _cluster(state_dir)
    cluster.up()
    if crds:
        demo_run.install_crds(cluster)
        click.echo("CRDs installed")
    if node_agent:
        cluster.start_node_agent(NODE)
        workload.node_folder(workload.SAMPLE_REPOSITORY)
        click.echo(f"{workload.SAMPLE_REPOSITORY}: the samples' model repository, writable "
                   f"by the images' user {workload.IMAGE_USER}")
        click.echo(f"node {NODE} Ready: pods scheduled there run from their images "
                   f"(log: {cluster.state_dir / 'logs' / f'node-agent-{NODE}.log'})")


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

