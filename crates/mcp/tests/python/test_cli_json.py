"""One command set behind every front end: the CLI's `--json` answer and the
MCP tool result for the same command are the same document (answers and
errors alike), on a real cluster driven by the official Python client."""

import asyncio
import json
import subprocess

from conftest import REHEARSE, call, ok, stdio_session

# Fields that change between two calls made a moment apart, whatever the
# front end: the time left before expiry, memory in use, how long a command ran.
MOVING = {"ttl_left_s", "memory_used_bytes", "duration_ms", "expires_at"}


def steady(doc):
    if isinstance(doc, dict):
        return {k: ("<moving>" if k in MOVING else steady(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [steady(v) for v in doc]
    return doc


def cli(*args, expect_ok=True):
    out = subprocess.run([REHEARSE, "--json", *args], capture_output=True, text=True, timeout=120)
    assert (out.returncode == 0) == expect_ok, (args, out.returncode, out.stdout, out.stderr)
    return json.loads(out.stdout)


async def same(s, tool, args, *cli_args):
    is_error, from_mcp = await call(s, tool, args)
    from_cli = cli(*cli_args, expect_ok=not is_error)
    assert steady(from_cli) == steady(from_mcp), (tool, from_cli, from_mcp)
    return from_mcp


async def flow(s):
    cid = (await ok(s, "provision", {"nodes": ["a", "b"], "ttl": "10m"}))["cluster"]
    try:
        await ok(s, "snapshot", {"cluster": cid, "name": "first"})
        await ok(s, "fault", {"cluster": cid, "fault": {"partition": {"sides": [["a"], ["b"]]}}})

        listed = await same(s, "snapshots", {"cluster": cid}, "snapshot", "ls", cid)
        assert [x["name"] for x in listed["snapshots"]] == ["first"], listed
        faults = await same(s, "faults", {"cluster": cid}, "fault", cid, "ls")
        assert len(faults["faults"]) == 1, faults
        ran = await same(
            s, "exec", {"cluster": cid, "node": "a", "command": "'echo' 'hello'"}, "exec", cid, "a", "--", "echo", "hello"
        )
        assert ran["stdout"] == "hello\n" and ran["exit_code"] == 0, ran
        # Other clusters on the host come and go between two calls; this
        # cluster's entry must be the same in both lists.
        mine = lambda doc: [steady(c) for c in doc["clusters"] if c["cluster"] == cid]
        from_mcp = mine(await ok(s, "list", {}))
        from_cli = mine(cli("ls"))
        assert len(from_mcp) == 1 and from_cli == from_mcp, (from_cli, from_mcp)

        # The host check: the same checks and impairments (what was measured,
        # free memory or disk, moves between two calls).
        _, host = await call(s, "host_check", {})
        doctor = cli("doctor", expect_ok=host["ok"])
        names = lambda doc: [c["name"] for c in doc["checks"]]
        assert names(doctor) == names(host) and "capacity" in names(host), (doctor, host)
        assert doctor["impairments"] == host["impairments"] and doctor["ok"] == host["ok"], (doctor, host)

        # History and housekeeping: the cached images, the recorded runs.
        images = await same(s, "images", {}, "image", "ls")
        assert any(i["name"] == "debian-12" for i in images["images"]), images
        # Other tests record runs between two calls: the finished runs both
        # lists hold must be the same rows.
        _, from_mcp = await call(s, "runs", {"status": "passed", "limit": 20})
        from_cli = cli("runs", "ls", "--status", "passed", "--limit", "20")
        by_id = {r["id"]: r for r in from_mcp["runs"]}
        assert all(r == by_id[r["id"]] for r in from_cli["runs"] if r["id"] in by_id), (from_cli, from_mcp)

        # The recipe catalogue, searched and shown.
        found = await same(s, "recipe_search", {"query": "load balancer", "limit": 3}, "recipe", "search", "load", "balancer", "--limit", "3")
        assert found["hits"], found
        shown = await same(s, "recipe_show", {"name": found["hits"][0]["name"]}, "recipe", "show", found["hits"][0]["name"])
        assert shown["files"] and shown["hash"], shown

        # Errors are the same document too: code, message, retryable, field.
        unknown = await same(s, "recipe_show", {"name": "nosuch"}, "recipe", "show", "nosuch")
        assert unknown["error"]["code"] == "recipe_not_found", unknown
        nosuch = await same(s, "run_show", {"run": "nosuch"}, "runs", "show", "nosuch")
        assert nosuch["error"]["code"] == "run_not_found", nosuch
        gone = await same(s, "snapshots", {"cluster": "nosuch"}, "snapshot", "ls", "nosuch")
        assert gone["error"]["code"] == "cluster_not_found", gone
        missing = await same(s, "restore", {"cluster": cid, "name": "never"}, "restore", cid, "never")
        assert missing["error"]["code"] == "snapshot_not_found", missing
    finally:
        await ok(s, "destroy", {"cluster": cid})


def test_cli_json_and_mcp_answer_with_the_same_document():
    async def main():
        async with stdio_session() as s:
            await flow(s)

    asyncio.run(main())
