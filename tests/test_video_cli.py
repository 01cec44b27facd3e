"""The video commands, run through click on a real scene cut from the shared photos: ``track`` and ``watch`` JSON
lines scripts depend on, refusals without a deployment, candidates on the review queue, credentials never shown,
the status line, the ``deployment`` commands' states and errors, and ``anonymize`` on a video (every frame kept,
no face left that the recognizer could match)."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import GalleryLocation
from faceledger import Engine
from faceledger.evaluate.scenes import Scene, make_scene
from faceledger.evaluate.video_score import iou
from faceledger.gallery.video import WatchStatus
from faceledger.interfaces.cli import main
from faceledger.interfaces.cli.video import StatusLine
from faceledger.ledger import EXAMPLE_POLICY, MASTER_KEY_ENV

_COMMENTED = (
    '# [[galleries]]\n# name = "missing-persons"\n# purposes = ["locate-missing-person"]\n# [galleries.watchlist]\n'
    '# legal_bases = ["court order", "missing-person report"]\n# categories = ["missing person", "vulnerable adult"]\n'
    "# max_entry_days = 30\n"
)
WATCHLIST_POLICY = EXAMPLE_POLICY.replace(_COMMENTED, _COMMENTED.replace("# ", ""))
GALLERY, PURPOSE = "missing-persons", "locate-missing-person"
SECRET_URL = "rtsp://user:secret@127.0.0.1:9/x"  # port 9 (discard): refused at once on the loopback
CAMERA_PATTERN = "rtsp://cam:hunter2@127.0.0.1:9/*"
SECRETS = ("user:secret", "secret@", "hunter2", "cam:")

TRACK_KEYS = {"event", "track", "first_frame", "last_frame", "best_frame", "box", "decision", "candidates"}
TRACK_EXTRA = {"first_time", "last_time", "quality", "faces_embedded"}  # documented in TrackSummary.to_dict
SUMMARY_KEYS = {"event", "frames", "seconds", "wall_s", "fps", "tracks", "candidates", "dropped_frames"}
STATUS = re.compile(r"^(\d+) frames +[\d.]+ fps  tracks (\d+) open / (\d+) done  candidates (\d+)  dropped (\d+)")


# ---------------------------------------------------------------------------------------------- helpers
@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    def all_text(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Cli:
    """``faceledger`` in-process against one database, as actor ``tester``."""

    db: Path | str
    key_file: Path | None = None  # default: beside an SQLite file

    def __call__(self, *args: str) -> Run:
        env = {
            "FACELEDGER_DB": str(self.db),
            "FACELEDGER_KEY_FILE": None if self.key_file is None else str(self.key_file),
            "FACELEDGER_ACTOR": "tester",
            "FACELEDGER_PURPOSE": None,
            MASTER_KEY_ENV: None,
        }
        result = CliRunner().invoke(main, list(args), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        return Run(result.exit_code, result.stdout, result.stderr, lines)

    def init(self, folder: Path) -> None:
        policy = folder / "policy.toml"
        policy.write_text(WATCHLIST_POLICY, encoding="utf-8")
        assert self("init", "--policy", str(policy)).code == 0


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def _deployment_add(cli: Cli, name: str, *sources: str, valid_to: str | None = None) -> Run:
    source_args = [arg for source in sources for arg in ("--source", source)]
    return cli(
        "deployment", "add", name, "--gallery", GALLERY, "--search-purpose", PURPOSE, "--legal-basis", "court order",
        "--location", "Test corridor", *source_args, "--authorised-by", "Supt. Example", "--reference", "AUTH-1",
        "--valid-to", valid_to or _later(hours=2), "--max-watchlist", "5", "--json",
    )  # fmt: skip


def _decode(path: str | Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def _person_at(scene: Scene, frame: int, box: list[float]) -> str | None:
    """The scene person whose true face box at ``frame`` overlaps ``box`` most (IoU > 0.3)."""
    best, best_iou = None, 0.3
    for appearance in scene.appearances:
        truth = appearance.box(frame)
        if truth is not None and iou(truth, box) > best_iou:
            best, best_iou = appearance.person, iou(truth, box)
    return best


def _changed_fraction(scene: Scene, before: list[np.ndarray], after: list[np.ndarray]) -> dict[str, float]:
    """Per person: the fraction of frames with the face mostly visible whose true face region changed a lot (mean
    absolute difference above 12 grey levels)."""
    out = {}
    for appearance in scene.appearances:
        changed = []
        for f in range(appearance.first_frame, appearance.last_frame + 1):
            box = appearance.box(f, min_visibility=0.5)
            if box is None:
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            diff = np.abs(before[f][y1:y2, x1:x2].astype(np.float32) - after[f][y1:y2, x1:x2].astype(np.float32))
            changed.append(float(diff.mean()) > 12.0)
        assert len(changed) >= 20, f"{appearance.person} is visible in too few frames to judge"
        out[appearance.person] = float(np.mean(changed))
    return out


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def scene(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """4 s at 640x360: two watchlisted people (enrolled from another photo) and a bystander."""
    folder = tmp_path_factory.mktemp("clips").resolve()
    return make_scene(
        folder / "clip.mp4", seed=10, seconds=4.0, people=3, watchlisted=2, width=640, height=360, faces_root=faces_dir
    )


@dataclass
class Watched:
    """A watchlist database and everything the watch commands said on it, in order."""

    cli: Cli
    subjects: dict[str, str]  # scene person -> subject id
    out: Path
    refused_file: Run
    refused_url: Run
    added: Run
    unreachable: Run
    watched: Run
    quiet: Run
    reviews: Run
    audit: Run


@pytest.fixture(scope="module")
def watched(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Watched:
    folder = tmp_path_factory.mktemp("watch")
    cli = Cli(folder / "watch.db")
    cli.init(folder)
    subjects = {}
    for i, (person, photo) in enumerate(sorted(scene.enrollment.items())):
        subject = subjects[person] = f"w-{i}"
        consent = cli(
            "consent", "add", subject, "--collected-by", "Judge B. Example", "--legal-basis", "court order",
            "--evidence", f"ORDER-{i}", "--purpose", PURPOSE, "--gallery", GALLERY, "--category", "missing person",
            "--expires-at", _later(days=5),
        )  # fmt: skip
        assert consent.code == 0, consent.stderr
        enrolled = cli("enroll", subject, photo, "--purpose", PURPOSE, "--gallery", GALLERY)
        assert enrolled.code == 0, enrolled.stderr
    clips = str(Path(scene.path).parent / "*.mp4")
    out = folder / "blurred.mp4"
    return Watched(
        cli=cli,
        subjects=subjects,
        out=out,
        refused_file=cli("watch", scene.path, "--json"),
        refused_url=cli("watch", SECRET_URL, "--json"),
        added=_deployment_add(cli, "corridor", clips, CAMERA_PATTERN),
        unreachable=cli("watch", SECRET_URL, "--json"),
        watched=cli("watch", scene.path, "--json", "--out", str(out)),
        quiet=cli("watch", scene.path, "--quiet"),
        reviews=cli("review", "list", "--json", "--purpose", PURPOSE),
        audit=cli("audit", "show", "--json"),
    )


@pytest.fixture(scope="module")
def anonymized(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    out = tmp_path_factory.mktemp("anonymized") / "blurred.mp4"
    return Cli(out.with_name("unused.db"))("anonymize", scene.path, "--out", str(out), "--json"), out


# ---------------------------------------------------------------------------------------------- track
@pytest.mark.shared_data
def test_track_prints_one_object_per_track_then_a_summary_of_every_frame(scene: Scene, tmp_path: Path) -> None:
    run = Cli(tmp_path / "unused.db")("track", scene.path, "--json")
    assert run.code == 0, run.stderr
    assert len(run.lines) == len(run.stdout.splitlines()), "nothing but JSON lines on stdout"
    *tracks, summary = run.lines
    assert tracks and all(t["event"] == "track" for t in tracks)
    for t in tracks:
        assert set(t) == TRACK_KEYS | TRACK_EXTRA, sorted(set(t) ^ (TRACK_KEYS | TRACK_EXTRA))
        assert len(t["box"]) == 4 and all(isinstance(v, int | float) for v in t["box"])
        x1, y1, x2, y2 = t["box"]
        assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height
        assert 0 <= t["first_frame"] <= t["best_frame"] <= t["last_frame"] < scene.frames
        assert t["decision"] in ("not_searched", "unusable") and t["candidates"] == []
    assert len({t["track"] for t in tracks}) == len(tracks), "one line per track"
    # every person crossing the scene is followed by a track whose best face is theirs
    assert {_person_at(scene, t["best_frame"], t["box"]) for t in tracks} >= {a.person for a in scene.appearances}

    assert set(summary) == SUMMARY_KEYS and summary["event"] == "summary"
    assert summary["frames"] == len(_decode(scene.path)) == scene.frames == 100, "every frame processed"
    assert summary["dropped_frames"] == 0 and summary["candidates"] == 0
    assert summary["tracks"] == len(tracks)
    assert summary["seconds"] == pytest.approx((scene.frames - 1) / scene.fps, abs=0.05)
    assert summary["wall_s"] > 0 and summary["fps"] == pytest.approx(summary["frames"] / summary["wall_s"], rel=0.05)


@pytest.mark.shared_data
def test_track_text_and_a_file_that_is_not_a_video(scene: Scene, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "unused.db")
    run = cli("track", scene.path)
    assert run.code == 0 and re.search(r"^track \d+: frames \d+-\d+, best \d+, quality [\d.]+$", run.stdout, re.M)
    assert f"{scene.frames} frames" in run.stdout.splitlines()[-1]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video", encoding="utf-8")
    run = cli("track", str(text), "--json")
    assert run.code == 1 and run.stdout == "" and "not a video" in run.stderr


# ---------------------------------------------------------------------------------------------- watch
@pytest.mark.shared_data
def test_watch_is_refused_without_a_deployment(watched: Watched, scene: Scene) -> None:
    run = watched.refused_file
    assert run.code == 1 and run.stdout == ""
    assert f"no deployment active now covers {scene.path}" in run.stderr
    assert "faceledger deployment add" in run.stderr, "the message says what is missing"
    assert watched.added.code == 0, watched.added.stderr


@pytest.mark.shared_data
def test_watch_credentials_never_appear_in_output_or_on_the_ledger(watched: Watched) -> None:
    refused, unreachable = watched.refused_url, watched.unreachable
    assert refused.code == 1 and refused.stdout == ""
    assert "rtsp://***@127.0.0.1:9/x" in refused.stderr and "no deployment active now covers" in refused.stderr
    # covered by the deployment's (credentialed) pattern, but nothing listens: fails on connecting
    assert unreachable.code == 1 and unreachable.stdout == ""
    assert "rtsp://***@127.0.0.1:9/x" in unreachable.stderr and "no deployment" not in unreachable.stderr
    assert watched.added.lines[0]["sources"][1] == "rtsp://***@127.0.0.1:9/*"
    listed = watched.cli("deployment", "list")
    for run in (refused, unreachable, watched.added, listed, watched.audit):
        for secret in SECRETS:
            assert secret not in run.all_text(), (secret, run.all_text()[:500])
    actions = [e["action"] for e in watched.audit.lines]
    assert actions.count("watch.refused") == 2
    refusal = next(e for e in watched.audit.lines if e["action"] == "watch.refused" and "rtsp" in str(e))
    assert refusal["details"]["source"] == "rtsp://***@127.0.0.1:9/x"
    failed = [e for e in watched.audit.lines if e["action"] == "watch.stop" and "rtsp" in e["details"]["source"]]
    assert len(failed) == 1 and failed[0]["details"]["reason"].startswith("failed")


@pytest.mark.shared_data
def test_watch_json_names_the_watchlisted_people_and_summarises(watched: Watched, scene: Scene) -> None:
    run = watched.watched
    assert run.code == 0, run.stderr
    assert len(run.lines) == len(run.stdout.splitlines()), "nothing but JSON lines on stdout"
    kinds = [e["event"] for e in run.lines]
    assert set(kinds) == {"candidate", "track", "summary"} and kinds.count("summary") == 1 and kinds[-1] == "summary"
    candidates = [e for e in run.lines if e["event"] == "candidate"]
    tracks = [e for e in run.lines if e["event"] == "track"]
    summary = run.lines[-1]
    for t in tracks:
        assert set(t) >= TRACK_KEYS and len(t["box"]) == 4
        assert t["decision"] in ("candidate", "no_match", "unusable")
        assert (t["decision"] == "candidate") == bool(t["candidates"])
    for c in candidates:  # a candidate is announced before its track ends, with the same candidates
        ended = next(i for i, e in enumerate(run.lines) if e["event"] == "track" and e["track"] == c["track"])
        assert run.lines.index(c) < ended and run.lines[ended]["candidates"] == c["candidates"]

    assert set(summary) >= SUMMARY_KEYS and summary["deployment"] == "corridor"
    assert summary["frames"] == scene.frames and summary["dropped_frames"] == 0
    assert summary["tracks"] == len(tracks) and summary["candidates"] == sum(len(c["candidates"]) for c in candidates)
    assert summary["reason"] == "source ended"

    named: dict[str, set[str]] = {}
    for t in tracks:
        person = _person_at(scene, t["best_frame"], t["box"])
        if t["decision"] == "candidate":
            assert person in watched.subjects, f"track {t['track']} of {person} raised {t['candidates']}"
            named.setdefault(person, set()).update(c["subject"] for c in t["candidates"])
    assert named == {person: {subject} for person, subject in watched.subjects.items()}


@pytest.mark.shared_data
def test_watch_candidates_wait_for_review_with_their_video_and_track(watched: Watched, scene: Scene) -> None:
    assert watched.reviews.code == 0
    pending = {row["id"]: row for row in watched.reviews.lines}
    raised = [(e, c) for e in watched.watched.lines if e["event"] == "candidate" for c in e["candidates"]]
    assert raised
    for event, candidate in raised:
        row = pending[candidate["candidate_id"]]
        assert row["subject_id"] == candidate["subject"] and row["status"] == "pending"
        assert row["source"] == scene.path and row["track"] == event["track"]
        assert row["similarity"] == candidate["similarity"] and row["gallery"] == GALLERY
    # the quiet run raised its own candidates for the same people
    assert len(pending) == 2 * len(raised)


@pytest.mark.shared_data
def test_watch_out_writes_the_whole_video_with_faces_hidden(watched: Watched, scene: Scene) -> None:
    assert f"wrote {watched.out}" in watched.watched.stderr
    before, after = _decode(scene.path), _decode(watched.out)
    assert len(after) == len(before) == scene.frames
    assert after[0].shape == before[0].shape == (scene.height, scene.width, 3)
    changed = _changed_fraction(scene, before, after)
    assert min(changed.values()) >= 0.9, changed


@pytest.mark.shared_data
def test_watch_status_line_and_quiet(watched: Watched, scene: Scene) -> None:
    statuses = [STATUS.match(line) for line in watched.watched.stderr.splitlines()]
    found = [m for m in statuses if m]
    assert found, watched.watched.stderr
    summary = watched.watched.lines[-1]
    frames, still_open, done, candidates, dropped = (int(v) for v in found[-1].groups())
    assert (frames, still_open, done, candidates, dropped) == (
        scene.frames,
        0,
        summary["tracks"],
        summary["candidates"],
        0,
    ), "without a terminal the last line is the final status"
    quiet = watched.quiet
    assert quiet.code == 0 and quiet.stderr == "", "--quiet: nothing on stderr"
    for subject in watched.subjects.values():
        assert re.search(rf"^track \d+: candidate {subject} \(0\.\d{{3}}\) \(pending review\)$", quiet.stdout, re.M)
    assert re.search(rf"^{scene.frames} frames \(4\.0 s of video\) in [\d.]+ s", quiet.stdout, re.M)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_on_a_terminal_and_in_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    line = StatusLine()
    line(WatchStatus(frames=10, fps=25.0))
    line(WatchStatus(frames=20, fps=25.0, candidates=1))
    assert terminal.getvalue().count("\r") == 2 and "\n" not in terminal.getvalue(), "rewritten in place"
    line.close()
    assert terminal.getvalue().endswith("\n") and "20 frames" in terminal.getvalue().rsplit("\r", 1)[1]

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    line = StatusLine(every=3600)
    for frames in (10, 20, 30):
        line(WatchStatus(frames=frames))
    line.close()
    assert [int(row.split()[0]) for row in log.getvalue().splitlines()] == [10, 30], "the first, then the final"
    silent = StatusLine(enabled=False)
    silent(WatchStatus(frames=10))
    silent.close()
    assert [int(row.split()[0]) for row in log.getvalue().splitlines()] == [10, 30]


def test_a_result_under_the_status_line_starts_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    terminal = _Terminal()  # stdout and stderr on one terminal
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdout", terminal)
    line = StatusLine()
    line(WatchStatus(frames=10, fps=25.0))
    line.clear()
    click.echo("track 1: candidate s1 (0.700) (pending review)")
    line(WatchStatus(frames=20, fps=25.0))
    rows = []
    for row in terminal.getvalue().split("\n"):
        cells: list[str] = []
        for part in row.split("\r"):  # a carriage return: what follows overwrites the line from its start
            cells[: len(part)] = part
        rows.append("".join(cells).rstrip())
    assert rows[0] == "track 1: candidate s1 (0.700) (pending review)", rows
    assert rows[1].startswith("20 frames")
    line.clear()
    line.clear()
    assert terminal.getvalue().endswith(" " * 100 + "\r") and terminal.getvalue().count(" " * 100 + "\r") == 2


# ---------------------------------------------------------------------------------------------- deployments
def test_deployment_states_changes_and_errors(tmp_path: Path, gallery_location: GalleryLocation) -> None:
    cli = Cli(gallery_location.location, gallery_location.key_file)
    cli.init(tmp_path)
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    run = _deployment_add(cli, "hall", "/footage/*.mp4", valid_to=past)
    assert run.code == 1 and "valid_to must be later than valid_from and now" in run.stderr
    run = cli("deployment", "add", "hall", "--gallery", GALLERY, "--source", "/footage/*.mp4")
    assert run.code == 2 and "Missing option" in run.stderr
    added = _deployment_add(cli, "hall", "/footage/*.mp4", "rtsp://10.0.0.7/cam")
    assert added.code == 0, added.stderr
    record = added.lines[0]
    assert (record["name"], record["gallery"], record["purpose"]) == ("hall", GALLERY, PURPOSE)
    assert record["sources"] == ["/footage/*.mp4", "rtsp://10.0.0.7/cam"] and record["ended_at"] is None

    listed = cli("deployment", "list", "--json")
    assert listed.code == 0 and [(d["name"], d["state"]) for d in listed.lines] == [("hall", "active")]
    assert cli("deployment", "list").stdout.startswith("hall  active  missing-persons/locate-missing-person")

    new_end = _later(hours=6)
    changed = cli("deployment", "change", "hall", "--valid-to", new_end, "--reason", "extended by Supt.", "--json")
    assert changed.code == 0, changed.stderr
    assert changed.lines[0]["valid_to"] > record["valid_to"] and changed.lines[0]["valid_to"][:16] == new_end[:16]
    entry = cli("audit", "show", "--action", "deployment.change", "--json").lines[-1]
    assert entry["details"]["before"] == {"valid_to": record["valid_to"]}
    assert entry["details"]["after"] == {"valid_to": changed.lines[0]["valid_to"]}
    assert entry["details"]["reason"] == "extended by Supt."

    run = cli("deployment", "change", "hall", "--valid-to", past, "--reason", "typo")
    assert run.code == 1 and "valid_to must be later" in run.stderr
    assert cli("deployment", "list", "--json").lines[0]["valid_to"] == changed.lines[0]["valid_to"], "unchanged"
    run = cli("deployment", "change", "hall", "--reason", "nothing")
    assert run.code == 1 and "nothing to change" in run.stderr
    for args in (("change", "nope", "--valid-to", new_end, "--reason", "x"), ("end", "nope", "--reason", "x")):
        run = cli("deployment", *args)
        assert run.code == 1 and "no deployment 'nope'; deployments: hall" in run.stderr, run.stderr
    assert cli("deployment", "end", "hall").code == 2, "--reason is required"

    ended = cli("deployment", "end", "hall", "--reason", "operation over", "--json")
    assert ended.code == 0 and ended.lines[0]["ended_reason"] == "operation over" and ended.lines[0]["ended_at"]
    states = cli("deployment", "list", "--json").lines
    assert [(d["name"], d["state"], d["ended_by"]) for d in states] == [("hall", "ended", "tester")]
    run = cli("deployment", "change", "hall", "--valid-to", new_end, "--reason", "again")
    assert run.code == 1 and "'hall' is ended" in run.stderr
    run = cli("watch", "/footage/a.mp4", "--deployment", "hall")
    assert run.code == 1 and "not active now" in run.stderr and "operation over" in run.stderr
    actions = [e["action"] for e in cli("audit", "show", "--json").lines]
    assert [a for a in actions if a.startswith("deployment.")] == [
        "deployment.add",
        "deployment.change",
        "deployment.end",
    ]


# ---------------------------------------------------------------------------------------------- anonymize
@pytest.mark.shared_data
def test_anonymize_a_video_keeps_every_frame_and_its_size(anonymized: tuple[Run, Path], scene: Scene) -> None:
    run, out = anonymized
    assert run.code == 0, run.stderr
    record = run.lines[0]
    assert record["video"] == scene.path and record["output"] == str(out)
    assert record["frames"] == scene.frames and record["faces_tracked"] >= len(scene.appearances)
    frames = _decode(out)
    assert len(frames) == scene.frames and frames[0].shape == (scene.height, scene.width, 3)
    changed = _changed_fraction(scene, _decode(scene.path), frames)
    assert min(changed.values()) >= 0.9, changed


@pytest.mark.shared_data
def test_anonymize_leaves_no_face_the_recognizer_matches(anonymized: tuple[Run, Path], scene: Scene) -> None:
    engine = Engine()
    threshold = engine.threshold_for_fmr(1e-3)
    people = {a.person: engine.embed(a.photo).vectors[0] for a in scene.appearances}
    references = np.stack(list(people.values()))

    def best(frames: list[np.ndarray]) -> np.ndarray:
        top = np.full(len(people), -1.0)
        for frame in frames:
            vectors = engine.embed(frame).vectors
            if len(vectors):
                top = np.maximum(top, (vectors @ references.T).max(axis=0))
        return top

    original = best(_decode(scene.path)[::4])
    assert (original >= threshold).all(), f"the input shows everyone: {dict(zip(people, original, strict=True))}"
    hidden = best(_decode(anonymized[1]))
    assert (hidden < threshold).all(), f"recognisable after anonymizing: {dict(zip(people, hidden, strict=True))}"


@pytest.mark.shared_data
def test_anonymize_video_usage_errors(scene: Scene, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "unused.db")
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(scene.path, copy)
    run = cli("anonymize", scene.path, str(copy), "--out", str(tmp_path / "out.mp4"))
    assert run.code == 2 and "one video at a time" in run.stderr
    run = cli("anonymize", scene.path, "--keep", "0", "--out", str(tmp_path / "out.mp4"))
    assert run.code == 2 and "no --keep" in run.stderr
    assert not (tmp_path / "out.mp4").exists()
    original = copy.read_bytes()
    for same in (str(copy), f"{tmp_path}/../{tmp_path.name}/./copy.mp4"):
        run = cli("anonymize", str(copy), "--out", same)
        assert run.code == 1 and "would overwrite the input" in run.stderr
    assert copy.read_bytes() == original


@pytest.mark.shared_data
def test_detect_on_a_video_says_what_to_run_instead(scene: Scene, tmp_path: Path) -> None:
    run = Cli(tmp_path / "unused.db")("detect", scene.path)
    assert run.code == 1 and "not an image" in run.stderr
    assert "faceledger track" in run.stderr and "faceledger watch" in run.stderr
    run = Cli(tmp_path / "unused.db")("detect", "--json", scene.path)
    assert run.code == 1 and run.lines[0]["faces"] == [] and run.lines[0]["error"].startswith("not an image")


def test_identify_on_a_video_says_watch_is_the_command(tmp_path: Path, scene: Scene) -> None:
    clip = Path(scene.path)
    runner = CliRunner()
    db = str(tmp_path / "v.db")
    assert runner.invoke(main, ["--db", db, "init", "--actor", "admin"]).exit_code == 0
    result = runner.invoke(main, ["identify", str(clip), "--db", db, "--actor", "op", "--purpose", "access-control"])
    assert result.exit_code == 1 and "`faceledger watch` identifies them" in result.stderr
