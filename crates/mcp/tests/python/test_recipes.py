"""The recipe tools over MCP stdio: search, show, and a real proof on a fresh cluster."""

import asyncio

from conftest import err, live_cluster_ids, ok, stdio_session


def test_recipes_search_show_prove():
    async def main():
        async with stdio_session() as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert {"recipe_search", "recipe_show", "recipe_prove"} <= names, names

            found = await ok(s, "recipe_search", {"query": "load balancer in front of nginx web servers"})
            assert found["hits"][0]["name"] == "web-lb", found
            found = await ok(s, "recipe_search", {"query": "postgres streaming replica", "limit": 1})
            assert [h["name"] for h in found["hits"]] == ["postgres-replica"], found

            shown = await ok(s, "recipe_show", {"name": "web-lb"})
            assert shown["recipe"]["version"] and shown["hash"].startswith("sha256:")
            files = {f["path"]: f["content"] for f in shown["files"]}
            assert "haproxy" in files["lb.sh"] and "{{LB_PORT}}" in files["rehearse.yaml"], sorted(files)

            e = await err(s, "recipe_show", {"name": "web-lbb"})
            assert e["code"] == "recipe_not_found" and "web-lb" in e["message"], e
            e = await err(s, "recipe_prove", {"name": "ssh-hardening", "set": {"NOPE": "1"}})
            assert "NOPE" in e["message"] and "PERMIT_ROOT" in e["message"], e

            job = await ok(s, "recipe_prove", {"name": "ssh-hardening"})
            for _ in range(600):
                status = await ok(s, "job_status", job)
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.2)
            assert status["outcome"] == "passed", status
            proof = status["report"]["record"]
            assert proof["recipe"] == "ssh-hardening" and proof["hash"] == (await ok(s, "recipe_show", {"name": "ssh-hardening"}))["hash"]
            assert proof["run_id"] == status["run_id"]
            shown = await ok(s, "recipe_show", {"name": "ssh-hardening"})
            assert shown["last_proof"]["run_id"] == proof["run_id"], shown["last_proof"]
            return status["report"]["report"]["cluster"]

    cluster = asyncio.run(main())
    assert cluster not in live_cluster_ids()
