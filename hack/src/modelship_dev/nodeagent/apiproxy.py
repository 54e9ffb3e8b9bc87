"""The `kubernetes` Service for this node's pods: the API server listens on loopback, which a
pod's network namespace cannot reach, so the agent forwards a port on the bridge's address
to it (what kube-proxy does for the Service's ClusterIP) and gives every container
KUBERNETES_SERVICE_HOST/PORT as the kubelet does. TLS passes through untouched: pods verify
the API server's certificate (its names include the bridge's address) with the ca.crt of
their service-account volume, as a client using the in-cluster config does."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def serve(upstream: str, bind_ip: str) -> asyncio.Server:
    """Forward `bind_ip`:<a free port> to the API server at URL `upstream`."""
    parts = urlsplit(upstream)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(forward, bind_ip, 0)


def service_env(server: asyncio.Server) -> dict[str, str]:
    """The variables the kubelet gives every container for the `kubernetes` Service."""
    host, port = server.sockets[0].getsockname()[:2]
    return {"KUBERNETES_SERVICE_HOST": str(host), "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
            f"KUBERNETES_PORT_{port}_TCP_ADDR": str(host)}
