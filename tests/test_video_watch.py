"""Watching video under a deployment, on scenes built from the shared photos: candidates for the watchlist only,
no trace of bystanders in the database or its WAL, every face blurred in the output, the session on the ledger,
refusals without an authorisation, a session that stops when its deployment ends, and a live stream that is cut
and comes back."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceledger import Engine
from faceledger.evaluate.scenes import Scene, make_scene
from faceledger.evaluate.video_score import iou, score_tracks
from faceledger.gallery import Gallery
from faceledger.ledger import EXAMPLE_POLICY, parse_policy
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import DeploymentError
from faceledger.vision.video import open_video

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

POLICY = EXAMPLE_POLICY.replace(
    'name = "staff"\npurposes = ["access-control"]\ndescription = "Employees who enrolled at the front desk"',
    'name = "watchlist"\npurposes = ["locate"]\n[galleries.watchlist]\nlegal_bases = ["court order"]\n'
    'categories = ["missing person"]',
)
START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Scene:
    # seed 3: five people, three of them watchlisted (each enrolled from another photo than the one in the scene)
    folder = tmp_path_factory.mktemp("scene")
    return make_scene(
        folder / "hall.mp4", seed=3, seconds=8, people=5, watchlisted=3, width=960, height=540, faces_root=faces_dir
    )


def open_gallery(
    tmp_path: Path, engine: Engine, scene: Scene, clock: Clock, db: str | None = None, **deployment: object
) -> tuple[Gallery, dict[str, str]]:
    """A watchlist of the scene's people and a deployment; on ``db`` (a PostgreSQL URL), else on an SQLite file."""
    g = Gallery.init(
        db or tmp_path / "g.db",
        actor="admin",
        policy=parse_policy(POLICY),
        engine=engine,
        clock=clock,
        key_file=tmp_path / "g.db.key",
    )
    subjects: dict[str, str] = {}
    for i, (person, photo) in enumerate(sorted(scene.enrollment.items())):
        subject = f"w-{i}"
        subjects[person] = subject
        g.add_consent(
            subject,
            actor="desk",
            collected_by="Judge Example",
            legal_basis="court order",
            purpose="locate",
            evidence_ref=f"ORDER-{i}",
            category="missing person",
            expires_at=clock.now + timedelta(days=7),
        )
        assert len(g.enroll(subject, [photo], actor="desk", purpose="locate").enrolled) == 1
    fields: dict[str, object] = {
        "actor": "chief",
        "purpose": "administration",
        "gallery": None,
        "search_purpose": "locate",
        "legal_basis": "court order",
        "location": "hall",
        "sources": [str(Path(scene.path).parent / "*.mp4")],
        "authorised_by": "Supt. Example",
        "authorisation_ref": "AUTH-1",
        "valid_to": clock.now + timedelta(hours=8),
        "max_watchlist": 5,
    }
    fields.update(deployment)
    g.add_deployment("hall", **fields)
    return g, subjects


def disk_bytes(db: Path) -> bytes:
    return b"".join(Path(str(db) + s).read_bytes() for s in ("", "-wal", "-shm") if Path(str(db) + s).exists())


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, engine: Engine, scene: Scene) -> dict[str, object]:
    """One watch run with --out, shared by the tests that read its results."""
    tmp = tmp_path_factory.mktemp("watch")
    clock = Clock()
    g, subjects = open_gallery(tmp, engine, scene, clock)
    before = len(g.audit_entries())
    out = tmp / "blurred.mp4"
    events = list(g.watch(scene.path, actor="operator-7", out=out))
    return {"gallery": g, "subjects": subjects, "events": events, "before": before, "out": out, "db": tmp / "g.db"}


def test_candidates_for_the_watchlist_and_none_for_bystanders(watched: dict, scene: Scene) -> None:  # type: ignore[type-arg]
    events, subjects, g = watched["events"], watched["subjects"], watched["gallery"]
    tracks = [e for e in events if e["event"] == "track"]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["frames"] == scene.frames and summary["dropped_frames"] == 0
    for event in tracks:
        assert {"track", "first_frame", "last_frame", "best_frame", "box", "decision", "candidates"} <= event.keys()
        assert event["decision"] in ("candidate", "no_match", "unusable") and len(event["box"]) == 4
    score = score_tracks(scene, tracks, watchlist=subjects)
    assert score.wrong_subject == 0 and score.bystander_candidates == 0 and score.unassigned_candidates == 0
    # a candidate is raised within about a second of the track's first face (a later one only for a better face)
    first = {e["track"]: e["first_frame"] for e in tracks}
    delays = sorted(e["frame"] - first[e["track"]] for e in events if e["event"] == "candidate")
    assert delays and delays[len(delays) // 2] <= scene.fps, delays
    assert score.recall >= 2 / 3, score.summary()
    assert score.tracks_per_appearance <= 1.5, score.summary()
    # candidates from video are ordinary candidates in the review queue, with the camera and the track
    raised = {c["candidate_id"] for e in tracks for c in e["candidates"]}
    pending = g.pending_reviews(actor="reviewer", purpose="locate")
    assert {p.candidate.id for p in pending} == raised and raised
    for item in pending:
        assert item.candidate.source == scene.path and item.candidate.track is not None
        assert item.candidate.subject_id in subjects.values()


def test_the_session_is_on_the_ledger_in_tens_of_entries(watched: dict, scene: Scene) -> None:  # type: ignore[type-arg]
    g, events = watched["gallery"], watched["events"]
    entries = [e.data for e in g.audit_entries(after_seq=watched["before"])]
    entries = [e for e in entries if e["action"] != AuditAction.REVIEW_LIST]  # other tests read the queue
    actions = [e["action"] for e in entries]
    with_candidates = sum(1 for e in events if e["event"] == "track" and e["decision"] == "candidate")
    assert actions[0] == AuditAction.WATCH_START and actions[-1] == AuditAction.WATCH_STOP
    assert actions.count(AuditAction.WATCH_TRACK) == with_candidates
    assert len(entries) == 2 + with_candidates  # grows with tracks, not frames
    start, stop = entries[0]["details"], entries[-1]["details"]
    assert start["deployment"] == "hall" and start["watchlist_size"] == 3 and entries[0]["threshold"] > 0
    assert stop["frames"] == scene.frames and stop["tracks"] == events[-1]["tracks"]
    assert stop["tracks_no_match"] + stop["tracks_unusable"] + stop["tracks_with_candidates"] == stop["tracks"]
    assert g.audit_verify().ok
    session = g.video_sessions()[0]
    assert session.state == "stopped" and session.session.frames == scene.frames


def test_bystanders_leave_no_trace(watched: dict, scene: Scene, engine: Engine) -> None:  # type: ignore[type-arg]
    g, subjects, db = watched["gallery"], watched["subjects"], watched["db"]
    with g.context.store.read() as tx:
        candidates = tx.list_candidates()
    assert {c.subject_id for c in candidates} <= set(subjects.values())
    # the faces of the bystanders, as the engine sees them in the video: none of their embedding bytes is on disk
    bystanders = [a for a in scene.appearances if a.person not in scene.enrollment]
    assert bystanders
    on_disk = disk_bytes(db)
    checked = 0
    with open_video(scene.path) as video:
        for frame in video:
            if frame.index % 10:
                continue
            found = engine.detect(frame.image)
            for a in bystanders:
                truth = a.box(frame.index)
                if truth is None:
                    continue
                near = [i for i in range(len(found)) if iou(truth, found.boxes[i]) > 0.4]
                if near:
                    vector = engine.embed_faces(frame.image, found[near[:1]])[0]
                    for part in (vector.astype("<f4").tobytes()[j : j + 16] for j in range(0, 512, 16)):
                        assert part not in on_disk
                    checked += 1
    assert checked >= 5


def test_every_face_is_blurred_in_the_output(watched: dict, scene: Scene, engine: Engine) -> None:  # type: ignore[type-arg]
    out = watched["out"]
    threshold = engine.threshold_for_fmr(1e-3)
    photos = {a.person: engine.largest_face_embedding(a.photo) for a in scene.appearances}
    frames = 0
    found_faces = 0
    with open_video(out) as video, open_video(scene.path) as original:
        for frame, source in zip(video, original, strict=True):
            frames += 1
            assert frame.image.shape == source.image.shape
            if frame.index % 5:
                continue
            found = engine.detect(frame.image)
            if len(found):
                vectors = engine.embed_faces(frame.image, found)
                for a in scene.appearances:
                    # no face in the output can be re-identified as anyone in the scene, watchlisted or not
                    assert float(np.max(vectors @ photos[a.person])) < threshold, (a.person, frame.index)
                found_faces += len(found)
            for a in scene.appearances:
                truth = a.box(frame.index)
                if truth is None or truth[3] - truth[1] < 30:
                    continue
                x1, y1, x2, y2 = (int(v) for v in truth)
                before = source.image[y1:y2, x1:x2].astype(np.int16)
                after = frame.image[y1:y2, x1:x2].astype(np.int16)
                grey = cv2.cvtColor(frame.image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
                # the face's detail is gone: the region changed and lost its edges
                assert np.abs(before - after).mean() > 4 or cv2.Laplacian(grey, cv2.CV_32F).var() < 30
    assert frames == scene.frames


def test_no_deployment_no_watch(tmp_path: Path, engine: Engine, scene: Scene) -> None:
    clock = Clock()
    g, _ = open_gallery(tmp_path, engine, scene, clock)
    g.end_deployment("hall", actor="chief", purpose="administration", reason="operation over")
    url = "rtsp://viewer:s3cret@127.0.0.1:9/hall"
    for source in (scene.path, url):
        with pytest.raises(DeploymentError) as caught:
            list(g.watch(source, actor="operator-7"))
        assert "s3cret" not in str(caught.value)
    refused = [e.data for e in g.audit_entries(action=AuditAction.WATCH_REFUSED)]
    assert len(refused) == 2 and refused[1]["details"]["source"] == "rtsp://***@127.0.0.1:9/hall"
    assert "s3cret" not in str(refused) and g.video_sessions() == []


def test_a_watchlist_larger_than_authorised_is_refused(tmp_path: Path, engine: Engine, scene: Scene) -> None:
    g, _ = open_gallery(tmp_path, engine, scene, Clock(), max_watchlist=2)
    with pytest.raises(DeploymentError, match="holds 3 searchable subjects"):
        list(g.watch(scene.path, actor="operator-7"))


def test_an_expired_entry_leaves_the_search(tmp_path: Path, engine: Engine, scene: Scene) -> None:
    clock = Clock()
    g, _ = open_gallery(tmp_path, engine, scene, clock)
    clock.now += timedelta(days=8)  # every entry expired; the deployment is renewed
    g.add_deployment(
        "hall-2",
        actor="chief",
        purpose="administration",
        gallery=None,
        search_purpose="locate",
        legal_basis="court order",
        location="hall",
        sources=[scene.path],
        authorised_by="Supt. Example",
        authorisation_ref="AUTH-2",
        valid_to=clock.now + timedelta(hours=1),
        max_watchlist=5,
    )
    events = list(g.watch(scene.path, actor="operator-7", deployment="hall-2"))
    assert events[-1]["candidates"] == 0 and events[-1]["tracks"] > 0


def test_ending_the_deployment_stops_the_session(tmp_path: Path, engine: Engine, scene: Scene) -> None:
    clock = Clock()
    g, _ = open_gallery(tmp_path, engine, scene, clock)
    other = Gallery.open(tmp_path / "g.db", engine=engine, clock=clock)  # another process ends it
    ended = []

    def on_status(status: object) -> None:
        if not ended and getattr(status, "frames", 0) >= 20:
            other.end_deployment("hall", actor="chief", purpose="administration", reason="called off")
            ended.append(True)

    events = list(g.watch(scene.path, actor="operator-7", on_status=on_status, status_every=0.05))
    summary = events[-1]
    assert ended and summary["reason"] == "deployment ended" and summary["frames"] < scene.frames
    stop = g.audit_entries(action=AuditAction.WATCH_STOP)[-1].data["details"]
    assert stop["reason"] == "deployment ended"
    other.close()


# --------------------------------------------------------------------------------------------- a live stream
class _Stream:
    """The scene as an MJPEG-over-HTTP camera at 25 fps on 127.0.0.1; ``cut()`` drops it, ``start()`` brings it
    back on the same port, continuing where the scene was."""

    def __init__(self, scene: Scene) -> None:
        with open_video(scene.path) as video:
            self.jpegs = [cv2.imencode(".jpg", f.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in video]
        self.position = 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        stream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while stream.position < len(stream.jpegs) and stream.server is not None:
                        data = stream.jpegs[stream.position]
                        stream.position += 1
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(data)).encode()
                            + b"\r\n\r\n"
                            + data
                            + b"\r\n"
                        )
                        time.sleep(0.04)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.allow_reuse_address = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@pytest.fixture
def stream(scene: Scene) -> Iterator[_Stream]:
    s = _Stream(scene)
    s.start()
    yield s
    s.cut()


def test_a_live_stream_cut_and_restarted(tmp_path: Path, engine: Engine, scene: Scene, stream: _Stream) -> None:
    clock = Clock()
    url = f"http://cam:pw@127.0.0.1:{stream.port}/hall.mjpg"
    g, subjects = open_gallery(tmp_path, engine, scene, clock, sources=[f"http://127.0.0.1:{stream.port}/*"])
    video = open_video(url, live=True, read_timeout=1.0, max_reconnect_seconds=2.5)
    events: list[dict] = []  # type: ignore[type-arg]

    def cut_and_restart() -> None:
        while stream.position < len(stream.jpegs) // 2:
            time.sleep(0.02)
        stream.cut()
        time.sleep(1.5)
        stream.start()

    threading.Thread(target=cut_and_restart, daemon=True).start()
    with video:
        for event in g.watch(url, actor="operator-7", video=video):
            events.append(event)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["gaps"] >= 1
    assert summary["reason"].startswith("gave up"), summary  # the stream never came back after the scene ended
    stop = g.audit_entries(action=AuditAction.WATCH_STOP)[-1].data["details"]
    assert stop["source"] == f"http://***@127.0.0.1:{stream.port}/hall.mjpg" and "pw" not in str(stop)
    gap = stop["gaps"][0]
    assert 1.0 <= gap["end_s"] - gap["start_s"] <= 4.0 and gap["reason"].startswith("disconnected")
    # what was decided before the cut is kept: candidates are in the review queue, tracks were reported
    raised = [e for e in events if e["event"] == "candidate"]
    assert raised, "the watchlisted people were seen"
    queue = {p.candidate.id for p in g.pending_reviews(actor="reviewer", purpose="locate")}
    assert {c["candidate_id"] for e in raised for c in e["candidates"]} == queue
    assert {c["subject"] for e in raised for c in e["candidates"]} <= set(subjects.values())


def test_readme_video_example_runs_as_written(tmp_path: Path, faces_dir: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Video in Python") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's video section has no python block"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACELEDGER_")} | {
        "FACELEDGER_FACES": str(faces_dir)
    }
    done = subprocess.run(
        [sys.executable, "-c", match.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *raised, last = done.stdout.splitlines()
    assert raised and all(line.split(" ", 1)[1].startswith("['mp-") for line in raised)
    tracks, _, candidates, _ = last.split()
    assert int(tracks) >= 4 and int(candidates) == len(raised)
    with Gallery.open(tmp_path / "hall.db") as g:
        assert g.audit_verify().ok
        assert [e.data["action"] for e in g.audit_entries()][-1] == AuditAction.WATCH_STOP
        assert len(g.pending_reviews(actor="reviewer", purpose="locate-missing-person")) == int(candidates)
    with open_video(tmp_path / "hall.blurred.mp4") as video:
        assert sum(1 for _ in video) == 200


def test_a_watchlist_that_outgrows_its_authorisation_stops_the_session(
    tmp_path: Path, engine: Engine, scene: Scene
) -> None:
    clock = Clock()
    g, _ = open_gallery(tmp_path, engine, scene, clock)
    other = Gallery.open(tmp_path / "g.db", engine=engine, clock=clock)
    changed = []

    def on_status(status: object) -> None:
        if not changed and getattr(status, "frames", 0) >= 20:
            other.change_deployment("hall", actor="chief", purpose="administration", reason="list cut", max_watchlist=2)
            changed.append(True)

    events = list(g.watch(scene.path, actor="operator-7", on_status=on_status, status_every=0.05))
    assert changed and events[-1]["reason"] == "watchlist of 3 is larger than the 2 authorised"
    assert events[-1]["frames"] < scene.frames
    other.close()


def test_a_watch_session_on_a_postgresql_gallery(
    tmp_path: Path, engine: Engine, scene: Scene, postgres_url: str
) -> None:
    """`watch` on one host, review on another: the session, its candidates and its entries are in the shared
    PostgreSQL gallery, and a second process sees the candidates in its review queue."""
    clock = Clock()
    g, subjects = open_gallery(tmp_path, engine, scene, clock, db=postgres_url)
    try:
        events = list(g.watch(scene.path, actor="operator-7"))
    finally:
        g.close()
    tracks = [e for e in events if e["event"] == "track"]
    score = score_tracks(scene, tracks, watchlist=subjects)
    assert score.wrong_subject == 0 and score.bystander_candidates == 0 and score.recall >= 2 / 3, score.summary()
    raised = {c["candidate_id"] for e in tracks for c in e["candidates"]}
    with Gallery.open(postgres_url, key_file=tmp_path / "g.db.key", clock=clock) as other:
        pending = other.pending_reviews(actor="reviewer", purpose="locate")
        assert {p.candidate.id for p in pending} == raised and raised
        actions = [e.data["action"] for e in other.audit_entries()]
        assert "watch.start" in actions and "watch.stop" in actions and other.audit_verify().ok
