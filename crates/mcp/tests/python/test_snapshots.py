"""Snapshots, restore and saved images through the MCP tools, driven by the
official Python client over stdio on a real cluster: state changed after a
snapshot comes back on every node, a node saved as an image boots in a new
cluster, bad input gets structured errors, and nothing is left behind."""

import asyncio
import json
import os
import subprocess

from conftest import REHEARSE, err, live_cluster_ids, ok, stdio_session


async def sh(s, cid, node, command):
    r = await ok(s, "exec", {"cluster": cid, "node": node, "command": command})
    assert r["exit_code"] == 0, (command, r)
    return r["stdout"].strip()


async def flow(s):
    names = {t.name for t in (await s.list_tools()).tools}
    assert {"snapshot", "restore", "snapshots", "snapshot_remove", "save_image"} <= names, names

    cid = (await ok(s, "provision", {"nodes": ["app", "db"], "ttl": "10m"}))["cluster"]
    image = f"mcp-saved-{os.getpid()}"
    later = None
    try:
        await ok(s, "write_file", {"cluster": cid, "node": "app", "path": "/etc/app/config", "content": "mode=safe\n"})
        await sh(s, cid, "db", "useradd -m carol && rm /etc/issue.net")

        snap = await ok(s, "snapshot", {"cluster": cid, "name": "before-upgrade"})
        assert snap["name"] == "before-upgrade" and [n["name"] for n in snap["nodes"]] == ["app", "db"], snap
        assert snap["copy"] in ("reflink", "copy") and snap["bytes"] > 0, snap
        listed = await ok(s, "snapshots", {"cluster": cid})
        assert [x["name"] for x in listed["snapshots"]] == ["before-upgrade"], listed

        # The risky change: config rewritten, a user gone, an image file deleted.
        await ok(s, "write_file", {"cluster": cid, "node": "app", "path": "/etc/app/config", "content": "mode=broken\n"})
        await sh(s, cid, "db", "userdel carol; rm /etc/os-release; echo x > /etc/issue.net")

        restored = await ok(s, "restore", {"cluster": cid, "name": "before-upgrade"})
        assert {n["name"] for n in restored["nodes"]} == {"app", "db"}, restored
        f = await ok(s, "read_file", {"cluster": cid, "node": "app", "path": "/etc/app/config"})
        assert f["content"] == "mode=safe\n", f
        assert await sh(s, cid, "db", "id -un carol") == "carol"
        assert "Debian" in await sh(s, cid, "db", "cat /etc/os-release")
        assert await sh(s, cid, "db", "test -e /etc/issue.net && echo present || echo absent") == "absent"
        assert await sh(s, cid, "app", "ping -c1 -W2 db >/dev/null && echo up") == "up"

        saved = await ok(s, "save_image", {"cluster": cid, "node": "app", "image": image})
        assert saved["name"] == image and saved["parent"] and saved["parent"] != saved["id"], saved
        later = (await ok(s, "provision", {"nodes": [{"name": "fresh", "image": image}], "ttl": "10m"}))["cluster"]
        f = await ok(s, "read_file", {"cluster": later, "node": "fresh", "path": "/etc/app/config"})
        assert f["content"] == "mode=safe\n", f

        # Bad input: structured errors naming what is wrong.
        e = await err(s, "restore", {"cluster": cid, "name": "after-upgrade"})
        assert e["code"] == "snapshot_not_found" and "before-upgrade" in e["message"] and not e["retryable"], e
        e = await err(s, "snapshot", {"cluster": cid, "name": "../escape"})
        assert e["code"] == "refused" and "[a-z0-9]" in e["message"], e
        e = await err(s, "snapshot", {"cluster": cid})
        assert (e["code"], e["field"]) == ("invalid_input", "name"), e
        e = await err(s, "save_image", {"cluster": cid, "node": "nosuch", "image": "x"})
        assert e["code"] == "node_not_found" and "app" in e["message"], e
        e = await err(s, "save_image", {"cluster": cid, "node": "app", "image": image})
        assert "already exists" in e["message"], e
        e = await err(s, "restore", {"cluster": cid, "name": "before-upgrade", "boot_timeout": "soon"})
        assert (e["code"], e["field"]) == ("invalid_input", "boot_timeout"), e

        removed = await ok(s, "snapshot_remove", {"cluster": cid, "name": "before-upgrade"})
        assert removed["removed"]["name"] == "before-upgrade", removed
        assert (await ok(s, "snapshots", {"cluster": cid}))["snapshots"] == []
    finally:
        for c in (cid, later):
            if c:
                await ok(s, "destroy", {"cluster": c})
        subprocess.run([REHEARSE, "image", "rm", image], capture_output=True)
    assert not {cid, later} & live_cluster_ids()
    images = json.loads(subprocess.run([REHEARSE, "--json", "image", "ls"], capture_output=True, text=True, check=True).stdout)
    assert image not in {i["name"] for i in images["images"]}


def test_snapshot_restore_and_save_through_mcp():
    async def main():
        async with stdio_session() as s:
            await flow(s)
    asyncio.run(main())
