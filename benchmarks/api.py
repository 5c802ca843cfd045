"""Team API figures (issue: api). Prints, does not assert.

Starts a real server (uvicorn in a subprocess on 127.0.0.1, as ``backfill serve`` builds
the app, over a temp SQLite database seeded with a team, a token, a pipeline and a
RUNNING backfill with 400 completed and 12 failed runs, so its error report and p95
are real), then measures:

- GET /v1/teams/{team}/backfills/{id}: requests/s and p50/p99 latency (target ≥ 1,500
  req/s, p99 < 20 ms) with httpx clients, with a lighter load generator
  (``http.client``, keep-alive), and with wrk (C, the lightest: on a small machine the
  load generator shares the server's cores);
- the same with wrk while a stand-in worker finishes ``--change-rate`` runs/s on that
  backfill (every claim and every result is a new version of it: the path where the
  JSON rendered for the previous version cannot be reused);
- the server's CPU time per GET (what bounds the throughput of one server process);
- the create → cancel cycle with httpx (POST a one-day backfill, PATCH it CANCELLED):
  cycles/s and p50/p99 of each request.

The load runs in client processes (several keep-alive connections each), started
together. Bounded: 5 phases of ``--seconds`` (default 3) plus start-up.

Usage: python benchmarks/api.py [--seconds 3] [--clients 2] [--threads 4] [--no-access-log]
       [--change-rate 100]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import itertools
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from backfill.domain.model import BlockType, Role, Scope
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import auth, queue
from backfill.store import pipelines as pipeline_store
from backfill.store.clock import utcnow
from backfill.store.db import Database
from backfill.store.tables import metadata

NOOP = PipelineDefinition(
    uuid="noop",
    name="noop",
    blocks=(Block(uuid="main", type=BlockType.PYTHON, source="def run(context):\n    return None\n"),),
)


# The GET benchmark reads a RUNNING backfill with completed and failed runs, so the error
# report and the p95 duration are computed on every request, as for a real one.
SEED_COMPLETED = 400
SEED_FAILED = 12


def finish_runs(db: Database, *, completed: int, failed: int) -> None:
    """Claim runs and record their outcome as a worker would (no child processes)."""
    rng = random.Random(7)
    total = completed + failed
    done = 0
    while done < total:
        with db.write() as conn:
            claimed = queue.claim(conn, "bench-seed", min(50, total - done), lease_seconds=300, now=utcnow())
        with db.write() as conn:
            for run in claimed:
                ok = done % (total // failed) != 0 if failed else True
                result = queue.AttemptResult(
                    ok=ok,
                    error=None if ok else f"Traceback (most recent call last):\n...\nValueError: bad row {done}",
                    rows=rng.randint(100, 5000) if ok else 0,
                    duration=rng.uniform(1.0, 60.0),
                )
                queue.record_attempt(conn, run.key, "bench-seed", result, utcnow())
                done += 1


def change_backfill(url: str, rate: float, seconds: float, start_at: float, results: Any) -> None:
    """A stand-in worker (no child processes): finishes ``rate`` runs a second, each a
    claim and a record — two new versions of the backfill that GET must show."""
    db = Database(url)
    while time.time() < start_at:
        time.sleep(0.001)
    until = time.perf_counter() + seconds
    next_at = time.perf_counter()
    finished = 0
    while time.perf_counter() < until:
        with db.write() as conn:
            claimed = queue.claim(conn, "bench-writer", 1, lease_seconds=300, now=utcnow())
        if not claimed:
            break
        with db.write() as conn:
            result = queue.AttemptResult(ok=True, rows=100, duration=1.0 + finished % 50)
            queue.record_attempt(conn, claimed[0].key, "bench-writer", result, utcnow())
        finished += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
    db.dispose()
    results.put(finished)


def seed(url: str) -> dict[str, Any]:
    db = Database(url)
    metadata.create_all(db.engine)
    with db.write() as conn:
        team = auth.create_team(conn, "bench")
        user = auth.create_user(conn, "bench@bench.local", team_id=team, role=Role.OWNER)
        token = auth.create_token(conn, user, scopes=(Scope.READ, Scope.WRITE)).secret
        pipeline_store.sync(conn, [NOOP], default_team_id=team)
        pipeline = int(pipeline_store.get_in_team(conn, team, uuid="noop")["id"])
    spec = svc.BackfillSpec(start="2017-01-01", end="2020-12-31", retries=0, max_active_runs=50)
    backfill = svc.create(db, Actor(team, user), pipeline, spec, start=True)
    finish_runs(db, completed=SEED_COMPLETED, failed=SEED_FAILED)
    db.dispose()
    return {"team": team, "token": token, "pipeline": pipeline, "backfill": backfill}


def serve(url: str, port: int, access_log: bool) -> None:
    """Server process: the app exactly as ``backfill serve`` builds it (without workers)."""
    import uvicorn

    from backfill.app import create_app
    from backfill.config import Settings
    from backfill.logging_setup import configure

    configure("INFO" if access_log else "WARNING")
    app = create_app(Database(url), Settings(rate_limit="10000000/minute", secret_key="bench"))
    gc.freeze()  # as serve does
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


# ---- load generation (runs in client processes) -------------------------------------------------


def _get_httpx(
    base: str, path: str, headers: dict[str, str], until: float, out: list[float], errors: list[str]
) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            r = client.get(path)
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(str(r.status_code))


def _get_raw(base: str, path: str, headers: dict[str, str], until: float, out: list[float], errors: list[str]) -> None:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            out.append(time.perf_counter() - t0)
            if r.status != 200:
                errors.append(str(r.status))
    finally:
        conn.close()


class _Days:
    """Distinct day offsets across threads (and, by offset/stride, across processes)."""

    def __init__(self, offset: int, stride: int) -> None:
        self._count = itertools.count(offset, stride)
        self._lock = threading.Lock()

    def __next__(self) -> int:
        with self._lock:
            return next(self._count)


def _cycle(
    base: str, prefix: str, pipeline: int, headers: dict[str, str], until: float, days: _Days, out: dict[str, Any]
) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while time.perf_counter() < until:
            day = (date(2030, 1, 1) + timedelta(days=next(days))).isoformat()
            t0 = time.perf_counter()
            r = client.post(f"{prefix}/transfers/{pipeline}/backfills", json={"range_start": day, "range_end": day})
            t1 = time.perf_counter()
            if r.status_code != 200:
                out["errors"].append(f"create {r.status_code} {r.text[:200]}")
                continue
            bf = r.json()["data"]["transfer_backfill_id"]
            r = client.patch(f"{prefix}/backfills/{bf}", json={"status": "CANCELLED"})
            t2 = time.perf_counter()
            if r.status_code != 200 or r.json()["data"]["status"] != "CANCELLED":
                out["errors"].append(f"cancel {r.status_code} {r.text[:200]}")
                continue
            out["create"].append(t1 - t0)
            out["cancel"].append(t2 - t1)
            out["cycle"].append(t2 - t0)


def client_process(kind: str, args: dict[str, Any], queue: Any) -> None:
    while time.time() < args["start_at"]:
        time.sleep(0.001)
    until = time.perf_counter() + args["seconds"]
    headers = {"Authorization": f"Bearer {args['token']}"}
    out: dict[str, Any] = {"lat": [], "create": [], "cancel": [], "cycle": [], "errors": []}
    if kind == "cycle":
        days = _Days(args["offset"], args["stride"])
        target: Any = _cycle
        targs: tuple[Any, ...] = (args["base"], args["prefix"], args["pipeline"], headers, until, days, out)
    else:
        target = _get_httpx if kind == "get_httpx" else _get_raw
        targs = (args["base"], args["path"], headers, until, out["lat"], out["errors"])
    threads = [threading.Thread(target=target, args=targs) for _ in range(args["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(out)


def run_clients(kind: str, processes: int, base_args: dict[str, Any]) -> dict[str, list[Any]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.5  # every process imports and connects first
    procs = [
        ctx.Process(
            target=client_process,
            args=(kind, {**base_args, "start_at": start_at, "offset": i, "stride": processes}, queue),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=base_args["seconds"] + 60) for _ in procs]
    for p in procs:
        p.join()
    return {key: [x for r in results for x in r[key]] for key in results[0]}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(label: str, rate: float | None, unit: str, values: list[float], errors: int | None) -> None:
    rate_text = f"{rate:8.0f} {unit:<9}" if rate is not None else " " * 18
    error_text = f"   errors {errors}" if errors is not None else ""
    p50, p99 = pct(values, 0.50), pct(values, 0.99)
    print(f"{label:<30}{rate_text} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms{error_text}")


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(wrk: str, url: str, token: str, seconds: float, *, connections: int) -> tuple[float, float, float]:
    """The lightest load generator there is (C, one thread): what the server alone can do."""
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error responses:\n{out}")
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    p50 = re.search(r"\b50%\s+([0-9.]+[a-z]+)", out)
    p99 = re.search(r"\b99%\s+([0-9.]+[a-z]+)", out)
    if not (rate and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return float(rate.group(1)), _ms(p50.group(1)), _ms(p99.group(1))


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each phase")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="keep-alive connections per client process (GET)")
    parser.add_argument("--cycle-threads", type=int, default=2, help="connections per client process (cycle)")
    parser.add_argument("--no-access-log", action="store_true", help="logging at WARNING (serve logs at INFO)")
    parser.add_argument(
        "--change-rate", type=float, default=100, help="runs/s finished on the backfill in the changing-GET phase"
    )
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), not args.no_access_log)
        return

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        ids = seed(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, __file__, "--serve", url, str(port)]
        if args.no_access_log:
            cmd.append("--no-access-log")
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        try:
            wait_ready(base)
            prefix = f"/v1/teams/{ids['team']}"
            get_path = f"{prefix}/backfills/{ids['backfill']}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ids['token']}"}) as c:
                warm = c.get(get_path)
                assert warm.status_code == 200, warm.text
                for _ in range(200):
                    c.get(get_path)
            common = {"base": base, "token": ids["token"], "seconds": args.seconds, "threads": args.threads}
            proc = psutil.Process(server.pid)
            print(f"server: uvicorn, 1 process, SQLite (WAL); {os.cpu_count()} CPUs shared with the clients")
            print(f"access log: {'off (WARNING)' if args.no_access_log else 'JSON lines at INFO, as serve does'}")
            print(f"GET load: {args.clients} processes x {args.threads} keep-alive connections, {args.seconds:.0f} s")
            print()
            for kind, label in (("get_httpx", "GET backfill (httpx)"), ("get_raw", "GET backfill (http.client)")):
                before = cpu_seconds(proc)
                out = run_clients(kind, args.clients, {**common, "path": get_path})
                used = cpu_seconds(proc) - before
                report(label, len(out["lat"]) / args.seconds, "req/s", out["lat"], len(out["errors"]))
                if out["lat"]:
                    print(f"{'':<30}server CPU {used / len(out['lat']) * 1e6:.0f} us/request")
            wrk = shutil.which("wrk")
            if wrk:
                before = cpu_seconds(proc)
                rate, p50, p99 = run_wrk(wrk, base + get_path, ids["token"], args.seconds, connections=8)
                used = cpu_seconds(proc) - before
                print(f"{'GET backfill (wrk, C client)':<30}{rate:>9.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
                print(f"{'':<30}server CPU {used / max(1.0, rate * args.seconds) * 1e6:.0f} us/request")
                met = rate >= 1500 and p99 < 20
                print(f"{'':<30}target >= 1,500 req/s with p99 < 20 ms: {'met' if met else 'NOT met'}")
                # The same while runs finish on the backfill: most reads find a new version.
                ctx = mp.get_context("spawn")
                results = ctx.Queue()
                start_at = time.time() + 1.5
                writer = ctx.Process(
                    target=change_backfill, args=(url, args.change_rate, args.seconds, start_at, results)
                )
                writer.start()
                time.sleep(max(0.0, start_at - time.time()))
                before = cpu_seconds(proc)
                rate, p50, p99 = run_wrk(wrk, base + get_path, ids["token"], args.seconds, connections=8)
                used = cpu_seconds(proc) - before
                finished = results.get(timeout=args.seconds + 60)
                writer.join()
                label = f"GET while {finished / args.seconds:.0f} runs/s end"
                print(f"{label:<30}{rate:>9.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
                print(
                    f"{'':<30}server CPU {used / max(1.0, rate * args.seconds) * 1e6:.0f} us/request; "
                    f"{2 * finished / args.seconds:.0f} new versions/s"
                )
            else:
                print("GET backfill (wrk): wrk not installed (apt-get install wrk) - skipped")
            cycle_args = {**common, "prefix": prefix, "pipeline": ids["pipeline"], "threads": args.cycle_threads}
            out = run_clients("cycle", args.clients, cycle_args)
            report(
                "create -> cancel (httpx)",
                len(out["cycle"]) / args.seconds,
                "cycles/s",
                out["cycle"],
                len(out["errors"]),
            )
            report("  POST create", None, "", out["create"], None)
            report("  PATCH cancel", None, "", out["cancel"], None)
            if out["errors"]:
                print("  first error:", out["errors"][0])
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
