"""Write ``httpx.inv``, ``coredis.inv`` and ``opentelemetry.inv``: small
intersphinx inventories made by hand.

httpx's documentation is built with MkDocs, which publishes no ``objects.inv``;
coredis and OpenTelemetry publish one, but their sdists have no documentation
sources to rebuild it from offline. These inventories list only the names our docs and signatures
refer to, each pointing at the section of the upstream page that documents it.
Add a name here when a new reference to one of these projects fails the
nitpicky build, then run ``python docs/_inventories/handmade.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).parent

# name -> (role, page#anchor relative to the project's base URL)
HTTPX = {
    "httpx.Client": ("class", "api/#client"),
    "httpx.AsyncClient": ("class", "api/#asyncclient"),
    "httpx.Response": ("class", "api/#response"),
    "httpx.Request": ("class", "api/#request"),
    "httpx.URL": ("class", "api/#url"),
    "httpx.Headers": ("class", "api/#headers"),
    "httpx.BaseTransport": ("class", "advanced/transports/#custom-transports"),
    "httpx.AsyncBaseTransport": ("class", "advanced/transports/#custom-transports"),
    "httpx.HTTPTransport": ("class", "advanced/transports/#httptransport"),
    "httpx.AsyncHTTPTransport": ("class", "advanced/transports/#httptransport"),
    "httpx.MockTransport": ("class", "advanced/transports/#mock-transports"),
    **{
        f"httpx.{name}": ("exception", "exceptions/#exception-classes")
        for name in [
            "HTTPError",
            "RequestError",
            "TransportError",
            "TimeoutException",
            "ConnectTimeout",
            "ReadTimeout",
            "WriteTimeout",
            "PoolTimeout",
            "NetworkError",
            "ConnectError",
            "ReadError",
            "WriteError",
            "CloseError",
            "ProtocolError",
            "LocalProtocolError",
            "RemoteProtocolError",
            "ProxyError",
            "UnsupportedProtocol",
            "DecodingError",
            "TooManyRedirects",
            "HTTPStatusError",
        ]
    },
}

COREDIS = {
    "coredis.Redis": ("class", "api/clients.html#coredis.Redis"),
    "coredis.Redis.from_url": ("method", "api/clients.html#coredis.Redis.from_url"),
    "coredis.RedisCluster": ("class", "api/clients.html#coredis.RedisCluster"),
    "coredis.RedisCluster.from_url": ("method", "api/clients.html#coredis.RedisCluster.from_url"),
}

OPENTELEMETRY = {
    "opentelemetry.metrics.Meter": ("class", "api/metrics.html#opentelemetry.metrics.Meter"),
    "opentelemetry.metrics.MeterProvider": (
        "class",
        "api/metrics.html#opentelemetry.metrics.MeterProvider",
    ),
}


def write(path: Path, project: str, version: str, names: dict[str, tuple[str, str]]) -> None:
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in sorted(names.items()))
    path.write_bytes(header.encode() + zlib.compress(body.encode(), 9))


if __name__ == "__main__":
    write(HERE / "httpx.inv", "HTTPX", "0.28", HTTPX)
    write(HERE / "coredis.inv", "coredis", "6", COREDIS)
    write(HERE / "opentelemetry.inv", "OpenTelemetry Python", "1", OPENTELEMETRY)
