"""Drive `rehearse mcp` / `rehearse serve` with the official MCP Python SDK.

REHEARSE_BIN names the rehearse binary under test (the Rust test
`python_client.rs` sets it to the one cargo just built).
"""

import contextlib
import os
import socket
import subprocess
import time

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

REHEARSE = os.environ.get("REHEARSE_BIN", "rehearse")


@contextlib.asynccontextmanager
async def stdio_session(env=None, message_handler=None):
    """A session with `rehearse mcp`; `env` replaces the server's environment,
    `message_handler` sees every notification (progress included)."""
    params = StdioServerParameters(command=REHEARSE, args=["mcp"], env=dict(os.environ) if env is None else env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=message_handler) as session:
            await session.initialize()
            yield session


@contextlib.asynccontextmanager
async def http_session(url, token):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def http_server():
    """A `rehearse serve` on a free loopback port: yields (url, token)."""
    port = free_port()
    token = "test-token-" + os.urandom(8).hex()
    proc = subprocess.Popen(
        [REHEARSE, "serve", "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, "REHEARSE_TOKEN": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp", token
    proc.terminate()
    proc.wait(timeout=20)


async def call(session, name, args=None, **kw):
    """Calls a tool; returns (is_error, structured content)."""
    result = await session.call_tool(name, args or {}, **kw)
    data = result.structured_content
    assert data is not None, f"{name} returned no structured content: {result}"
    return bool(result.is_error), data


async def ok(session, name, args=None, **kw):
    is_error, data = await call(session, name, args, **kw)
    assert not is_error, f"{name}({args}) failed: {data}"
    return data


async def err(session, name, args=None):
    is_error, data = await call(session, name, args)
    assert is_error, f"{name}({args}) should have failed, returned {data}"
    e = data["error"]
    assert set(e) >= {"code", "message", "retryable"}, e
    return e


def live_cluster_ids():
    out = subprocess.run([REHEARSE, "ls", "--json"], capture_output=True, text=True, check=True)
    import json

    doc = json.loads(out.stdout)
    items = doc if isinstance(doc, list) else doc.get("clusters", [])
    return {c.get("cluster") or c.get("id") for c in items}
