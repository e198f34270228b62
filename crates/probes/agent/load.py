"""rehearse's HTTP load generator, run on a node: python3 -I -c <this> '<json>'.

Arguments (JSON): url, duration_s, requests, concurrency, timeout_s.
Sends GET requests over keep-alive connections from `concurrency` threads until
the duration is over or `requests` were sent, and prints one JSON document:
counts, status codes, error kinds, latency percentiles (ms, measured here) and
a per-second timeline of successes and failures.
"""
import http.client, json, sys, threading, time, urllib.parse

args = json.loads(sys.argv[1])
url = urllib.parse.urlsplit(args["url"])
host, port = url.hostname, url.port or 80
path = (url.path or "/") + ("?" + url.query if url.query else "")
deadline = time.monotonic() + args["duration_s"]
budget = [args["requests"]]
lock = threading.Lock()
latencies, statuses, errors, timeline = [], {}, {}, {}
start = time.monotonic()


def take():
    with lock:
        if budget[0] <= 0:
            return False
        budget[0] -= 1
        return True


def record(ok, ms, status=None, error=None):
    sec = int(time.monotonic() - start)
    with lock:
        slot = timeline.setdefault(sec, [0, 0])
        slot[0 if ok else 1] += 1
        if ok:
            latencies.append(ms)
        if status is not None:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        if error is not None:
            errors[error] = errors.get(error, 0) + 1


def worker():
    conn = None
    while time.monotonic() < deadline and take():
        t0 = time.perf_counter()
        try:
            if conn is None:
                left = max(0.05, deadline - time.monotonic())
                conn = http.client.HTTPConnection(host, port, timeout=min(args["timeout_s"], left + args["timeout_s"]))
            conn.request("GET", path, headers={"Host": url.netloc, "User-Agent": "rehearse-load"})
            resp = conn.getresponse()
            resp.read()
            ms = (time.perf_counter() - t0) * 1000.0
            ok = 200 <= resp.status < 400
            record(ok, ms, status=resp.status, error=None if ok else "http %d" % resp.status)
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # every failure counts, by kind
            record(False, 0.0, error=type(e).__name__)
            try:
                conn and conn.close()
            except Exception:
                pass
            conn = None
            time.sleep(0.01)


threads = [threading.Thread(target=worker, daemon=True) for _ in range(args["concurrency"])]
for t in threads:
    t.start()
for t in threads:
    t.join(args["duration_s"] + args["timeout_s"] + 5)
elapsed = time.monotonic() - start
lat = sorted(latencies)


def pct(p):
    if not lat:
        return None
    return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]


failed = sum(errors.values())
total = len(lat) + failed
print(json.dumps({
    "requests": total,
    "ok": len(lat),
    "failed": failed,
    "error_rate": (100.0 * failed / total) if total else 0.0,
    "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat[-1] if lat else None,
    "rps": total / elapsed if elapsed > 0 else 0.0,
    "elapsed_ms": int(elapsed * 1000),
    "statuses": statuses,
    "errors": errors,
    "timeline": [{"second": s, "ok": v[0], "failed": v[1]} for s, v in sorted(timeline.items())],
}))
