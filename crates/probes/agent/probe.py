"""rehearse's attack probes, run on a node: python3 -I -c <this> '<json>'.

{"probe": "scan", "host": H, "first": 1, "last": 65535}  -> {"open": [ports]}
{"probe": "connect", "hosts": [H...], "port": P}          -> {"reached": {H: bool}}
{"probe": "ssh", "host": H, "users": [U...]}              -> {"methods": [...], "by_user": {U: [...]}, "raw": "..."}
{"probe": "tls", "host": H, "port": P, "hostname": N}     -> certificate facts and old protocols accepted
"""
import errno, json, os, resource, selectors, socket, ssl, subprocess, sys, tempfile, time

args = json.loads(sys.argv[1])


def scan_width():
    """Connections in flight at once: wide enough that an address that drops
    everything (unreachable, or firewalled) is swept in seconds, not minutes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return max(64, min(8192, soft - 64))


def scan(host, first, last, timeout=1.0):
    """Open TCP ports of host, and how many ports stayed silent (neither
    accepted nor refused: dropped on the way or by a firewall)."""
    width = scan_width()
    sel = selectors.DefaultSelector()
    pending, found, port, silent = {}, [], first, 0
    while port <= last or pending:
        while port <= last and len(pending) < width:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((host, port))
            if rc in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE, (port, time.monotonic()))
                pending[s] = port
            else:
                s.close()
            port += 1
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                found.append(key.data[0])
            sel.unregister(s)
            del pending[s]
            s.close()
        now = time.monotonic()
        for s in [s for s in pending if now - sel.get_key(s).data[1] > timeout]:
            sel.unregister(s)
            del pending[s]
            s.close()
            silent += 1
    return sorted(found), silent


def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def ssh_methods(host, users=()):
    """The login methods sshd offers, asked as a user that does not exist and
    as each given user (a `Match User` block may allow passwords to some)."""
    by_user, raw = {}, ""
    for user in ["rehearse-probe", *users]:
        p = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "PreferredAuthentications=none",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", user + "@" + host, "true"],
            capture_output=True, text=True, timeout=20)
        answer = p.stderr.strip()
        methods = []
        if "(" in answer and ")" in answer:
            methods = answer[answer.rfind("(") + 1:answer.rfind(")")].split(",")
        by_user[user] = methods
        if user == "rehearse-probe":
            raw = answer
    union = []
    for methods in by_user.values():
        union += [m for m in methods if m not in union]
    return {"methods": union, "by_user": by_user, "raw": raw}


def handshake(host, port, hostname, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Accept anything the server offers, so that a server speaking only old
    # protocols is still examined (and reported) rather than unreachable.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = version or ssl.TLSVersion.TLSv1
    if version is not None:
        ctx.maximum_version = version
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            return s.getpeercert(binary_form=True), s.version()


def tls(host, port, hostname):
    der, version = handshake(host, port, hostname)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(ssl.DER_cert_to_PEM_cert(der))
    try:
        cert = ssl._ssl._test_decode_cert(f.name)
    finally:
        os.unlink(f.name)
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if not names:
        names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    def matches(pattern):
        if pattern.startswith("*."):
            return hostname.count(".") >= 1 and hostname.split(".", 1)[1] == pattern[2:]
        return pattern.lower() == hostname.lower()
    old = []
    for name, v in (("TLSv1", ssl.TLSVersion.TLSv1), ("TLSv1.1", ssl.TLSVersion.TLSv1_1)):
        try:
            handshake(host, port, hostname, v)
            old.append(name)
        except Exception:
            pass
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    return {
        "version": version,
        "names": names,
        "hostname_matches": any(matches(n) for n in names),
        "not_after": cert["notAfter"],
        "days_left": (expires - time.time()) / 86400.0,
        "old_protocols": old,
    }


kind = args["probe"]
try:
    if kind == "scan":
        found, silent = scan(args["host"], args.get("first", 1), args.get("last", 65535))
        out = {"open": found, "silent": silent}
    elif kind == "connect":
        out = {"reached": {h: reach(h, args["port"]) for h in args["hosts"]}}
    elif kind == "ssh":
        out = ssh_methods(args["host"], args.get("users", []))
    elif kind == "tls":
        out = tls(args["host"], args["port"], args["hostname"])
    else:
        out = {"error": "unknown probe " + kind}
except Exception as e:
    out = {"error": "%s: %s" % (type(e).__name__, e)}
print(json.dumps(out))
