"""`rehearse mcp --pool`: provision with a node count takes a cluster from the
warm pool the session keeps (the official Python client over stdio), and the
pool's waiting clusters are gone when the session ends."""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

from conftest import REHEARSE, ok, stdio_session

SHARED = os.environ.get("REHEARSE_HOME") or "/var/lib/rehearse"


def rehearse(env, *args):
    out = subprocess.run([REHEARSE, "--json", *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def waiting(env, at_least, timeout=120):
    deadline = time.time() + timeout
    while True:
        status = rehearse(env, "pool", "status")
        ids = [p["cluster"] for p in status["ready"]]
        if len(ids) >= at_least or time.time() > deadline:
            return ids
        time.sleep(0.2)


def test_provision_takes_a_cluster_from_the_pool_the_session_keeps():
    home = tempfile.mkdtemp(prefix="test-home-", dir=SHARED)
    os.symlink(os.path.join(SHARED, "images"), os.path.join(home, "images"))
    env = {**os.environ, "REHEARSE_HOME": home, "REHEARSE_DATABASE_URL": "", "REHEARSE_HISTORY": ""}
    mine = None
    try:
        rehearse(env, "pool", "set", "--nodes", "2", "--size", "1")
        params_env = dict(env)

        async def session():
            nonlocal mine
            from mcp import ClientSession, StdioServerParameters
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(command=REHEARSE, args=["mcp", "--pool"], env=params_env)
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    ready = await asyncio.to_thread(waiting, env, 1)
                    assert ready, "the session's pool never filled"
                    c = await ok(s, "provision", {"nodes": 2, "ttl": "10m"})
                    mine = c["cluster"]
                    assert mine in ready, (mine, ready)
                    assert [n["name"] for n in c["nodes"]] == ["node1", "node2"], c
                    r = await ok(s, "exec", {"cluster": mine, "node": "node1", "command": "hostname"})
                    assert r["stdout"].strip() == "node1", r
                    listed = await ok(s, "list", {})
                    assert [x["cluster"] for x in listed["clusters"]] == [mine], listed

        asyncio.run(session())
        # The session ended: what waited in its pool is gone, the claimed one stays.
        deadline = time.time() + 60
        while time.time() < deadline:
            left = sorted(n for n in os.listdir(os.path.join(home, "clusters")) if not n.startswith("."))
            if left == [mine]:
                break
            time.sleep(0.2)
        assert left == [mine], left
        assert rehearse(env, "pool", "status")["ready"] == []
    finally:
        if mine:
            subprocess.run([REHEARSE, "down", mine], env=env, capture_output=True)
        clusters = os.path.join(home, "clusters")
        for id in os.listdir(clusters) if os.path.isdir(clusters) else []:
            if not id.startswith("."):
                subprocess.run([REHEARSE, "down", id], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
