"""Team API figures (issue: api). Prints, does not assert.

Starts a real server (uvicorn in a subprocess on 127.0.0.1, temp SQLite database seeded
with a team, a token, a pipeline and a backfill), then measures with httpx clients:

- GET /v1/teams/{team}/backfills/{id}: requests/s, p50/p99 latency (target ≥ 1,500 req/s,
  p99 < 20 ms);
- the create → cancel cycle (POST a one-day backfill, PATCH it CANCELLED): cycles/s and
  p50/p99 latency of each request.

The load generator runs in separate processes (threads of httpx clients in each), so the
client's own CPU does not share the server's interpreter; on a small machine they still
share cores, which the figures include.

Usage: python benchmarks/api.py [--seconds 5] [--clients 2] [--threads 8] [--access-log]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
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

from backfill.domain.model import BlockType, Role, Scope
from backfill.domain.pipeline import Block, PipelineDefinition
from backfill.services import backfills as svc
from backfill.services.actor import Actor
from backfill.store import auth
from backfill.store import pipelines as pipeline_store
from backfill.store.db import Database
from backfill.store.tables import metadata

NOOP = PipelineDefinition(
    uuid="noop",
    name="noop",
    blocks=(Block(uuid="main", type=BlockType.PYTHON, source="def run(context):\n    return None\n"),),
)


def seed(url: str) -> dict[str, Any]:
    db = Database(url)
    metadata.create_all(db.engine)
    with db.write() as conn:
        team = auth.create_team(conn, "bench")
        user = auth.create_user(conn, "bench@bench.local", team_id=team, role=Role.OWNER)
        token = auth.create_token(conn, user, scopes=(Scope.READ, Scope.WRITE)).secret
        pipeline_store.sync(conn, [NOOP], default_team_id=team)
        pipeline = int(pipeline_store.get_in_team(conn, team, uuid="noop")["id"])
    backfill = svc.create(
        db, Actor(team, user), pipeline, svc.BackfillSpec(start="2020-01-01", end="2020-12-31"), start=True
    )
    db.dispose()
    return {"team": team, "token": token, "pipeline": pipeline, "backfill": backfill}


def serve(url: str, port: int, access_log: bool) -> None:
    """Server process: the app exactly as ``backfill serve`` builds it (without workers)."""
    import uvicorn

    from backfill.api.app import create_app
    from backfill.config import Settings
    from backfill.logging_setup import configure

    configure("INFO" if access_log else "WARNING")
    app = create_app(Database(url), Settings(rate_limit="10000000/minute", secret_key="bench"))
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


def _get_worker(
    base: str, path: str, headers: dict[str, str], until: float, out: list[float], errors: list[int]
) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            r = client.get(path)
            out.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(r.status_code)


def _cycle_worker(
    base: str,
    prefix: str,
    pipeline: int,
    headers: dict[str, str],
    until: float,
    days: Any,
    out: dict[str, list[float]],
    errors: list[str],
) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while time.perf_counter() < until:
            day = (date(2030, 1, 1) + timedelta(days=next(days))).isoformat()
            t0 = time.perf_counter()
            r = client.post(
                f"{prefix}/transfers/{pipeline}/backfills", json={"range_start": day, "range_end": day}
            )
            t1 = time.perf_counter()
            if r.status_code != 200:
                errors.append(f"create {r.status_code} {r.text[:200]}")
                continue
            bf = r.json()["data"]["transfer_backfill_id"]
            r = client.patch(f"{prefix}/backfills/{bf}", json={"status": "CANCELLED"})
            t2 = time.perf_counter()
            if r.status_code != 200 or r.json()["data"]["status"] != "CANCELLED":
                errors.append(f"cancel {r.status_code} {r.text[:200]}")
                continue
            out["create"].append(t1 - t0)
            out["cancel"].append(t2 - t1)
            out["cycle"].append(t2 - t0)


def client_process(kind: str, args: dict[str, Any], queue: Any) -> None:
    threads = args["threads"]
    start_at: float = args["start_at"]
    while time.time() < start_at:
        time.sleep(0.001)
    until = time.perf_counter() + args["seconds"]
    headers = {"Authorization": f"Bearer {args['token']}"}
    if kind == "get":
        lat: list[float] = []
        errors: list[int] = []
        ts = [
            threading.Thread(
                target=_get_worker, args=(args["base"], args["path"], headers, until, lat, errors)
            )
            for _ in range(threads)
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        queue.put({"lat": lat, "errors": [str(e) for e in errors]})
    else:
        days = itertools.count(args["offset"], args["stride"])
        lock = threading.Lock()

        def next_day() -> Any:
            while True:
                with lock:
                    value = next(days)
                yield value

        gen = next_day()
        out: dict[str, list[float]] = {"create": [], "cancel": [], "cycle": []}
        cycle_errors: list[str] = []
        prefix = args["prefix"]
        ts = [
            threading.Thread(
                target=_cycle_worker,
                args=(args["base"], prefix, args["pipeline"], headers, until, gen, out, cycle_errors),
            )
            for _ in range(threads)
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        queue.put({**out, "errors": cycle_errors})


def run_clients(kind: str, processes: int, base_args: dict[str, Any]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 1.5  # let every process import and connect first
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
    return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(label: str, rate: float | None, unit: str, values: list[float], errors: int | None) -> None:
    rate_text = f"{rate:8.0f} {unit:<9}" if rate is not None else " " * 18
    error_text = f"   errors {errors}" if errors is not None else ""
    p50, p99 = pct(values, 0.50), pct(values, 0.99)
    print(f"{label:<24}{rate_text} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms{error_text}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="threads (connections) per client process")
    parser.add_argument("--cycle-threads", type=int, default=2, help="threads per client process (cycle)")
    parser.add_argument("--access-log", action="store_true", help="JSON access log at INFO (to /dev/null)")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.access_log)
        return

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        ids = seed(url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, __file__, "--serve", url, str(port)]
        if args.access_log:
            cmd.append("--access-log")
        server = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
        )
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

            results = run_clients("get", args.clients, {**common, "path": get_path})
            lat = [x for r in results for x in r["lat"]]
            errors = [e for r in results for e in r["errors"]]
            print(f"server: uvicorn, 1 process, SQLite (WAL); {os.cpu_count()} CPUs shared with the clients")
            print(
                f"clients: {args.clients} processes x {args.threads} httpx connections, {args.seconds:.0f} s"
            )
            print(f"access log: {'JSON lines at INFO' if args.access_log else 'off (WARNING)'}")
            print()
            report("GET backfill", len(lat) / args.seconds, "req/s", lat, len(errors))

            cycle_args = {
                **common,
                "prefix": prefix,
                "pipeline": ids["pipeline"],
                "threads": args.cycle_threads,
            }
            results = run_clients("cycle", args.clients, cycle_args)
            cycles = [x for r in results for x in r["cycle"]]
            errors2 = [e for r in results for e in r["errors"]]
            report("create -> cancel cycle", len(cycles) / args.seconds, "cycles/s", cycles, len(errors2))
            report("  POST create", None, "", [x for r in results for x in r["create"]], None)
            report("  PATCH cancel", None, "", [x for r in results for x in r["cancel"]], None)
            if errors2:
                print("  first error:", errors2[0])
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
