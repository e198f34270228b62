"""job_kill stops scenario and converge runs midway, over MCP stdio on real
clusters: the run ends at once with a clear outcome, its cluster is destroyed
while its step is still running, and nothing is left behind."""

import asyncio
import time

from conftest import err, ok, stdio_session
from test_converge import FakeModel, server_env, wait_job

SLOW = "name: mcp-slow\nnodes: 1\nsteps:\n  - name: takes ten minutes\n    shell: |\n      echo started\n      sleep 600\nchecks:\n  - file: /etc/hostname\n"


async def clusters_of(session, folder):
    """Clusters whose source names `folder`: this test's, not other tests'."""
    return [c["cluster"] for c in (await ok(session, "list"))["clusters"] if str(folder) in c["source"]]


async def wait_for_event(session, job, text, seconds=120):
    for _ in range(seconds * 5):
        status = await ok(session, "job_status", job)
        if any(text in e for e in status.get("events", [])):
            return status
        assert status["state"] == "running", status
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {text!r}: {status}")


def test_job_kill_stops_a_scenario_run_in_the_middle_of_a_step(tmp_path):
    (tmp_path / "slow.yaml").write_text(SLOW)

    async def main():
        async with stdio_session() as s:
            job = await ok(s, "run_scenario", {"path": str(tmp_path / "slow.yaml")})
            await wait_for_event(s, job, "takes ten minutes")
            assert len(await clusters_of(s, tmp_path)) == 1
            t0 = time.monotonic()
            status = await ok(s, "job_kill", job)
            stopped_in = time.monotonic() - t0
            assert status["state"] != "running", status
            assert status["outcome"] == "error", status
            assert "stopped on request" in status["report"]["error"], status["report"]["error"]
            # The step did not get to run its ten minutes.
            assert stopped_in < 60, stopped_in
            # Stopping a finished job changes nothing.
            again = await ok(s, "job_kill", job)
            assert again["state"] == status["state"]
            assert await clusters_of(s, tmp_path) == [], "the stopped run's cluster is gone"
    asyncio.run(main())


def test_job_kill_stops_a_converge_run_between_iterations(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text(
        "goal: Write /etc/rehearse-ok containing converged.\nlanguage: bash\nnodes: 1\n"
        "checks:\n  - file: /etc/rehearse-ok\n    contains: [converged]\n"
        "max_iterations: 5\nmax_wall: 10m\n"
    )
    # The model's code takes ten minutes; job_kill must not wait for it.
    slow = "Here:\n```bash\n#!/bin/bash\nsleep 600\n```\n"
    with FakeModel([slow] * 10) as model:
        env = server_env(REHEARSE_LLM_PROVIDER="openai", REHEARSE_LLM_BASE_URL=model.url,
                         REHEARSE_LLM_MODEL="fake-model")

        async def main():
            async with stdio_session(env=env) as s:
                job = await ok(s, "converge", {"path": str(task)})
                await wait_for_event(s, job, "iteration 1: running the code")
                for _ in range(300):
                    if await clusters_of(s, tmp_path):
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2)
                status = await ok(s, "job_kill", job)
                assert status["state"] != "running", status
                assert status["converge"]["verdict"] == "stopped", status["converge"]
                assert "stopped on request" in status["converge"]["summary"]
                # An unknown job id is a clear error.
                missing = await err(s, "job_kill", {"job_id": "job-none"})
                assert missing["code"] == "job_not_found", missing
                assert await clusters_of(s, tmp_path) == [], "the stopped converge run left no cluster"
        asyncio.run(main())
