"""The rehearse MCP server, driven by the official MCP Python SDK over stdio
and streamable HTTP, on real clusters."""

import asyncio
import json
import subprocess
import time

import httpx2 as httpx
import pytest

from conftest import REHEARSE, call, err, http_session, live_cluster_ids, ok, stdio_session

TOOLS = {
    "provision", "exec", "read_output", "exec_background", "job_status", "job_kill",
    "write_file", "read_file", "check", "run_scenario", "converge", "extend", "destroy", "list",
}


async def full_flow(session):
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert TOOLS <= set(tools), set(tools)
    assert tools["exec"].input_schema["properties"]["command"]

    cluster = await ok(session, "provision", {"nodes": 3, "ttl": "10m"})
    cid = cluster["cluster"]
    try:
        assert [n["name"] for n in cluster["nodes"]] == ["node1", "node2", "node3"]
        assert all(n["ip"] for n in cluster["nodes"])
        assert cluster["boot_ms"] > 0

        r = await ok(session, "exec", {"cluster": cid, "node": "node2", "command": "hostname; echo err >&2; exit 3"})
        assert (r["exit_code"], r["stdout"].strip(), r["stderr"].strip(), r["truncated"]) == (3, "node2", "err", False)

        # Output beyond the limit is cut with a marker and kept whole for read_output.
        r = await ok(session, "exec", {"cluster": cid, "node": "node1", "command": "head -c 100000 /dev/zero | tr '\\0' a"})
        assert r["truncated"] and "truncated" in r["stdout"] and r["output_id"]
        chunk = await ok(session, "read_output", {"output_id": r["output_id"], "offset": 99990})
        assert chunk["total_bytes"] == 100000 and chunk["text"] == "a" * 10 and chunk["eof"]

        w = await ok(session, "write_file", {"cluster": cid, "node": "node1", "path": "/srv/app/hello.txt", "content": "hello from mcp\n"})
        assert w["bytes"] == 15
        f = await ok(session, "read_file", {"cluster": cid, "node": "node1", "path": "/srv/app/hello.txt"})
        assert (f["content"], f["encoding"]) == ("hello from mcp\n", "text")
        await ok(session, "write_file", {"cluster": cid, "node": "node3", "path": "/tmp/bin", "content": "AAEC/w==", "encoding": "base64"})
        f = await ok(session, "read_file", {"cluster": cid, "node": "node3", "path": "/tmp/bin"})
        assert (f["content"], f["encoding"], f["bytes"]) == ("AAEC/w==", "base64", 4)

        failing = await ok(session, "check", {"cluster": cid, "checks": [
            {"file": "/srv/app/hello.txt", "on": "node1", "contains": ["goodbye"], "timeout": "1s"},
        ]})
        assert failing["passed"] is False and failing["summary"]["failed"] == 1
        assert failing["results"][0]["status"] == "failed" and "expected" in failing["results"][0]
        passing = await ok(session, "check", {"cluster": cid, "checks": "- file: /srv/app/hello.txt\n  on: node1\n  contains: [hello]\n- command: hostname\n  on: node2\n  stdout: [node2]\n"})
        assert passing["passed"] is True and passing["summary"]["passed"] == 2, passing

        job = await ok(session, "exec_background", {"cluster": cid, "node": "node2", "command": "echo started; sleep 1; echo finished"})
        status = await ok(session, "job_status", job)
        assert status["state"] in ("running", "exited")
        for _ in range(100):
            status = await ok(session, "job_status", job)
            if status["state"] != "running":
                break
            await asyncio.sleep(0.2)
        assert (status["state"], status["exit_code"]) == ("exited", 0), status
        assert status["stdout"].split() == ["started", "finished"]

        long = await ok(session, "exec_background", {"cluster": cid, "node": "node3", "command": "echo going; sleep 600"})
        await asyncio.sleep(1)
        killed = await ok(session, "job_kill", long)
        assert killed["state"] == "exited" and killed["exit_code"] != 0 and "going" in killed["stdout"], killed
        r = await ok(session, "exec", {"cluster": cid, "node": "node3", "command": "pgrep -x sleep || true"})
        assert r["stdout"].strip() == ""

        ext = await ok(session, "extend", {"cluster": cid, "ttl": "1h"})
        assert ext["ttl_left_s"] > 3000
        assert cid in {c["cluster"] for c in (await ok(session, "list"))["clusters"]}
        res = await session.read_resource(f"rehearse://clusters/{cid}")
        assert cid in res.contents[0].text
    finally:
        d = await ok(session, "destroy", {"cluster": cid})
    assert d["destroyed"] is True
    e = await err(session, "exec", {"cluster": cid, "node": "node1", "command": "true"})
    assert e["code"] == "cluster_not_found" and e["retryable"] is False
    assert cid not in live_cluster_ids()


async def bad_input(session):
    cid = (await ok(session, "provision", {"nodes": [{"name": "web1", "groups": ["web"]}, "client"]}))["cluster"]
    try:
        e = await err(session, "exec", {"cluster": cid, "node": "nope", "command": "true"})
        assert e["code"] == "node_not_found" and "web1" in e["message"] and e["retryable"] is False
        e = await err(session, "exec", {"cluster": cid, "node": "web1"})
        assert (e["code"], e["field"]) == ("invalid_input", "command")
        e = await err(session, "exec", {"cluster": cid, "node": "web1", "command": "true", "timeout": 3})
        assert (e["code"], e["field"]) == ("invalid_input", "timeout")
        e = await err(session, "check", {"cluster": cid, "checks": [{"bogus": "x", "on": "web1"}]})
        assert e["code"] == "invalid_input" and e["field"] == "checks"
        e = await err(session, "check", {"cluster": cid, "checks": [{"service": "nginx", "on": "nosuchnode"}]})
        assert e["code"] == "invalid_input"
        # Refusals name the field the way a scenario file's do.
        e = await err(session, "check", {"cluster": cid, "checks": [
            {"command": "true", "on": "web1"},
            {"http": "http://web1/", "on": "client", "statuss": 200}]})
        assert e["code"] == "invalid_input" and "checks[1].statuss" in e["message"], e
        assert "did you mean `status`" in e["message"], e
        e = await err(session, "check", {"cluster": cid, "checks": "- command: hostname\n  on: [web1\n"})
        assert e["code"] == "invalid_input" and "checks:" in e["message"], e
        e = await err(session, "exec", {"cluster": cid, "node": "web1", "command": "sleep 5", "timeout_s": 0.5})
        assert e["code"] == "timeout" and e["retryable"] is True
        e = await err(session, "read_file", {"cluster": cid, "node": "web1", "path": "/no/such/file"})
        assert e["code"] == "file_not_found"
        r = await ok(session, "check", {"cluster": cid, "checks": [{"command": "true", "on": "web"}]})
        assert r["passed"] and r["results"][0]["node"] == "web1"
    finally:
        await ok(session, "destroy", {"cluster": cid})

    e = await err(session, "provision", {"nodes": "three"})
    assert e["code"] == "invalid_input"
    e = await err(session, "provision", {"nodes": ["web1", {"name": "Bad_Name"}]})
    assert e["code"] == "invalid_input" and "Bad_Name" in e["message"] and "nodes[1].name" in e["message"], e
    e = await err(session, "exec", {"cluster": "ffffff", "node": "node1", "command": "true"})
    # The message says what went wrong; the hint, what to call next.
    assert e["code"] == "cluster_not_found" and "ffffff" in e["message"] and "provision" in e["hint"]
    assert "rehearse " not in e["message"] + e["hint"], e
    e = await err(session, "job_status", {"job_id": "job-nope"})
    assert e["code"] == "job_not_found"

    before = live_cluster_ids()
    short = (await ok(session, "provision", {"nodes": 1, "ttl": "2s"}))["cluster"]
    await asyncio.sleep(3)
    e = await err(session, "exec", {"cluster": short, "node": "node1", "command": "true"})
    assert e["code"] in ("cluster_expired", "cluster_not_found") and e["retryable"] is False
    assert "provision" in e["message"] + e.get("hint", "")
    assert short not in live_cluster_ids()


def test_stdio_full_flow():
    async def main():
        async with stdio_session() as s:
            await full_flow(s)
    asyncio.run(main())


def test_stdio_bad_input():
    async def main():
        async with stdio_session() as s:
            await bad_input(s)
    asyncio.run(main())


def test_http_full_flow(http_server):
    url, token = http_server

    async def main():
        async with http_session(url, token) as s:
            await full_flow(s)
    asyncio.run(main())


def provisioned_over_mcp(cluster):
    out = subprocess.run([REHEARSE, "--json", "ls"], capture_output=True, text=True, check=True)
    return any(c["cluster"] == cluster and c["source"] == "mcp provision" for c in json.loads(out.stdout)["clusters"])


def test_http_wrong_token(http_server):
    url, token = http_server
    for headers in ({"Authorization": "Bearer wrong"}, {}):
        r = httpx.post(url, headers={**headers, "Accept": "application/json, text/event-stream"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401, r.text
    before = live_cluster_ids()

    async def main():
        with pytest.raises(BaseException):
            async with http_session(url, "wrong") as s:
                await s.call_tool("provision", {"nodes": 1})
    asyncio.run(main())
    # Nothing was provisioned (other tests' clusters may come and go meanwhile:
    # the host is shared).
    assert not {c for c in live_cluster_ids() - before if provisioned_over_mcp(c)}


def test_http_four_concurrent_clients(http_server):
    url, token = http_server

    async def client(i):
        async with http_session(url, token) as s:
            c = await ok(s, "provision", {"nodes": 2})
            cid = c["cluster"]
            try:
                marker = f"client {i} owns {cid}"
                await ok(s, "write_file", {"cluster": cid, "node": "node1", "path": "/root/owner", "content": marker})
                await asyncio.sleep(0.5)
                f = await ok(s, "read_file", {"cluster": cid, "node": "node1", "path": "/root/owner"})
                assert f["content"] == marker
                return cid
            finally:
                await ok(s, "destroy", {"cluster": cid})

    async def main():
        return await asyncio.gather(*(client(i) for i in range(4)))
    ids = asyncio.run(main())
    assert len(set(ids)) == 4
    assert not set(ids) & live_cluster_ids()


def test_run_scenario_with_progress(tmp_path):
    (tmp_path / "setup.sh").write_text("echo configured > /etc/motd-rehearse\n")
    yaml = "name: mcp-demo\nnodes: 1\nsteps:\n  - shell: setup.sh\nchecks:\n  - file: /etc/motd-rehearse\n    contains: [configured]\n"
    seen = []

    async def on_progress(progress, total, message):
        seen.append(message)

    async def main():
        async with stdio_session() as s:
            job = await ok(s, "run_scenario", {"yaml": yaml, "base_dir": str(tmp_path)}, progress_callback=on_progress)
            for _ in range(300):
                status = await ok(s, "job_status", job)
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.2)
            assert status["state"] == "exited" and status["outcome"] == "passed", status
            report = await s.read_resource(f"rehearse://runs/{status['run_id']}")
            assert '"passed"' in report.contents[0].text
            return status
    status = asyncio.run(main())
    assert status["events"]


def test_run_scenario_runs_a_matrix_and_its_report_is_the_cli_report(tmp_path):
    """`platforms` makes run_scenario a matrix; the job's report is the
    document `rehearse --json run --platform` prints, and bad options are
    refused before any cluster starts, naming the field."""
    import json
    (tmp_path / "setup.sh").write_text("echo configured > /etc/motd-rehearse\n")
    (tmp_path / "rehearse.yaml").write_text(
        "name: mcp-matrix\nnodes: 1\nsteps:\n  - shell: setup.sh\n"
        "checks:\n  - file: /etc/motd-rehearse\n    contains: [configured]\n")
    before = live_cluster_ids()

    async def main():
        async with stdio_session() as s:
            refused = [
                await err(s, "run_scenario", {"path": str(tmp_path), "platforms": ["nosuch-9"]}),
                await err(s, "run_scenario", {"path": str(tmp_path), "ttl": "soon"}),
                await err(s, "run_scenario", {"path": str(tmp_path), "backend": "docker"}),
                await err(s, "run_scenario", {"path": str(tmp_path), "platforms": ["debian-12"], "jobs": 0}),
            ]
            job = await ok(s, "run_scenario", {"path": str(tmp_path), "platforms": ["debian-12"]})
            for _ in range(600):
                status = await ok(s, "job_status", job)
                if status["state"] != "running":
                    break
                await asyncio.sleep(0.2)
            return refused, status
    refused, status = asyncio.run(main())
    assert [e.get("field") for e in refused] == ["platforms", "ttl", "backend", "jobs"], refused
    assert "nosuch-9" in refused[0]["message"], refused[0]
    assert (status["state"], status["outcome"], status["exit_code"]) == ("exited", "passed", 0), status
    report = status["report"]
    assert [p["platform"] for p in report["platforms"]] == ["debian-12"], report
    out = subprocess.run([REHEARSE, "--json", "run", str(tmp_path), "--platform", "debian-12"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert set(cli) == set(report), (sorted(cli), sorted(report))
    assert set(cli["platforms"][0]) == set(report["platforms"][0])
    assert cli["outcome"] == report["outcome"] == "passed"
    assert live_cluster_ids() <= before, "the runs left clusters behind"


def test_cli_verbs_give_the_documents_of_the_tools():
    """`rehearse exec/extend/ls --json` go through the same command set as the
    tools: the same fields, the same error codes."""
    import json
    import subprocess

    from conftest import REHEARSE

    def cli(*args):
        out = subprocess.run([REHEARSE, "--json", *args], capture_output=True, text=True)
        return out.returncode, json.loads(out.stdout)

    async def main():
        async with stdio_session() as s:
            cid = (await ok(s, "provision", {"nodes": 1, "ttl": "10m"}))["cluster"]
            try:
                tool = await ok(s, "exec", {"cluster": cid, "node": "node1", "command": "echo hi; exit 3"})
                code, doc = cli("exec", cid, "node1", "--", "sh", "-c", "echo hi; exit 3")
                assert code == 3 and set(doc) == set(tool), (doc, tool)
                assert (doc["exit_code"], doc["stdout"]) == (tool["exit_code"], tool["stdout"]) == (3, "hi\n")

                tool_error = await err(s, "exec", {"cluster": cid, "node": "node9", "command": "true"})
                code, doc = cli("exec", cid, "node9", "--", "true")
                assert code != 0 and doc["error"] == tool_error, (doc, tool_error)

                tool = await ok(s, "extend", {"cluster": cid, "ttl": "20m"})
                code, doc = cli("extend", cid, "--ttl", "1h")
                assert code == 0 and set(doc) == set(tool) and doc["ttl_left_s"] > 3000, doc
                code, doc = cli("extend", cid, "--ttl", "soon")
                assert code != 0 and doc["error"]["code"] == "invalid_input" and doc["error"]["field"] == "ttl", doc

                listed = [c for c in cli("ls")[1]["clusters"] if c["cluster"] == cid]
                tool = [c for c in (await ok(s, "list"))["clusters"] if c["cluster"] == cid]
                assert listed and set(listed[0]) == set(tool[0])
            finally:
                await ok(s, "destroy", {"cluster": cid})
    asyncio.run(main())
