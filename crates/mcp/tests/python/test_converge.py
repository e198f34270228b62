"""`converge` over MCP stdio, against a fake model: a tiny OpenAI-compatible
Chat Completions server answering with canned completions in order."""

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mcp import types

from conftest import call, err, ok, stdio_session

LLM_VARS = ("REHEARSE_LLM_PROVIDER", "REHEARSE_LLM_BASE_URL", "REHEARSE_LLM_MODEL",
            "REHEARSE_LLM_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")

TASK = """\
goal: Write /etc/rehearse-ok containing the word converged, and make `hello` print hi.
language: bash
nodes: 1
checks:
  - file: /etc/rehearse-ok
    contains: [converged]
  - command: hello
    exit_status: 0
    stdout: [hi]
max_iterations: 3
max_wall: 5m
"""

BROKEN = "#!/bin/bash\nset -euo pipefail\nif then fi\n"
GOOD = ("#!/bin/bash\nset -euo pipefail\n"
        "echo converged > /etc/rehearse-ok\n"
        "printf '#!/bin/sh\\necho hi\\n' > /usr/local/bin/hello\n"
        "chmod 0755 /usr/local/bin/hello\n")


def completion(text):
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class FakeModel:
    """Answers POST /v1/chat/completions with `answers` in order; records requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                model.requests.append((self.path, body))
                if self.path != "/v1/chat/completions" or not model.answers:
                    self.send_response(404 if model.answers else 500)
                    self.end_headers()
                    return
                data = json.dumps(completion(model.answers.pop(0))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def server_env(**llm):
    env = {k: v for k, v in os.environ.items() if k not in LLM_VARS}
    env.update(llm)
    return env


async def wait_job(session, job, seconds=300):
    for _ in range(seconds * 5):
        status = await ok(session, "job_status", job)
        if status["state"] != "running":
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"job still running after {seconds} s: {status}")


def test_converge_with_a_fake_model(tmp_path):
    # A task file in a folder of its own: the clusters it starts name it in
    # their source, which tells them apart from other tests' clusters.
    task = tmp_path / "task.yaml"
    task.write_text(TASK)
    progress = []

    # The job outlives the call that started it, so its progress notifications
    # arrive after the call's answer: the session's message handler sees them.
    async def on_message(message):
        message = getattr(message, "root", message)
        if isinstance(message, types.ProgressNotification):
            progress.append(message.params.message)

    with FakeModel([f"Here it is:\n```bash\n{BROKEN}```\n", f"Fixed:\n```bash\n{GOOD}```\n"]) as fake:
        env = server_env(REHEARSE_LLM_PROVIDER="openai", REHEARSE_LLM_BASE_URL=fake.url, REHEARSE_LLM_MODEL="fake")

        async def main():
            async with stdio_session(env, message_handler=on_message) as s:
                tools = {t.name: t for t in (await s.list_tools()).tools}
                assert "yaml" in tools["converge"].input_schema["properties"]
                job = await ok(s, "converge", {"path": str(task)}, meta={"progressToken": "converge-1"})
                assert job["job_id"]
                status = await wait_job(s, job)
                left = [c["cluster"] for c in (await ok(s, "list"))["clusters"] if str(tmp_path) in c["source"]]
                return status, left
        status, left = asyncio.run(main())

    assert (status["state"], status["kind"], status["outcome"], status["exit_code"]) == ("exited", "converge", "converged", 0), status
    result = status["converge"]
    assert result["converged"] is True and result["model"] == "openai/fake", result
    assert result["script"] == GOOD
    assert len(result["iterations"]) == 2, result["iterations"]
    first, second = result["iterations"]
    assert (first["outcome"], first["path"]) == ("failed", "retry"), first
    assert "syntax error" in first["reason"]
    assert (second["number"], second["origin"], second["outcome"]) == (2, "model-retry", "passed")
    assert result["tokens"] == {"input": 200, "output": 40, "total": 240}
    assert result["run_id"] == status["run_id"] and os.path.isfile(result["report_path"])
    # The loop's progress lines are the job's events.
    assert any("iteration 1" in e for e in status["events"]), status["events"]
    assert status["events"][-1].startswith("finished: converged")
    assert progress == status["events"], progress
    # Both answers came from the fake over the wire, the second a retry that carried the failure.
    assert [p for p, _ in fake.requests] == ["/v1/chat/completions"] * 2
    assert fake.requests[0][1]["model"] == "fake"
    assert "syntax error" in json.dumps(fake.requests[1][1]["messages"])
    assert left == [], f"converge left clusters behind: {left}"


def test_converge_bad_input_and_no_model(tmp_path):
    bad = tmp_path / "task.yaml"
    bad.write_text("goal: x\nlanguage: bash\nnodes: 1\nchecks:\n  - file: /etc/x\n    containz: [a]\n")

    async def main():
        async with stdio_session(server_env()) as s:
            e1 = await call(s, "converge", {"path": str(bad)})
            e2 = await call(s, "converge", {"yaml": TASK, "base_dir": str(tmp_path)})
            e3 = await call(s, "converge", {"yaml": TASK, "provider": "gemeni"})
            return e1, e2, e3
    (err1, bad_task), (err2, no_model), (err3, bad_provider) = asyncio.run(main())
    assert err1 and bad_task["error"]["code"] == "invalid_input", bad_task
    assert f"{bad}:6" in bad_task["error"]["message"], bad_task
    assert err2 and no_model["error"]["code"] == "llm_unavailable", no_model
    assert "rules doctor" in no_model["error"]["message"] and not no_model["error"]["retryable"]
    assert err3 and bad_provider["error"]["code"] == "invalid_input", bad_provider


def test_evaluate_runs_as_a_job_and_refuses_bad_input_before_any_attempt(tmp_path):
    """`evaluate` measures a model over tasks: a job whose report is the
    evaluation; tasks and platforms are checked before any attempt runs."""
    task = tmp_path / "hello" / "task.yaml"
    task.parent.mkdir()
    task.write_text(TASK)
    bad = tmp_path / "bad" / "task.yaml"
    bad.parent.mkdir()
    bad.write_text("goal: x\nlanguage: bash\nnodes: 1\nchekcs: []\n")

    with FakeModel([f"```bash\n{GOOD}```\n"]) as fake:
        env = server_env(REHEARSE_LLM_PROVIDER="openai", REHEARSE_LLM_BASE_URL=fake.url, REHEARSE_LLM_MODEL="fake")

        async def main():
            async with stdio_session(env) as s:
                refused = [
                    await err(s, "evaluate", {"paths": [str(tmp_path / "nowhere")]}),
                    await err(s, "evaluate", {"paths": [str(bad.parent)]}),
                    await err(s, "evaluate", {"paths": [str(task.parent)], "platforms": ["nosuch-9"]}),
                    await err(s, "evaluate", {"paths": [str(task.parent)], "min_pass_rate": 80}),
                ]
                job = await ok(s, "evaluate", {"paths": [str(task.parent)], "attempts": 1})
                status = await wait_job(s, job)
                left = [c["cluster"] for c in (await ok(s, "list"))["clusters"] if str(tmp_path) in c["source"]]
                return refused, status, left
        refused, status, left = asyncio.run(main())

    fields = [e.get("field") for e in refused]
    assert fields == ["paths", "paths", "platforms", "min_pass_rate"], refused
    assert "chekcs" in refused[1]["message"], refused[1]
    assert "nosuch-9" in refused[2]["message"], refused[2]
    # Only the one attempt asked the model: nothing ran for the refusals.
    assert len(fake.requests) == 1, fake.requests
    assert (status["state"], status["kind"], status["outcome"], status["exit_code"]) == ("exited", "evaluate", "passed", 0), status
    report = status["report"]
    assert report["passed"] is True and report["model"] == "openai/fake", report
    assert report["total"]["attempts"] == 1 and report["total"]["converged"] == 1, report["total"]
    assert report["run_id"] == status["run_id"]
    assert left == [], f"evaluate left clusters behind: {left}"
