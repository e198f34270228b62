# Written by rehearse (crates/runner): one JSON object per line for every task
# result, so the runner reads what Ansible did from data rather than from its
# human output. Enabled as an aggregate callback next to the default stdout
# callback; writes to the file named by REHEARSE_EVENTS.
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: rehearse_events
    type: aggregate
    short_description: task results as JSON lines for rehearse
    description:
      - Appends one JSON object per task start, task result and host recap to the
        file named by the REHEARSE_EVENTS environment variable.
    requirements:
      - REHEARSE_EVENTS set to a writable path
"""

# Longest text kept for one field; the full text is in Ansible's own log.
MAX_TEXT = 64 * 1024
MAX_OUTPUT = 4 * 1024


def _text(value, limit=MAX_TEXT):
    """A field as text: strings as they are, structures as sorted JSON, cut to limit."""
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = json.dumps(value, indent=2, sort_keys=True, default=str)
        except Exception:  # noqa: BLE001 - anything unprintable is shown as repr
            value = repr(value)
    if len(value) > limit:
        value = "[... %d characters cut]\n" % (len(value) - limit) + value[-limit:]
    return value


def _diffs(result):
    """Every diff of a result, including those of loop items."""
    found = []

    def take(diff):
        if not diff:
            return
        for d in diff if isinstance(diff, list) else [diff]:
            if isinstance(d, dict) and d:
                found.append(d)

    take(result.get("diff"))
    for item in result.get("results") or []:
        if isinstance(item, dict):
            take(item.get("diff"))
    return found


def _message(result):
    """The most telling message of a result; for loops, the first failed item's."""
    msg = result.get("msg")
    items = result.get("results") or []
    failed = [i for i in items if isinstance(i, dict) and i.get("failed")]
    if failed and (not msg or msg == "One or more items failed"):
        first = failed[0]
        msg = first.get("msg") or msg
        if "item" in first:
            msg = "item %s: %s" % (_text(first.get("item"), 200), msg)
        return msg, first
    return msg, result


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "rehearse_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        path = os.environ.get("REHEARSE_EVENTS")
        self._out = open(path, "a", buffering=1, encoding="utf-8") if path else None
        self._play = None
        self._started = {}
        # Task names as the strategy templated them (`name: install {{ pkg }}`),
        # by task id: results carry the raw name.
        self._names = {}

    def _emit(self, event):
        if self._out is None:
            return
        self._out.write(json.dumps(event, default=str) + "\n")
        self._out.flush()

    def _task_fields(self, task):
        role = task._role.get_name() if getattr(task, "_role", None) else None
        action = getattr(task, "resolved_action", None) or task.action
        name = self._names.get(task._uuid) or task.name or action
        try:
            path = task.get_path()
        except Exception:  # noqa: BLE001 - a task without a source position
            path = None
        handler = type(task).__name__ == "Handler"
        return {"task": name, "role": role, "action": action, "path": path, "handler": handler}

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()
        self._emit({"event": "play_start", "play": self._play, "time": time.time()})

    def v2_playbook_on_task_start(self, task, is_conditional):
        if task.name:
            self._names[task._uuid] = task.name

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.time()
        event = {"event": "task_start", "host": host.get_name(), "play": self._play}
        event.update(self._task_fields(task))
        event["uuid"] = task._uuid
        self._emit(event)

    def _result(self, result, status, ignored=False):
        task = result._task
        host = result._host.get_name()
        r = result._result or {}
        started = self._started.pop((host, task._uuid), None)
        event = {"event": "task_result", "host": host, "play": self._play, "status": status}
        event.update(self._task_fields(task))
        event["uuid"] = task._uuid
        event["ignored"] = bool(ignored)
        event["duration_ms"] = int((time.time() - started) * 1000) if started else None
        if r.get("_ansible_no_log"):
            event["msg"] = "the output has been hidden due to no_log"
            self._emit(event)
            return
        msg, source = _message(r)
        event["msg"] = _text(msg, MAX_OUTPUT) if msg else None
        if status in ("failed", "unreachable"):
            event["rc"] = source.get("rc")
            event["stderr"] = _text(source.get("stderr") or source.get("module_stderr"), MAX_OUTPUT)
            event["stdout"] = _text(source.get("stdout") or source.get("module_stdout"), MAX_OUTPUT)
        diffs = []
        for d in _diffs(r):
            diffs.append(
                {
                    "before_header": _text(d.get("before_header"), 1024),
                    "after_header": _text(d.get("after_header"), 1024),
                    "before": _text(d.get("before")),
                    "after": _text(d.get("after")),
                    "prepared": _text(d.get("prepared")),
                }
            )
        if diffs:
            event["diff"] = diffs
            try:
                event["diff_text"] = _text(self._get_diff(_diffs(r)))
            except Exception:  # noqa: BLE001 - the structured diff is still there
                pass
        self._emit(event)

    def v2_runner_on_ok(self, result):
        changed = bool((result._result or {}).get("changed"))
        self._result(result, "changed" if changed else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed", ignored=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable", ignored=bool(getattr(result._task, "ignore_unreachable", False)))

    def v2_playbook_on_no_hosts_matched(self):
        self._emit({"event": "no_hosts_matched", "play": self._play})

    def v2_playbook_on_stats(self, stats):
        recap = {h: stats.summarize(h) for h in sorted(stats.processed.keys())}
        self._emit({"event": "recap", "hosts": recap})
