#!/usr/bin/env python3
"""Load test of the REST service: a real uvicorn on 127.0.0.1, many concurrent clients mixing identify,
verify and enroll, then integrity checks.

What it does:

1. Creates a deployment in a temporary folder (database, master key, example policy), records a consent for
   every identity of the shared face set that has at least three photos, and enrolls about half of them from
   two photos each (in-process, before the clock starts), so searches have someone to find.
2. Starts ``python -m faceledger.interfaces.api`` (the ``faceledger serve`` command) on a free loopback port
   with ``--workers N``, and waits for ``/readyz``.
3. Runs ``--clients`` concurrent clients for ``--duration`` seconds (each stops early after ``--max-requests``).
   Each client is a camera or a desk with its own operator and enroller keys; each request is drawn with a
   fixed seed: identify (a photo of anyone), verify (two photos, half of the pairs the same person) or
   enroll (one photo of a consented subject, drawn with replacement, so the same photo is sent again, often
   concurrently, and must then be skipped). Images alternate between multipart uploads and base64 JSON.
4. Prints latency percentiles (p50, p90, p99, max) per operation and overall, throughput, and counts by
   status; then checks, on the stopped server's database:
   - no 5xx answer;
   - no lost or duplicated enrollment: per subject, the stored templates are exactly the pre-enrolled ones
     plus the distinct photos some answer reported ``enrolled``, and no photo was reported enrolled twice;
   - the ledger has exactly one ``enroll`` entry per answered enrollment and one ``identify`` entry per
     answered search (the audit entry is written in the same transaction as the effect);
   - the audit chain verifies (through the API while serving, and directly afterwards).

Bounded in time and count: the run stops at ``--duration`` seconds (at most 600) or ``--max-requests`` per
client, whichever comes first; the server is stopped at the end. Exit code 0 when every check passed, 1
otherwise.

Usage::

    python benchmarks/bench_service.py [--clients 32] [--duration 60] [--workers 2] [--faces DIR]
                                       [--mix identify=0.6,verify=0.25,enroll=0.15] [--json OUT]
                                       [--db postgresql://USER@HOST/EMPTY_DATABASE] [--recognizer NAME]

It also prints where the CPU went: the server's CPU time per answered request (its process tree, from /proc), the
load generator's, the CPU bound (CPUs / server CPU per request), the share of it reached, and the queueing minimum
of the mean latency for that many clients. ``bench_service_wrk.py`` runs the identify-only case with wrk, a load
generator that costs far less CPU than this one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from faceledger.engine import Engine
from faceledger.gallery import Gallery

ROOT = Path(__file__).resolve().parents[1]
PURPOSE = "access-control"
MAX_PIXELS = 400_000  # photos a door camera or a desk sends; the set's few posters are left out


@dataclass(frozen=True)
class Photo:
    """One photo of the shared set, with its bytes preloaded."""

    path: Path
    identity: str
    data: bytes
    b64: str
    sha256: str


@dataclass
class Sample:
    """One answered (or failed) request."""

    op: str
    status: int
    seconds: float
    body: Any = None
    error: str | None = None


@dataclass
class Plan:
    """The deployment: photos per subject, who was pre-enrolled with what, the keys."""

    subjects: dict[str, list[Photo]]
    pre_enrolled: dict[str, set[str]] = field(default_factory=dict)
    enroll_pool: list[tuple[str, Photo]] = field(default_factory=list)
    probes: list[Photo] = field(default_factory=list)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    auditor: str = ""


def faces_folder(arg: str | None) -> Path:
    """The shared face set: --faces, $FACELEDGER_FACES, or ../shared/data/faces from the project root."""
    if arg:
        return Path(arg)
    env = os.environ.get("FACELEDGER_FACES")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "faces"


def load_photos(faces: Path) -> dict[str, list[Photo]]:
    """Labeled photos of at most MAX_PIXELS pixels, by identity, for identities with at least three."""
    by_identity: dict[str, list[Photo]] = defaultdict(list)
    with open(faces / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["identity"]:
                continue
            path = faces / row["path"]
            with Image.open(path) as image:
                if image.size[0] * image.size[1] > MAX_PIXELS:
                    continue
            data = path.read_bytes()
            by_identity[row["identity"]].append(
                Photo(path, row["identity"], data, base64.b64encode(data).decode(), hashlib.sha256(data).hexdigest())
            )
    return {k: v for k, v in sorted(by_identity.items()) if len(v) >= 3}


def face_set_photos(parser: argparse.ArgumentParser, arg: str | None) -> dict[str, list[Photo]]:
    """The photos of the face set named by ``--faces`` (see :func:`faces_folder`); a usage error when it is missing."""
    faces = faces_folder(arg)
    if not (faces / "manifest.csv").is_file():
        parser.error(f"face set not found at {faces} (use --faces or FACELEDGER_FACES)")
    return load_photos(faces)


def subject_id(identity: str) -> str:
    """A subject id for an identity label (ids may not hold spaces)."""
    return "s-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def prepare(
    db: str | Path, photos: dict[str, list[Photo]], clients: int, seed: int, recognizer: str | None = None
) -> Plan:
    """Create the deployment, consents, pre-enrollments and keys (templates made with ``recognizer``, which the
    server then follows: a gallery runs the recognizer its templates were made with)."""
    rng = random.Random(seed)
    plan = Plan({subject_id(k): v for k, v in photos.items()})
    engine = Engine(threads=2, recognizer=recognizer)
    with Gallery.init(db, actor="bench-setup", engine=engine) as g:
        for subject in plan.subjects:
            g.add_consent(
                subject,
                actor="bench-setup",
                collected_by="desk",
                legal_basis="explicit consent",
                purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )
        names = list(plan.subjects)
        rng.shuffle(names)
        for subject in names[: len(names) // 2]:
            result = g.enroll(
                subject, [p.path for p in plan.subjects[subject][:2]], actor="bench-setup", purpose=PURPOSE
            )
            plan.pre_enrolled[subject] = {o.sha256 for o in result.enrolled if o.sha256}
        for i in range(clients):
            plan.keys[f"client-{i:02d}"] = {
                role: g.create_api_key(f"client-{i:02d}-{role}", role, actor="bench-setup")[1]
                for role in ("operator", "enroller")
            }
        plan.auditor = g.create_api_key("bench-auditor", "auditor", actor="bench-setup")[1]
    for subject, subject_photos in plan.subjects.items():
        for photo in subject_photos:
            plan.probes.append(photo)
            if photo.sha256 not in plan.pre_enrolled.get(subject, set()):
                plan.enroll_pool.append((subject, photo))
    return plan


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(db: str | Path, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """``faceledger serve`` (as ``python -m faceledger.interfaces.api``) in its own process group."""
    command = [
        sys.executable,
        "-m",
        "faceledger.interfaces.api",
        "--db",
        str(db),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--purge-interval",
        "0",
        "--log-level",
        "warning",
    ]
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(base: str, server: subprocess.Popen[bytes], log: Path, limit: float = 120.0) -> float:
    """Seconds until /readyz answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if server.poll() is not None:
            raise SystemExit(f"server exited during startup:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server not ready after {limit:.0f} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group and wait (SIGKILL after 30 s)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def parse_mix(text: str) -> dict[str, float]:
    """``identify=0.6,verify=0.25,enroll=0.15`` → weights."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in ("identify", "verify", "enroll"):
            raise SystemExit(f"--mix: unknown operation {name!r}")
        out[name] = float(weight)
    return out


async def client_loop(
    index: int, base: str, plan: Plan, mix: dict[str, float], deadline: float, max_requests: int, seed: int
) -> list[Sample]:
    """One client: its own keys and connection, requests drawn with its own seeded generator."""
    rng = random.Random(seed * 1000 + index)
    keys = plan.keys[f"client-{index:02d}"]
    ops, weights = list(mix), list(mix.values())
    samples: list[Sample] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for n in range(max_requests):
            if time.monotonic() >= deadline:
                break
            op = rng.choices(ops, weights)[0]
            multipart = n % 2 == 0
            if op == "identify":
                photo = rng.choice(plan.probes)
                headers = {"Authorization": f"Bearer {keys['operator']}", "X-Purpose": PURPOSE}
                request: dict[str, Any] = (
                    {"files": {"image": (photo.path.name, photo.data)}} if multipart else {"json": {"image": photo.b64}}
                )
                url = "/v1/identify"
            elif op == "verify":
                a = rng.choice(plan.probes)
                same = [p for p in plan.subjects[subject_id(a.identity)] if p is not a]
                b = rng.choice(same) if rng.random() < 0.5 else rng.choice(plan.probes)
                headers = {"Authorization": f"Bearer {keys['operator']}", "X-Purpose": PURPOSE}
                request = (
                    {"files": {"image_a": ("a", a.data), "image_b": ("b", b.data)}}
                    if multipart
                    else {"json": {"image_a": a.b64, "image_b": b.b64}}
                )
                url = "/v1/verify"
            else:
                subject, photo = rng.choice(plan.enroll_pool)
                headers = {"Authorization": f"Bearer {keys['enroller']}", "X-Purpose": PURPOSE}
                request = (
                    {"data": {"subject": subject}, "files": {"images": (photo.path.name, photo.data)}}
                    if multipart
                    else {"json": {"subject": subject, "images": [photo.b64]}}
                )
                url = "/v1/enroll"
            started = time.perf_counter()
            try:
                response = await client.post(url, headers=headers, **request)
                body = response.json() if op == "enroll" or response.status_code >= 400 else None
                samples.append(Sample(op, response.status_code, time.perf_counter() - started, body))
            except httpx.HTTPError as exc:
                samples.append(Sample(op, 0, time.perf_counter() - started, None, f"{type(exc).__name__}: {exc}"))
    return samples


async def run_load(base: str, plan: Plan, args: argparse.Namespace) -> tuple[list[Sample], float]:
    """All clients at once; returns the samples and the wall time of the load phase."""
    mix = parse_mix(args.mix)
    started = time.monotonic()
    deadline = started + args.duration
    results = await asyncio.gather(
        *(client_loop(i, base, plan, mix, deadline, args.max_requests, args.seed) for i in range(args.clients))
    )
    return [s for r in results for s in r], time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_table(samples: list[Sample], wall: float) -> list[dict[str, Any]]:
    """Per operation and overall: count, rate, status counts, latency percentiles in ms."""
    rows = []
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.op].append(s)
    groups["all"] = samples
    for op in ("identify", "verify", "enroll", "all"):
        group = groups.get(op, [])
        if not group:
            continue
        ms = [s.seconds * 1000 for s in group]
        rows.append(
            {
                "op": op,
                "requests": len(group),
                "per_second": round(len(group) / wall, 2),
                "status": dict(sorted(Counter(str(s.status) for s in group).items())),
                "p50_ms": round(percentile(ms, 50), 1),
                "p90_ms": round(percentile(ms, 90), 1),
                "p99_ms": round(percentile(ms, 99), 1),
                "max_ms": round(max(ms), 1),
            }
        )
    return rows


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and every process under it (uvicorn's workers are
    its children), read from /proc (Linux). Processes that already exited are not counted: the server's stay up for
    the whole run."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(pid, 0.0) for pid in tree)


def cpu_accounting(server_s: float, client_s: float, requests: int, wall: float, clients: int) -> dict[str, Any]:
    """Where the machine's CPU went, per answered request, and the bounds it sets on throughput and latency.

    The CPU bound is the machine's CPUs divided by the server's CPU per request (what the service could answer if
    nothing else ran); the load generator runs on the same CPUs, so the bound with it counts its CPU too. The
    queueing minimum is the mean latency a closed loop of ``clients`` would see at the CPU bound (Little's law:
    every client always has one request waiting, so each waits for the others' service)."""
    cpus = len(os.sched_getaffinity(0))
    server_ms = 1000 * server_s / max(requests, 1)
    client_ms = 1000 * client_s / max(requests, 1)
    bound = cpus / (server_ms / 1000) if server_ms else 0.0
    bound_with_client = cpus / ((server_ms + client_ms) / 1000) if server_ms else 0.0
    achieved = requests / wall if wall else 0.0
    return {
        "cpus": cpus,
        "server_cpu_ms_per_request": round(server_ms, 2),
        "load_generator_cpu_ms_per_request": round(client_ms, 2),
        "cpu_bound_rps": round(bound, 1),
        "cpu_bound_with_load_generator_rps": round(bound_with_client, 1),
        "fraction_of_cpu_bound": round(achieved / bound, 3) if bound else None,
        "fraction_of_bound_with_load_generator": round(achieved / bound_with_client, 3) if bound_with_client else None,
        "queueing_minimum_mean_ms": round(clients * server_ms / cpus, 1),
        "busy_fraction": round((server_s + client_s) / (cpus * wall), 3) if wall else None,
    }


def check_integrity(db: str | Path, plan: Plan, samples: list[Sample]) -> dict[str, Any]:
    """Compare what the answers said with what the database holds."""
    problems: list[str] = []
    reported: dict[str, Counter[str]] = defaultdict(Counter)
    for s in samples:
        if s.op == "enroll" and s.status == 200:
            for image in s.body["images"]:
                if image["status"] == "enrolled":
                    reported[s.body["subject"]][image["sha256"]] += 1
    duplicated = {subj: [h for h, n in c.items() if n > 1] for subj, c in reported.items()}
    duplicated = {k: v for k, v in duplicated.items() if v}
    if duplicated:
        problems.append(f"photos reported enrolled more than once: {duplicated}")
    with Gallery.open(db) as g:
        stored = {s.id: s.templates for s in g.subjects(actor="bench-check", purpose=PURPOSE)}
        verify = g.audit_verify()
        enroll_entries = g.audit_entries(action="enroll")
        identify_entries = g.audit_entries(action="identify")
    expected = {
        subj: len(plan.pre_enrolled.get(subj, set()) | set(reported.get(subj, {})))
        for subj in set(plan.pre_enrolled) | set(reported)
    }
    expected = {k: v for k, v in expected.items() if v}
    if stored != expected:
        diff = {
            k: (stored.get(k), expected.get(k)) for k in set(stored) | set(expected) if stored.get(k) != expected.get(k)
        }
        problems.append(f"stored templates differ from the answers (stored, expected): {diff}")
    answered_enrolls = sum(
        1
        for s in samples
        if s.op == "enroll" and (s.status == 200 or (s.status == 422 and s.body["error"]["code"] == "no_usable_image"))
    )
    bench_enroll_entries = sum(1 for e in enroll_entries if e.data["actor"] != "bench-setup")
    if bench_enroll_entries != answered_enrolls:
        problems.append(f"{bench_enroll_entries} enroll audit entries for {answered_enrolls} answered enrollments")
    answered_searches = sum(1 for s in samples if s.op == "identify" and s.status == 200)
    if len(identify_entries) != answered_searches:
        problems.append(f"{len(identify_entries)} identify audit entries for {answered_searches} answered searches")
    if not verify.ok:
        problems.append(f"audit chain broken at entry {verify.bad_seq}: {verify.problem}")
    return {
        "subjects_stored": len(stored),
        "templates_stored": sum(stored.values()),
        "templates_pre_enrolled": sum(len(v) for v in plan.pre_enrolled.values()),
        "templates_enrolled_under_load": sum(len(c) for c in reported.values()),
        "enroll_answers_skipped_as_already_enrolled": sum(
            1 for s in samples if s.op == "enroll" and s.status == 200 and s.body["skipped"]
        ),
        "audit_entries": verify.entries,
        "audit_ok": verify.ok,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (at most 600)")
    parser.add_argument("--max-requests", type=int, default=5000, help="per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mix", default="identify=0.6,verify=0.25,enroll=0.15")
    parser.add_argument("--faces", help="shared face set folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    parser.add_argument("--db", help="an empty PostgreSQL database URL (default: an SQLite file in a temporary folder)")
    parser.add_argument("--recognizer", help="bundled recognizer of the gallery (default: the engine's)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or not 0 < args.duration <= 600 or not 1 <= args.max_requests <= 100_000:
        parser.error("--clients 1..256, --duration 0..600 s, --max-requests 1..100000")

    photos = face_set_photos(parser, args.faces)
    with tempfile.TemporaryDirectory(prefix="faceledger-bench-") as tmp:
        db: str | Path = Path(tmp) / "bench.db"
        if args.db:  # the server and this process find the master key through the environment
            db = args.db
            os.environ["FACELEDGER_KEY_FILE"] = str(Path(tmp) / "bench.key")
        t0 = time.monotonic()
        plan = prepare(db, photos, args.clients, args.seed, args.recognizer)
        setup = time.monotonic() - t0
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "server.log"
        server = start_server(db, port, args.workers, log)
        try:
            ready = wait_ready(base, server, log)
            server_before, client_before = process_tree_cpu(server.pid), time.process_time()
            samples, wall = asyncio.run(run_load(base, plan, args))
            cpu = cpu_accounting(
                process_tree_cpu(server.pid) - server_before,
                time.process_time() - client_before,
                len(samples),
                wall,
                args.clients,
            )
            served_verify = httpx.get(
                f"{base}/v1/audit/verify", headers={"Authorization": f"Bearer {plan.auditor}"}, timeout=120
            ).json()
        finally:
            stop_server(server)
        integrity = check_integrity(db, plan, samples)
        server_log = log.read_text(errors="replace")

    table = latency_table(samples, wall)
    five_xx = sum(1 for s in samples if s.status >= 500)
    failed = [s for s in samples if s.status == 0]
    unexpected_4xx = Counter(
        f"{s.op} {s.status} {s.body['error']['code']}"
        for s in samples
        if 400 <= s.status < 500 and isinstance(s.body, dict) and "error" in s.body
    )
    problems = list(integrity["problems"])
    if five_xx:
        problems.append(f"{five_xx} answers with a 5xx status")
    if failed:
        problems.append(f"{len(failed)} requests got no answer: {failed[0].error}")
    if not served_verify.get("ok"):
        problems.append(f"audit verification through the API failed: {served_verify}")
    results = {
        "clients": args.clients,
        "workers": args.workers,
        "duration_s": round(wall, 1),
        "mix": args.mix,
        "cpus": os.cpu_count(),
        "subjects_with_consent": len(plan.subjects),
        "setup_s": round(setup, 1),
        "server_ready_s": round(ready, 1),
        "throughput_rps": round(len(samples) / wall, 2),
        "latency": table,
        "cpu": cpu,
        "five_xx": five_xx,
        "no_answer": len(failed),
        "client_errors_by_code": dict(unexpected_4xx.most_common()),
        "integrity": integrity,
        "audit_verify_via_api": served_verify,
        "server_log_errors": [line for line in server_log.splitlines() if "ERROR" in line][:5],
        "ok": not problems,
        "problems": problems,
    }

    print(
        f"faceledger service load test: {args.clients} clients, {wall:.1f} s, {args.workers} worker(s), "
        f"{os.cpu_count()} CPU(s), mix {args.mix}"
    )
    print(
        f"setup {setup:.1f} s ({len(plan.subjects)} consented subjects, "
        f"{integrity['templates_pre_enrolled']} templates pre-enrolled); server ready in {ready:.1f} s"
    )
    print(f"{'op':<9} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}  status")
    for row in table:
        print(
            f"{row['op']:<9} {row['requests']:>8} {row['per_second']:>7} {row['p50_ms']:>8} {row['p90_ms']:>8} "
            f"{row['p99_ms']:>8} {row['max_ms']:>8}  {row['status']}"
        )
    print(f"throughput {results['throughput_rps']} requests/s; 5xx: {five_xx}; no answer: {len(failed)}")
    mean_ms = 1000 * sum(s.seconds for s in samples) / max(len(samples), 1)
    print(
        f"CPU per request: server {cpu['server_cpu_ms_per_request']} ms, load generator "
        f"{cpu['load_generator_cpu_ms_per_request']} ms ({cpu['cpus']} CPUs {100 * cpu['busy_fraction']:.0f} % busy); "
        f"CPU bound {cpu['cpu_bound_rps']} requests/s (reached {100 * cpu['fraction_of_cpu_bound']:.1f} %), "
        f"{cpu['cpu_bound_with_load_generator_rps']} counting the load generator's CPU (reached "
        f"{100 * cpu['fraction_of_bound_with_load_generator']:.1f} %); mean latency {mean_ms:.0f} ms against a "
        f"queueing minimum of {cpu['queueing_minimum_mean_ms']} ms for {args.clients} clients at the CPU bound"
    )
    if unexpected_4xx:
        print(f"4xx by cause: {dict(unexpected_4xx.most_common())}")
    print(
        f"enrollment: {integrity['templates_enrolled_under_load']} templates added under load, "
        f"{integrity['enroll_answers_skipped_as_already_enrolled']} answers skipped a photo already enrolled; "
        f"stored {integrity['templates_stored']} templates for {integrity['subjects_stored']} subjects"
    )
    print(
        f"audit: {integrity['audit_entries']} entries, chain ok: {integrity['audit_ok']} "
        f"(via API: {served_verify.get('ok')})"
    )
    print("checks: " + ("all passed" if not problems else "FAILED\n  " + "\n  ".join(problems)))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
