"""rehearse check agent: evaluates one node's checks in one process.

Run on the node as `python3 -I -c <this file>` with a JSON request on stdin:

    {"protocol": 1, "interval_ms": 250, "deadline_ms": 14250, "attempt_grace_ms": 2000,
     "checks": [{"id": 0, "timeout_ms": 10000, "attempt_timeout_ms": 5000,
                 "skip_unless": null, "skip_timeout_ms": 10000,
                 "kind": {"kind": "http", "url": "http://lb/", ...}}]}

Every check runs in a thread of its own and is retried every `interval_ms` until it
passes or `timeout_ms` is spent (0: one attempt). One JSON document goes to stdout:

    {"agent": {"protocol": 1, "pid": 42, "python": "3.11.2", "checks": 1},
     "results": [{"id": 0, "status": "passed", "expected": {...}, "actual": {...},
                  "message": "", "attempts": 3, "duration_ms": 512}]}

Only the Python standard library is used (nodes are minimal Debian), and
nothing newer than Python 3.7. Nothing is
written on the node. Every sub-process, socket and name lookup is bounded, and the
whole run ends by `deadline_ms` whatever the checks do.
"""

import grp
import ipaddress
import json
import os
import platform
import pwd
import re
import selectors
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

PROTOCOL = 1
# How much of a body, output or file goes into a result.
EXCERPT_BYTES = 2048
# How much of a body, output or file matchers look at.
READ_LIMIT = 4 << 20
# How long output may keep coming after a command exited (background children
# holding its pipes are killed after that).
EXIT_GRACE_S = 0.2
CONNECT_TIMEOUT_S = 2.0
TOOL_ENV = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")


class BadCheck(Exception):
    """The check itself cannot be evaluated (bad regex, bad port); not retried."""


class AttemptTimeout(Exception):
    pass


def secs(seconds):
    return "%g s" % round(seconds, 1)


def excerpt(data):
    return data[:EXCERPT_BYTES].decode("utf-8", "replace")


def quote(text):
    return json.dumps(text, ensure_ascii=False)


# --- matchers -------------------------------------------------------------------


class Matcher:
    """A plain substring or a `/regex/`, negated by a leading `!`."""

    def __init__(self, text, exact=False):
        self.text = text
        body = text
        self.negate = body.startswith("!")
        if self.negate:
            body = body[1:]
        self.regex = None
        if len(body) >= 2 and body.startswith("/") and body.endswith("/"):
            try:
                # Contents are files and outputs made of lines: ^ and $ match
                # at every line's start and end (\A and \Z at the text's).
                self.regex = re.compile(body[1:-1], re.MULTILINE)
            except re.error as e:
                raise BadCheck("invalid regular expression %s: %s" % (body, e))
        self.body = body
        self.exact = exact

    def matches(self, value):
        if value is None:
            return self.negate
        if self.regex is not None:
            found = self.regex.search(value) is not None
        elif self.exact:
            found = value == self.body
        else:
            found = self.body in value
        return found != self.negate

    def describe_failure(self, what):
        """What is wrong when `matches` returned False."""
        if self.regex is not None:
            verb = "matches" if self.negate else "does not match"
            return "%s %s %s" % (what, verb, self.body)
        if self.exact:
            verb = "is" if self.negate else "is not"
            return "%s %s %s" % (what, verb, quote(self.body))
        verb = "contains" if self.negate else "does not contain"
        return "%s %s %s" % (what, verb, quote(self.body))


def matchers(texts):
    return [Matcher(t) for t in texts]


def unmet(ms, value, what):
    return [m.describe_failure(what) for m in ms if not m.matches(value)]


def version_matches(wanted, version):
    """Plain versions match exactly or as leading components (`2.4` matches
    `2.4.57-2` but not `2.45`); `/regex/` and `!` work as everywhere."""
    m = Matcher(wanted, exact=True)
    if m.regex is not None or m.negate or version is None:
        return m.matches(version)
    if version == m.body:
        return True
    return version.startswith(m.body) and version[len(m.body)] in ".-+~:"


# --- bounded side effects ---------------------------------------------------------


class Proc:
    def __init__(self, code, out, err, timed_out):
        self.code = code
        self.out = out
        self.err = err
        self.timed_out = timed_out

    def text(self):
        return self.out.decode("utf-8", "replace")


def exited_without_reaping(pid):
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def run_process(argv, timeout, env=None):
    """Runs argv in a process group of its own, with stdin closed, collecting
    output until it exits or `timeout` seconds pass. Whatever it leaves running
    is killed, so nothing outlives the check."""
    deadline = time.monotonic() + timeout
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A group of its own to kill with everything it started (a session, as
        # `process_group` needs Python 3.11 and images may be older).
        start_new_session=True,
        close_fds=True,
        env=env,
        cwd="/",
    )
    captured = {p.stdout.fileno(): bytearray(), p.stderr.fileno(): bytearray()}
    exited_at = None
    timed_out = False
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        sel.register(p.stderr, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            # Not reaped yet, so the process group id cannot be reused before
            # the killpg below.
            if exited_at is None and exited_without_reaping(p.pid):
                exited_at = now
            if exited_at is not None and (not sel.get_map() or now - exited_at > EXIT_GRACE_S):
                break
            if now >= deadline:
                timed_out = exited_at is None
                break
            if not sel.get_map():
                # It closed its output but runs on.
                time.sleep(min(0.01, deadline - now))
                continue
            for key, _ in sel.select(min(0.05, deadline - now)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif len(captured[key.fd]) < READ_LIMIT:
                    captured[key.fd] += chunk
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    out = bytes(captured[p.stdout.fileno()])
    err = bytes(captured[p.stderr.fileno()])
    p.stdout.close()
    p.stderr.close()
    try:
        code = p.wait(timeout=2)
    except subprocess.TimeoutExpired:
        code = None
    if code is not None and code < 0:
        code = 128 - code
    return Proc(None if timed_out else code, out, err, timed_out)


def run_tool(argv, timeout):
    proc = run_process(argv, timeout, env=TOOL_ENV)
    if proc.timed_out:
        raise AttemptTimeout("`%s` did not finish within %s" % (" ".join(argv), secs(timeout)))
    return proc


def bounded(fn, seconds):
    """Runs fn in a thread and gives up on it after `seconds` (name lookups and
    reads from hung filesystems cannot be interrupted otherwise)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: B902 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise AttemptTimeout("did not finish within %s" % secs(seconds))
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- kinds ----------------------------------------------------------------------
#
# Each kind is a class built from the check's properties (raising BadCheck when
# they make no sense), with `expected` (the properties the check states) and
# `attempt(timeout)` returning (actual, problems); no problem means passed.


class Package:
    def __init__(self, k):
        self.name = k["name"]
        self.installed = k["installed"]
        self.version = k.get("version")
        if self.version is not None:
            Matcher(self.version)
        self.expected = {"installed": self.installed}
        if self.version is not None and self.installed:
            self.expected["version"] = self.version

    def attempt(self, timeout):
        proc = run_tool(
            ["dpkg-query", "-W", "-f=${db:Status-Status}\\t${Version}\\n", "--", self.name],
            timeout,
        )
        installed, version = False, None
        for line in proc.text().splitlines():
            status, _, ver = line.partition("\t")
            if status == "installed":
                installed, version = True, ver
                break
        actual = {"installed": installed, "version": version}
        problems = []
        if installed != self.installed:
            if installed:
                problems.append("expected %s not installed, but version %s is installed" % (self.name, version))
            else:
                problems.append("expected %s installed, but it is not" % self.name)
        elif "version" in self.expected and not version_matches(self.version, version):
            problems.append("expected %s version %s, got %s" % (self.name, self.version, version))
        return actual, problems


ENABLED_STATES = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"}


class Service:
    def __init__(self, k):
        self.name = k["name"]
        self.expected = {}
        if k.get("running") is not None:
            self.expected["running"] = k["running"]
        if k.get("enabled") is not None:
            self.expected["enabled"] = k["enabled"]

    def attempt(self, timeout):
        proc = run_tool(
            ["systemctl", "show", "--property=Id,LoadState,ActiveState,SubState,UnitFileState", "--", self.name],
            timeout,
        )
        if proc.code != 0:
            reason = proc.err.decode("utf-8", "replace").strip() or "exit status %d" % proc.code
            return {"error": reason}, ["systemctl could not tell the state of %s: %s" % (self.name, reason)]
        props = dict(line.partition("=")[::2] for line in proc.text().splitlines())
        unit = props.get("Id") or self.name
        active = props.get("ActiveState") or "unknown"
        sub = props.get("SubState") or ""
        file_state = props.get("UnitFileState") or props.get("LoadState") or "unknown"
        running = active in ("active", "reloading")
        enabled = file_state in ENABLED_STATES
        actual = {
            "running": running,
            "enabled": enabled,
            "active_state": "%s (%s)" % (active, sub) if sub else active,
            "unit_file_state": file_state,
        }
        problems = []
        if props.get("LoadState") == "not-found" and any(self.expected.values()):
            problems.append("unit %s does not exist" % unit)
            return actual, problems
        if "running" in self.expected and running != self.expected["running"]:
            want = "running" if self.expected["running"] else "stopped"
            problems.append("expected %s %s, but it is %s" % (unit, want, actual["active_state"]))
        if "enabled" in self.expected and enabled != self.expected["enabled"]:
            want = "enabled" if self.expected["enabled"] else "disabled"
            problems.append("expected %s %s, but its unit file is %s" % (unit, want, file_state))
        return actual, problems


def parse_port(text):
    proto, _, number = text.rpartition(":")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise BadCheck("port %s: protocol must be tcp or udp" % quote(text))
    try:
        port = int(number)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise BadCheck("port %s: the port must be a number from 1 to 65535" % quote(text))
    return proto, port


def proc_net_address(hex_addr):
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host order (little-endian here).
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw)


def listening_addresses(proto, port):
    listen_state = "0A" if proto == "tcp" else "07"
    found = set()
    for table in (proto, proto + "6"):
        try:
            with open("/proc/net/" + table) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != listen_state:
                continue
            addr, _, port_hex = fields[1].partition(":")
            if int(port_hex, 16) == port:
                found.add(proc_net_address(addr))
    return sorted(found)


def same_ip(a, b):
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


class Port:
    def __init__(self, k):
        self.text = k["port"]
        self.proto, self.port = parse_port(self.text)
        self.listening = k["listening"]
        self.ips = k.get("ip") or []
        self.expected = {"listening": self.listening}
        if self.ips and self.listening:
            self.expected["ip"] = self.ips

    def attempt(self, _timeout):
        ips = listening_addresses(self.proto, self.port)
        actual = {"listening": bool(ips), "ip": ips}
        where = "%s:%d" % (self.proto, self.port)
        problems = []
        if bool(ips) != self.listening:
            if ips:
                problems.append("expected nothing listening on %s, but something listens on %s" % (where, ", ".join(ips)))
            else:
                problems.append("expected %s listening, but nothing listens on it" % where)
        elif "ip" in self.expected:
            missing = [ip for ip in self.ips if not any(same_ip(ip, a) for a in ips)]
            if missing:
                problems.append("expected %s listening on %s, got %s" % (where, ", ".join(missing), ", ".join(ips)))
        return actual, problems


def split_host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise BadCheck("address %s must be host:port" % quote(text))
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise BadCheck("address %s: the port must be a number from 1 to 65535" % quote(text))
    return host.strip("[]"), number


class Addr:
    def __init__(self, k):
        self.text = k["address"]
        rest = self.text
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
            if scheme != "tcp":
                raise BadCheck("address %s: only tcp:// addresses can be checked" % quote(self.text))
        self.host, self.port = split_host_port(rest.rstrip("/"))
        self.reachable = k["reachable"]
        self.expected = {"reachable": self.reachable}

    def attempt(self, timeout):
        deadline = time.monotonic() + timeout
        error = None
        reached = None
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            infos, error = [], "%s does not resolve: %s" % (self.host, e.strerror)
        for family, kind, proto, _, sockaddr in infos:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with socket.socket(family, kind, proto) as s:
                s.settimeout(min(CONNECT_TIMEOUT_S, left))
                try:
                    s.connect(sockaddr)
                    reached = sockaddr
                    break
                except OSError as e:
                    reason = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
                    error = "connecting to %s port %d failed: %s" % (sockaddr[0], sockaddr[1], reason)
        actual = {"reachable": reached is not None}
        if error and reached is None:
            actual["error"] = error
        problems = []
        if reached is None and self.reachable:
            problems.append("expected %s reachable, but %s" % (self.text, error or "no address was tried"))
        elif reached is not None and not self.reachable:
            problems.append("expected %s unreachable, but %s port %d accepted a connection" % (self.text, reached[0], reached[1]))
        return actual, problems


class Http:
    def __init__(self, k):
        self.url = k["url"]
        self.method = (k.get("method") or "GET").upper()
        self.status = k["status"]
        self.body = matchers(k.get("body") or [])
        self.headers = {name: Matcher(m) for name, m in (k.get("headers") or {}).items()}
        self.insecure = k.get("insecure", False)
        self.expected = {"status": self.status}
        if self.body:
            self.expected["body"] = k["body"]
        if self.headers:
            self.expected["headers"] = k["headers"]
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context()
        # No ProxyHandler settings: the node's proxy variables must not decide
        # whether a service inside the cluster answers.
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def attempt(self, timeout):
        request = urllib.request.Request(self.url, method=self.method, headers={"User-Agent": "rehearse-check"})
        try:
            response = self.opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            response = e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            reason = "timed out" if isinstance(reason, socket.timeout) else str(reason)
            actual = {"status": None, "error": reason}
            return actual, ["expected status %d, but the request failed: %s" % (self.status, reason)]
        with response:
            status = response.getcode()
            try:
                raw = response.read(READ_LIMIT)
            except (OSError, ValueError) as e:
                raw = b""
                read_error = str(e)
            else:
                read_error = None
            headers = response.headers
        text = raw.decode("utf-8", "replace")
        actual = {"status": status}
        problems = []
        if status != self.status:
            problems.append("expected status %d, got %d" % (self.status, status))
        if self.body:
            actual["body"] = excerpt(raw)
            if read_error:
                problems.append("reading the body failed: %s" % read_error)
            problems += unmet(self.body, text, "body")
        if self.headers:
            actual["headers"] = {}
            for name, m in self.headers.items():
                value = headers.get(name) if headers is not None else None
                actual["headers"][name] = value
                if value is None and not m.negate:
                    problems.append("header %s is missing" % name)
                elif not m.matches(value):
                    problems.append(m.describe_failure("header %s" % name))
        return actual, problems


class Command:
    def __init__(self, k):
        self.command = k["command"]
        self.exit_status = k["exit_status"]
        self.stdout = matchers(k.get("stdout") or [])
        self.stderr = matchers(k.get("stderr") or [])
        self.expected = {"exit_status": self.exit_status}
        if self.stdout:
            self.expected["stdout"] = k["stdout"]
        if self.stderr:
            self.expected["stderr"] = k["stderr"]

    def attempt(self, timeout):
        proc = run_process(["/bin/sh", "-c", self.command], timeout)
        actual = {"exit_status": proc.code, "stdout": excerpt(proc.out), "stderr": excerpt(proc.err)}
        if proc.timed_out:
            actual["timed_out"] = True
            return actual, ["the command did not finish within %s and was killed" % secs(timeout)]
        problems = []
        if proc.code != self.exit_status:
            problems.append("expected exit status %d, got %d" % (self.exit_status, proc.code))
        problems += unmet(self.stdout, proc.out.decode("utf-8", "replace"), "stdout")
        problems += unmet(self.stderr, proc.err.decode("utf-8", "replace"), "stderr")
        return actual, problems


FILETYPES = [
    (stat.S_ISREG, "file"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symlink"),
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISBLK, "block-device"),
    (stat.S_ISCHR, "character-device"),
]


def filetype_of(mode):
    return next((name for test, name in FILETYPES if test(mode)), "unknown")


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class File:
    def __init__(self, k):
        self.path = k["path"]
        self.exists = k["exists"]
        self.filetype = k.get("filetype")
        self.mode = k.get("mode")
        if self.mode is not None:
            try:
                self.mode_bits = int(self.mode, 8)
            except ValueError:
                raise BadCheck("mode %s is not an octal number like \"0644\"" % quote(self.mode))
        self.owner = k.get("owner")
        self.group = k.get("group")
        self.contains = matchers(k.get("contains") or [])
        self.expected = {"exists": self.exists}
        if self.exists:
            for key in ("filetype", "mode", "owner", "group"):
                if getattr(self, key) is not None:
                    self.expected[key] = getattr(self, key)
            if self.contains:
                self.expected["contains"] = k["contains"]

    def attempt(self, _timeout):
        # The type is that of the path itself; mode, owner, group and contents
        # those of what a symlink points to.
        try:
            lst = os.lstat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            if self.exists:
                return {"exists": False}, ["expected %s to exist, but it does not" % self.path]
            return {"exists": False}, []
        filetype = filetype_of(lst.st_mode)
        actual = {"exists": True, "filetype": filetype}
        if not self.exists:
            return actual, ["expected %s not to exist, but it is a %s" % (self.path, filetype)]
        problems = []
        if self.filetype is not None and filetype != self.filetype:
            problems.append("expected %s to be a %s, but it is a %s" % (self.path, self.filetype, filetype))
        try:
            st = os.stat(self.path)
        except OSError as e:
            problems.append("cannot follow %s: %s" % (self.path, e.strerror))
            return actual, problems
        actual["mode"] = "%04o" % stat.S_IMODE(st.st_mode)
        actual["owner"] = user_name(st.st_uid)
        actual["group"] = group_name(st.st_gid)
        if self.mode is not None and stat.S_IMODE(st.st_mode) != self.mode_bits:
            problems.append("expected mode %s, got %s" % (self.mode, actual["mode"]))
        if self.owner is not None and actual["owner"] != self.owner:
            problems.append("expected owner %s, got %s" % (self.owner, actual["owner"]))
        if self.group is not None and actual["group"] != self.group:
            problems.append("expected group %s, got %s" % (self.group, actual["group"]))
        if self.contains:
            if not stat.S_ISREG(st.st_mode):
                problems.append("cannot match the contents of %s: it is a %s" % (self.path, filetype_of(st.st_mode)))
            else:
                with open(self.path, "rb") as f:
                    raw = f.read(READ_LIMIT)
                actual["contains"] = excerpt(raw)
                problems += unmet(self.contains, raw.decode("utf-8", "replace"), self.path)
        return actual, problems


class User:
    def __init__(self, k):
        self.name = k["name"]
        self.exists = k["exists"]
        self.expected = {"exists": self.exists}
        if self.exists:
            for key in ("uid", "gid", "home", "shell"):
                if k.get(key) is not None:
                    self.expected[key] = k[key]
            if k.get("groups"):
                self.expected["groups"] = k["groups"]

    def attempt(self, _timeout):
        try:
            entry = pwd.getpwnam(self.name)
        except KeyError:
            entry = None
        if entry is None or not self.exists:
            actual = {"exists": entry is not None}
            if actual["exists"] != self.exists:
                state = "exist, but it does not" if self.exists else "be absent, but it exists"
                return actual, ["expected user %s to %s" % (self.name, state)]
            return actual, []
        groups = sorted({group_name(g) for g in os.getgrouplist(self.name, entry.pw_gid)})
        actual = {
            "exists": True,
            "uid": entry.pw_uid,
            "gid": entry.pw_gid,
            "groups": groups,
            "home": entry.pw_dir,
            "shell": entry.pw_shell,
        }
        problems = []
        for key in ("uid", "gid", "home", "shell"):
            if key in self.expected and actual[key] != self.expected[key]:
                problems.append("expected %s %s, got %s" % (key, self.expected[key], actual[key]))
        missing = [g for g in self.expected.get("groups", []) if g not in groups]
        if missing:
            problems.append("expected %s in groups %s, but its groups are %s" % (self.name, ", ".join(missing), ", ".join(groups)))
        return actual, problems


class Group:
    def __init__(self, k):
        self.name = k["name"]
        self.exists = k["exists"]
        self.expected = {"exists": self.exists}
        if self.exists and k.get("gid") is not None:
            self.expected["gid"] = k["gid"]

    def attempt(self, _timeout):
        try:
            entry = grp.getgrnam(self.name)
        except KeyError:
            entry = None
        actual = {"exists": entry is not None}
        if entry is not None:
            actual["gid"] = entry.gr_gid
        if actual["exists"] != self.exists:
            state = "exist, but it does not" if self.exists else "be absent, but it exists"
            return actual, ["expected group %s to %s" % (self.name, state)]
        if "gid" in self.expected and actual["gid"] != self.expected["gid"]:
            return actual, ["expected gid %d, got %d" % (self.expected["gid"], actual["gid"])]
        return actual, []


class Process:
    def __init__(self, k):
        self.name = k["name"]
        self.running = k["running"]
        self.expected = {"running": self.running}

    def attempt(self, _timeout):
        # comm is cut to 15 characters by the kernel.
        wanted = self.name[:15]
        me = os.getpid()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    line = f.read()
            except OSError:
                continue
            comm = line[line.find("(") + 1 : line.rfind(")")]
            ppid = int(line[line.rfind(")") + 2 :].split()[1])
            # The agent and what it runs for other checks are not the node's.
            if comm == wanted and me not in (int(entry), ppid):
                pids.append(int(entry))
        pids.sort()
        actual = {"running": bool(pids), "pids": pids[:20]}
        if bool(pids) != self.running:
            if pids:
                return actual, ["expected no %s process, but %d run (pid %s)" % (self.name, len(pids), ", ".join(map(str, pids[:5])))]
            return actual, ["expected a %s process, but none runs" % self.name]
        return actual, []


class KernelParam:
    def __init__(self, k):
        self.key = k["key"]
        # sysctl names swap '.' and '/' against their /proc/sys path.
        self.path = "/proc/sys/" + self.key.translate(str.maketrans("./", "/."))
        self.value = k["value"]
        self.matcher = Matcher(" ".join(self.value.split()) or self.value, exact=True)
        self.expected = {"value": self.value}

    def attempt(self, _timeout):
        try:
            with open(self.path) as f:
                value = " ".join(f.read().split())
        except FileNotFoundError:
            return {"value": None}, ["kernel parameter %s does not exist (no %s)" % (self.key, self.path)]
        actual = {"value": value}
        if not self.matcher.matches(value):
            return actual, ["expected %s = %s, got %s" % (self.key, self.value, value)]
        return actual, []


def resolve(host):
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


class Dns:
    def __init__(self, k):
        self.host = k["host"]
        self.resolvable = k["resolvable"]
        self.addrs = k.get("addrs") or []
        self.expected = {"resolvable": self.resolvable}
        if self.addrs and self.resolvable:
            self.expected["addrs"] = self.addrs

    def attempt(self, _timeout):
        error = None
        try:
            addrs = resolve(self.host)
        except socket.gaierror as e:
            addrs, error = [], e.strerror
        actual = {"resolvable": bool(addrs), "addrs": addrs}
        if error:
            actual["error"] = error
        if bool(addrs) != self.resolvable:
            if addrs:
                return actual, ["expected %s not to resolve, but it resolves to %s" % (self.host, ", ".join(addrs))]
            return actual, ["expected %s to resolve, but it does not: %s" % (self.host, error)]
        missing = [a for a in self.addrs if self.resolvable and not any(same_ip(a, b) for b in addrs)]
        if missing:
            return actual, ["expected %s to resolve to %s, got %s" % (self.host, ", ".join(missing), ", ".join(addrs))]
        return actual, []


def unescape_mountinfo(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def find_mount(path):
    """The mount on top at `path`: (fstype, source, options) or None."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fields = left.split()
            if len(fields) < 6 or unescape_mountinfo(fields[4]) != path:
                continue
            rest = right.split()
            fstype = rest[0] if rest else ""
            source = unescape_mountinfo(rest[1]) if len(rest) > 1 else ""
            super_opts = rest[2].split(",") if len(rest) > 2 else []
            opts = sorted(set(fields[5].split(",")) | set(super_opts))
            found = (fstype, source, opts)
    return found


class Mount:
    def __init__(self, k):
        self.path = os.path.normpath(k["path"])
        self.exists = k["exists"]
        self.filesystem = k.get("filesystem")
        self.opts = k.get("opts") or []
        self.expected = {"exists": self.exists}
        if self.exists:
            if self.filesystem is not None:
                self.expected["filesystem"] = self.filesystem
            if self.opts:
                self.expected["opts"] = self.opts

    def attempt(self, _timeout):
        found = find_mount(self.path)
        if found is None:
            actual = {"exists": False}
            if self.exists:
                return actual, ["expected a mount at %s, but nothing is mounted there" % self.path]
            return actual, []
        fstype, source, opts = found
        actual = {"exists": True, "filesystem": fstype, "source": source, "opts": opts}
        if not self.exists:
            return actual, ["expected nothing mounted at %s, but %s (%s) is" % (self.path, source, fstype)]
        problems = []
        if self.filesystem is not None and fstype != self.filesystem:
            problems.append("expected filesystem %s at %s, got %s" % (self.filesystem, self.path, fstype))
        missing = [o for o in self.opts if o not in opts]
        if missing:
            problems.append("expected mount options %s, got %s" % (",".join(missing), ",".join(opts)))
        return actual, problems


def address_matches(wanted, local, prefixlen):
    try:
        if "/" in wanted:
            return ipaddress.ip_interface(wanted) == ipaddress.ip_interface("%s/%d" % (local, prefixlen))
        return ipaddress.ip_address(wanted) == ipaddress.ip_address(local)
    except ValueError:
        return False


class Interface:
    def __init__(self, k):
        self.name = k["name"]
        self.exists = k["exists"]
        self.addrs = k.get("addrs") or []
        for a in self.addrs:
            try:
                ipaddress.ip_interface(a)
            except ValueError:
                raise BadCheck("%s is not an address or CIDR" % quote(a))
        self.mtu = k.get("mtu")
        self.expected = {"exists": self.exists}
        if self.exists:
            if self.addrs:
                self.expected["addrs"] = self.addrs
            if self.mtu is not None:
                self.expected["mtu"] = self.mtu

    def attempt(self, timeout):
        proc = run_tool(["ip", "-j", "addr", "show", "dev", self.name], timeout)
        links = json.loads(proc.out or b"[]") if proc.code == 0 else []
        if not links:
            actual = {"exists": False}
            if self.exists:
                return actual, ["expected interface %s, but there is none" % self.name]
            return actual, []
        link = links[0]
        infos = [(a.get("local", ""), a.get("prefixlen", 0)) for a in link.get("addr_info", [])]
        actual = {
            "exists": True,
            "addrs": ["%s/%d" % info for info in infos],
            "mtu": link.get("mtu"),
        }
        if not self.exists:
            return actual, ["expected no interface %s, but it exists" % self.name]
        problems = []
        missing = [a for a in self.addrs if not any(address_matches(a, *info) for info in infos)]
        if missing:
            have = ", ".join(actual["addrs"]) or "none"
            problems.append("expected %s to have %s, but its addresses are %s" % (self.name, ", ".join(missing), have))
        if self.mtu is not None and actual["mtu"] != self.mtu:
            problems.append("expected mtu %d, got %s" % (self.mtu, actual["mtu"]))
        return actual, problems


KINDS = {
    "package": Package,
    "service": Service,
    "port": Port,
    "addr": Addr,
    "http": Http,
    "command": Command,
    "file": File,
    "user": User,
    "group": Group,
    "process": Process,
    "kernel_param": KernelParam,
    "dns": Dns,
    "mount": Mount,
    "interface": Interface,
}


# --- running checks ---------------------------------------------------------------


def result(check_id, status, expected, actual, message, attempts, started):
    return {
        "id": check_id,
        "status": status,
        "expected": expected,
        "actual": actual,
        "message": message,
        "attempts": attempts,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }


def one_attempt(kind, seconds, grace):
    # The grace lets a sub-process's own timeout (with its output) be what gets
    # reported; the bound catches what ignores every timeout.
    try:
        return bounded(lambda: kind.attempt(seconds), seconds + grace)
    except AttemptTimeout as e:
        return {"error": str(e)}, [str(e)]
    except Exception as e:  # noqa: B902 - any surprise is this attempt's failure
        reason = "%s: %s" % (type(e).__name__, e)
        return {"error": reason}, ["could not evaluate: %s" % reason]


def evaluate(check, interval, grace):
    started = time.monotonic()
    check_id = check["id"]
    spec = check["kind"]
    attempt_s = check["attempt_timeout_ms"] / 1000
    try:
        factory = KINDS.get(spec.get("kind"))
        if factory is None:
            raise BadCheck("this agent does not know the kind %s" % quote(spec.get("kind")))
        kind = factory(spec)
    except BadCheck as e:
        return result(check_id, "failed", None, None, "invalid check: %s" % e, 0, started)
    except (KeyError, TypeError, ValueError) as e:
        return result(check_id, "failed", None, None, "invalid check: %s: %s" % (type(e).__name__, e), 0, started)

    precondition = check.get("skip_unless")
    if precondition:
        seconds = check["skip_timeout_ms"] / 1000
        proc = run_process(["/bin/sh", "-c", precondition], seconds)
        if proc.timed_out:
            message = "precondition %s did not finish within %s" % (precondition, secs(seconds))
            return result(check_id, "failed", kind.expected, None, message, 0, started)
        if proc.code != 0:
            message = "precondition unmet: %s exited %d" % (precondition, proc.code)
            return result(check_id, "skipped", kind.expected, None, message, 0, started)

    timeout = check["timeout_ms"] / 1000
    first = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        actual, problems = one_attempt(kind, attempt_s, grace)
        if not problems:
            return result(check_id, "passed", kind.expected, actual, "", attempts, started)
        left = timeout - (time.monotonic() - first)
        if left <= 0:
            return result(check_id, "failed", kind.expected, actual, "; ".join(problems), attempts, started)
        time.sleep(min(interval, left))


def main():
    # Only the report goes to stdout: anything else printed (by a library, by
    # mistake) lands on stderr.
    report_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    started = time.monotonic()
    request = json.load(sys.stdin)
    if request.get("protocol") != PROTOCOL:
        raise SystemExit("this agent speaks protocol %d, the request is %r" % (PROTOCOL, request.get("protocol")))
    interval = request["interval_ms"] / 1000
    grace = request["attempt_grace_ms"] / 1000
    deadline = started + request["deadline_ms"] / 1000
    checks = request["checks"]

    results = {}
    lock = threading.Lock()

    def run(check):
        try:
            outcome = evaluate(check, interval, grace)
        except Exception:  # noqa: B902 - a bug in one check must not lose the others
            outcome = result(check["id"], "failed", None, None,
                             "the check agent failed on this check: %s" % traceback.format_exc(limit=3).strip().splitlines()[-1],
                             0, started)
            traceback.print_exc()
        with lock:
            results[check["id"]] = outcome

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in checks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))

    with lock:
        ordered = []
        for c in checks:
            r = results.get(c["id"])
            if r is None:
                r = result(c["id"], "failed", None, None,
                           "did not finish within the agent's deadline of %s" % secs(request["deadline_ms"] / 1000),
                           0, started)
            ordered.append(r)
    report = {
        "agent": {"protocol": PROTOCOL, "pid": os.getpid(), "python": platform.python_version(), "checks": len(checks)},
        "results": ordered,
    }
    json.dump(report, report_out)
    report_out.write("\n")
    report_out.flush()
    # Threads still stuck in a name lookup must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
