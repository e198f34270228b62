"""Faults, healing, load and attack probes through the MCP tools, driven by
the official Python client over stdio on a real cluster: a partition observed
from the nodes and healed, a bounded load, a probe that finds an undeclared
open port, structured errors for bad input, and nothing left behind."""

import asyncio
import os

from conftest import err, live_cluster_ids, ok, stdio_session

WEB = (
    "systemd-run -q --unit web python3 -m http.server 80 --directory /etc && "
    "for i in $(seq 100); do ss -Hltn 'sport = :80' | grep -q . && break; sleep 0.05; done"
)
REACH = "curl -sS -o /dev/null -m 2 -w '%{http_code}' http://web/hostname"


async def sh(s, cid, node, command):
    return await ok(s, "exec", {"cluster": cid, "node": node, "command": command})


async def flow(s):
    names = {t.name for t in (await s.list_tools()).tools}
    assert {"fault", "heal", "faults", "load", "probe"} <= names, names

    c = await ok(s, "provision", {"nodes": ["web", "client", "other"], "ttl": "10m"})
    cid = c["cluster"]
    try:
        r = await sh(s, cid, "web", WEB)
        assert r["exit_code"] == 0, r
        r = await sh(s, cid, "client", REACH)
        assert r["stdout"] == "200", r

        # A partition between client and web, seen from both sides of it and
        # from a node outside it.
        f = await ok(s, "fault", {"cluster": cid, "fault": {"partition": {"sides": [["client"], ["web"]]}}})
        assert f["status"] == "active", f
        fid = f["id"]
        r = await sh(s, cid, "client", REACH)
        assert r["exit_code"] != 0 and r["stdout"] == "000", r
        r = await sh(s, cid, "web", "ping -c1 -W1 client >/dev/null && echo reached || echo cut")
        assert r["stdout"].strip() == "cut", r
        r = await sh(s, cid, "other", REACH)
        assert r["stdout"] == "200", r
        listed = await ok(s, "faults", {"cluster": cid})
        assert [(x["id"], x["status"]) for x in listed["faults"]] == [(fid, "active")], listed

        healed = await ok(s, "heal", {"cluster": cid, "fault": fid})
        assert [x["id"] for x in healed["healed"]] == [fid], healed
        r = await sh(s, cid, "client", REACH)
        assert r["stdout"] == "200", r
        listed = await ok(s, "faults", {"cluster": cid})
        assert [x["status"] for x in listed["faults"]] == ["healed"], listed
        for node in ("client", "web"):
            r = await sh(s, cid, node, "nft list tables")
            assert "rehearse_fault" not in r["stdout"], r
        e = await err(s, "heal", {"cluster": cid, "fault": fid})
        assert e["code"] == "refused" and f"fault {fid}" in e["message"] and "not active" in e["message"], e

        # A short, bounded load: exactly the requests asked for, all answered.
        load = await ok(s, "load", {"cluster": cid, "load": {
            "from": "client", "url": "http://web/hostname", "requests": 40, "duration": "20s",
            "concurrency": 2, "expect": {"error_rate": 0, "min_ok": 40},
        }})
        assert (load["requests"], load["ok"], load["failed"]) == (40, 40, 0), load
        assert load["p50_ms"] is not None and load["checks"], load
        assert all(k["status"] == "passed" for k in load["checks"]), load

        # A probe that finds the web server's port, not declared open.
        p = await ok(s, "probe", {"cluster": cid, "probe": {"ports": {"target": "web", "from": "client", "open": [22]}}})
        assert p["kind"] == "ports" and p["checks"][0]["status"] == "failed", p
        assert p["checks"][0]["actual"]["open"] == [22, 80], p
        assert "[80]" in p["checks"][0]["message"], p
        p = await ok(s, "probe", {"cluster": cid, "probe": {"ports": {"target": "web", "from": "client", "open": [22, 80]}}})
        assert p["checks"][0]["status"] == "passed", p

        # Bad input: structured errors naming what is wrong.
        e = await err(s, "fault", {"cluster": cid, "fault": {"crash": {"node": "nope"}}})
        assert "nope" in e["message"] and e["retryable"] is False, e
        e = await err(s, "fault", {"cluster": cid, "fault": {"explode": {"node": "web"}}})
        assert e["code"] == "invalid_input", e
        e = await err(s, "fault", {"cluster": cid, "fault": {"link": {"node": "web", "loss": 250}}})
        assert e["code"] == "invalid_input", e
        e = await err(s, "heal", {"cluster": cid, "fault": 999})
        assert e["code"] == "refused" and "no fault 999" in e["message"] and "faults" in e["message"], e
        e = await err(s, "load", {"cluster": cid, "load": {"from": "client", "url": "http://web/"}})
        assert e["code"] == "invalid_input" and "duration" in e["message"], e
        e = await err(s, "load", {"cluster": cid, "load": {"from": "client", "url": "ftp://web/", "requests": 5}})
        assert e["code"] == "invalid_input" and "http://" in e["message"], e
        e = await err(s, "load", {"cluster": cid, "load": {"from": "ghost", "url": "http://web/", "requests": 5}})
        assert "ghost" in e["message"], e
        e = await err(s, "probe", {"cluster": cid, "probe": {"internal": {"target": "web", "port": 80, "network": "default"}}})
        assert "outside node" in e["message"], e
        e = await err(s, "probe", {"cluster": cid, "probe": {"files": {"node": "ghost"}}})
        assert "ghost" in e["message"], e
        e = await err(s, "probe", {"cluster": "ffffff", "probe": {"files": {"node": "web"}}})
        assert e["code"] == "cluster_not_found", e

        # Nothing of the load or probe agents stays on the nodes.
        r = await sh(s, cid, "client", "ps -eo args | grep -c '[p]ython3 -I -c' || true")
        assert r["stdout"].strip() == "0", r
        # A fault left on is undone by destroy.
        await ok(s, "fault", {"cluster": cid, "fault": {"partition": {"sides": [["client"], ["other"]]}}})
    finally:
        await ok(s, "destroy", {"cluster": cid})
    assert cid not in live_cluster_ids()
    links = [l for l in os.listdir("/sys/class/net") if cid in l]
    assert links == [], links


def test_fault_heal_load_probe_over_stdio():
    async def main():
        async with stdio_session() as s:
            await flow(s)
    asyncio.run(main())
