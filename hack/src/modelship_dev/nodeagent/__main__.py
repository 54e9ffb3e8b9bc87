"""python -m modelship_dev.nodeagent --kubeconfig K --node local-0 --state-dir D"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from modelship_dev.nodeagent import hostnet
from modelship_dev.nodeagent.agent import Agent, AgentConfig
from modelship_dev.nodeagent.node import NodeSpec


def parse_taint(text: str) -> dict[str, str]:
    """key[=value]:Effect, as kubectl taint writes it."""
    spec, _, effect = text.rpartition(":")
    key, _, value = spec.partition("=")
    if not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise argparse.ArgumentTypeError(f"taint {text!r}: want key[=value]:Effect")
    return {"key": key, "value": value, "effect": effect} if value else \
        {"key": key, "effect": effect}


async def _main(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Agent(config).run(stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelship_dev.nodeagent",
                                     description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", default="local-0")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--taint", type=parse_taint, action="append", default=[],
                        help="key[=value]:Effect (repeatable)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="advertise this many nvidia.com/gpu (none by default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = NodeSpec(args.node, str(hostnet.GATEWAY.ip), args.taint, args.gpus)
    asyncio.run(_main(AgentConfig(args.kubeconfig, spec, args.state_dir.resolve())))


if __name__ == "__main__":
    main()
