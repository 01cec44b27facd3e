"""Batch enrollment on executors: threads of this process, a Ray cluster reached through ``ray://``, and a local Ray
cluster started by the executor. Same results as the sequential run, input order kept, refusals in place, a dead
worker's task run again, and nothing biometric written to Ray's directories."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import GalleryLocation, make_location
from faceledger import Engine
from faceledger.engine.executors import INLINE_LIMIT, LocalExecutor, RayExecutor
from faceledger.errors import FaceledgerError, ImageError
from faceledger.gallery import Gallery
from faceledger.gallery.keys import decrypt_reference_face, decrypt_template
from faceledger.interfaces.cli import main
from faceledger.models.router import bundled_card
from postgres import free_port

pytestmark = pytest.mark.shared_data

PURPOSE = "access-control"
PEOPLE = ("amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart")


def _manifest(faces_dir: Path, tmp_path: Path) -> list[tuple[str, list[str]]]:
    """Eight consenting people with two photos each, a group photo (refused: several faces), an unreadable file,
    and a subject without consent in the middle."""
    root = faces_dir / "face_api_js" / "examples" / "images"
    items = [(who, [str(p) for p in sorted((root / who).glob(f"{who}*.png"))[:2]]) for who in PEOPLE]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    items[2][1].append(str(root / "bbt1.jpg"))
    items[5][1].append(str(broken))
    items.insert(4, ("no-consent", [items[0][1][0]]))
    return items


def _init(where: GalleryLocation) -> None:
    with Gallery.init(where.location, key_file=where.key_file, actor="admin") as g:
        for subject in PEOPLE:
            g.add_consent(
                subject, actor="desk", collected_by="desk", legal_basis="explicit consent", purpose=PURPOSE,
                evidence_ref=f"form-{subject}",
            )  # fmt: skip


def _summary(results: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """What a batch reported, per subject in order: its images' status and reason, or the refusal's class."""
    out: list[tuple[str, object]] = []
    for subject, result in results:
        if isinstance(result, FaceledgerError):
            out.append((subject, type(result).__name__))
        else:
            out.append((subject, [(o.sha256, o.status, o.reason) for o in result.outcomes]))  # type: ignore[attr-defined]
    return out


def _stored(where: GalleryLocation) -> dict[str, tuple[bytes, bytes]]:
    """The decrypted template and reference JPEG of each enrolled image, by the image's SHA-256."""
    out = {}
    with Gallery.open(where.location, key_file=where.key_file) as g:
        ctx = g.context
        with ctx.store.read() as tx:
            for subject in PEOPLE:
                faces = {f.template_id: f for f in tx.reference_faces_of(subject)}
                for record in tx.templates_of(subject):
                    vector = decrypt_template(ctx, tx, record).astype(np.float32).tobytes()
                    out[record.source_sha256] = (vector, decrypt_reference_face(ctx, tx, faces[record.id]))
    return out


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    """Files under ``root`` that contain any of ``needles``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:  # a socket or a file removed while walking
                continue
            if any(n in data for n in needles):
                found.append(str(path))
    return found


def test_threads_give_the_sequential_results_in_input_order(
    faces_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """One worker into an SQLite gallery, two into a PostgreSQL one: the same reports and templates."""
    items = _manifest(faces_dir, tmp_path)
    engine = Engine()
    reports = {}
    where = {1: make_location(request, "sqlite", tmp_path), 2: make_location(request, "postgresql", tmp_path)}
    for workers in (1, 2):
        _init(where[workers])
        g = Gallery.open(where[workers].location, key_file=where[workers].key_file, engine=engine)
        with g, LocalExecutor(engine, workers) as run:
            reports[workers] = _summary(list(g.enroll_batch(items, actor="ops", purpose=PURPOSE, executor=run)))
    assert reports[1] == reports[2]
    assert [s for s, _ in reports[2]] == [s for s, _ in items]
    by_subject = dict(reports[2])
    assert by_subject["no-consent"] == "NoConsentError"
    assert [status for _, status, _ in by_subject["howard"]] == ["enrolled", "enrolled", "rejected"]  # type: ignore[union-attr]
    assert "usable faces" in by_subject["howard"][2][2]  # type: ignore[index]
    assert [status for _, status, _ in by_subject["raj"]] == ["enrolled", "enrolled", "rejected"]  # type: ignore[union-attr]
    one, two = _stored(where[1]), _stored(where[2])
    assert one.keys() == two.keys() and len(one) == 2 * len(PEOPLE)
    assert {k: v[0] for k, v in one.items()} == {k: v[0] for k, v in two.items()}


@pytest.fixture(scope="module", autouse=True)
def ray_token() -> Iterator[None]:
    """Token authentication on, with a token made for this module, for every cluster and client here (a Ray driver
    keeps the token it first read for the life of the process)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        patch.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def ray_head(ray_token: None) -> Iterator[tuple[str, Path]]:
    """A Ray head node in its own process (``ray start --head``), standing in for a cluster on other hosts; its Ray
    Client port is the ``ray://`` address."""
    temp = Path(f"/tmp/fl-ray-head-{secrets.token_hex(3)}")  # short: Ray's socket paths must stay under 107 bytes
    temp.mkdir()
    client_port = free_port()
    # grpcio's fork handlers crash the client server's proxy when it forks a session (observed with grpcio 1.85)
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "0"}
    ray = Path(sys.executable).with_name("ray")
    command = [
        str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
        "--ray-client-server-port", str(client_port), "--num-cpus", "2", "--temp-dir", str(temp),
        "--include-dashboard=false", "--disable-usage-stats",
    ]  # fmt: skip
    head = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", client_port), 0.5).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start --head did not come up (exit {head.poll()})") from None
                time.sleep(0.3)
        yield f"ray://127.0.0.1:{client_port}", temp
    finally:
        head.terminate()
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cli() -> click.Group:
    return main


def _write_manifest(items: list[tuple[str, list[str]]], path: Path) -> Path:
    path.write_text("subject,image\n" + "".join(f"{s},{i}\n" for s, images in items for i in images))
    return path


def test_enroll_batch_on_ray_matches_the_local_run_and_leaves_no_template_on_disk(
    cli: click.Group,
    ray_head: tuple[str, Path],
    faces_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The local run into an SQLite gallery, the Ray run into a PostgreSQL one (a batch host and the shared
    gallery of a deployment on several hosts): the same outcomes, the same templates bit for bit."""
    address, ray_temp = ray_head
    monkeypatch.setenv("FACELEDGER_ACTOR", "ops")
    manifest = _write_manifest(_manifest(faces_dir, tmp_path), tmp_path / "people.csv")
    where = {"local": make_location(request, "sqlite", tmp_path), "ray": make_location(request, "postgresql", tmp_path)}
    env = {kind: {"FACELEDGER_DB": w.location, "FACELEDGER_KEY_FILE": str(w.key_file)} for kind, w in where.items()}
    outputs = {}
    for kind in ("local", "ray"):
        _init(where[kind])
        args = ["enroll-batch", str(manifest), "--purpose", PURPOSE, "--json", "--executor", kind, "--workers", "2"]
        if kind == "ray":
            args += ["--ray-address", address]
        result = CliRunner().invoke(cli, args, env=env[kind])
        assert result.exit_code == 1, result.output  # the refused subject and images make it 1, as locally
        outputs[kind] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o.get("subject") for o in outputs["ray"]] == [o.get("subject") for o in outputs["local"]]
    for local, remote in zip(outputs["local"], outputs["ray"], strict=True):
        assert [(i["sha256"], i["status"]) for i in remote.get("images", [])] == [
            (i["sha256"], i["status"]) for i in local.get("images", [])
        ]
    assert any("no consent" in o.get("error", "") for o in outputs["ray"])

    local, remote = _stored(where["local"]), _stored(where["ray"])
    assert len(remote) == 2 * len(PEOPLE)
    assert {k: v[0] for k, v in remote.items()} == {k: v[0] for k, v in local.items()}  # bit for bit

    # The embeddings and face crops came back from the workers; none of them is in any file Ray wrote.
    needles = [b for pair in remote.values() for b in pair]
    probe = ray_temp / "scanner-check.bin"
    probe.write_bytes(b"head" + needles[0] + b"tail")
    assert _files_holding(ray_temp, needles) == [str(probe)]  # the scan finds what is there
    probe.unlink()
    assert _files_holding(ray_temp, needles) == []

    # Batch identification on both galleries: the same faces, candidates and similarities; evidence cut here.
    root = faces_dir / "face_api_js" / "examples" / "images"
    probes = [str(root / f"bbt{i}.jpg") for i in (1, 2)] + [str(root / "amy" / "amy4.png"), str(tmp_path / "gone.jpg")]
    found = {}
    for kind in ("local", "ray"):
        args = ["identify", *probes, "--purpose", PURPOSE, "--json", "--executor", kind]
        args += ["--ray-address", address] if kind == "ray" else []
        result = CliRunner().invoke(cli, args, env=env[kind])
        assert result.exit_code == 1, result.output  # gone.jpg
        found[kind] = [
            (o.get("image"), [[(c["subject"], round(c["similarity"], 5)) for c in f["candidates"]] for f in o["faces"]])
            for o in map(json.loads, result.stdout.splitlines())
        ]
    assert found["ray"] == found["local"]
    assert found["ray"][2][1][0][0][0] == "amy" and found["ray"][3] == (str(tmp_path / "gone.jpg"), [])
    candidates = sum(len(c) for _, faces in found["ray"] for c in faces)
    assert candidates >= 3 and where["ray"].count("evidence") == where["ray"].count("candidates") == candidates
    assert _files_holding(ray_temp, needles) == []

    # Run again on Ray: everything is skipped, nothing is added (a failed run resumes the same way).
    result = CliRunner().invoke(
        cli,
        ["enroll-batch", str(manifest), "--purpose", PURPOSE, "--json", "--executor", "ray", "--ray-address", address],
        env=env["ray"],
    )
    again = [json.loads(line) for line in result.stdout.splitlines()]
    statuses = {i["status"] for o in again for i in o.get("images", []) if i["status"] != "rejected"}
    assert statuses == {"skipped"}
    assert _stored(where["ray"]).keys() == remote.keys()


def crash_once(engine: Engine, job: tuple[str, str]) -> int:
    """Kills its worker process the first time it sees an item (a marker file remembers), then detects."""
    path, marker = job
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return len(engine.detect(engine.load(path)))


def sized(engine: Engine, size: int) -> bytes:
    return b"x" * size


def detect_count(engine: Engine, path: str) -> int:
    return len(engine.detect(engine.load(path)))


def test_local_ray_cluster_reruns_a_dead_workers_task_and_refuses_large_results(
    faces_dir: Path, tmp_path: Path
) -> None:
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    root = faces_dir / "face_api_js" / "examples" / "images"
    paths = [str(root / "bbt1.jpg"), str(root / "amy" / "amy1.png"), str(root / "bbt2.jpg")]
    engine = Engine()
    expected = [len(engine.detect(engine.load(p))) for p in paths]
    with RayExecutor(engine.recipe, workers=2) as run:
        temp = run._temp
        assert temp is not None and Path(temp).is_dir()
        jobs = [(p, str(tmp_path / f"crashed-{i}")) for i, p in enumerate(paths)]
        assert list(run.map(crash_once, jobs)) == expected  # each worker died once; its task ran again
        assert all((tmp_path / f"crashed-{i}").exists() for i in range(len(paths)))

        small, large = run.map(sized, [10, INLINE_LIMIT + 1])
        assert small == b"x" * 10
        assert isinstance(large, FaceledgerError) and "inline" in str(large)

        (missing,) = run.map(detect_count, [str(tmp_path / "gone.jpg")])
        assert isinstance(missing, ImageError) and missing.source.endswith("gone.jpg")
    assert not Path(temp).exists()  # the cluster it started is stopped and its directory removed

    # A worker whose model path holds another file than the engine was made with refuses to start.
    model = tmp_path / "recognizer.onnx"
    shutil.copyfile(bundled_card("sface_2021dec").path, model)
    mine = Engine(recognizer=model)
    with open(model, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
    with pytest.raises(FaceledgerError, match=r"could not build the engine.*SHA-256 differs"):
        RayExecutor(mine.recipe, workers=1)


def test_evaluate_on_ray_gives_the_local_report(
    cli: click.Group, ray_head: tuple[str, Path], faces_dir: Path, tmp_path: Path
) -> None:
    address, _ = ray_head
    root = faces_dir / "face_api_js" / "examples" / "images"
    rows = [f"{p},{who}\n" for who in PEOPLE for p in sorted((root / who).glob("*.png"))]
    (tmp_path / "people.csv").write_text("path,identity\n" + "".join(rows) + f"{root / 'bbt1.jpg'},\n")
    reports = {}
    for kind in ("local", "ray"):
        args = ["evaluate", str(tmp_path / "people.csv"), "--out", str(tmp_path / kind), "--no-plots", "--json"]
        args += ["--no-cache", "--executor", kind] + (["--ray-address", address] if kind == "ray" else [])
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        reports[kind] = json.loads(result.stdout)
        del reports[kind]["outputs"]  # the folder written to
    assert reports["ray"]["images"]["total"] == len(rows) + 1 and reports["ray"]["images"]["several_faces"] == 1
    assert reports["ray"] == reports["local"]


def test_a_ray_cluster_that_is_not_there_is_named_at_once(
    cli: click.Group, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    manifest = tmp_path / "people.csv"
    manifest.write_text("subject,image\namy,amy.png\n")
    where = make_location(request, "sqlite", tmp_path)
    _init(where)
    env = {"FACELEDGER_DB": where.location, "FACELEDGER_KEY_FILE": str(where.key_file), "FACELEDGER_ACTOR": "ops"}
    common = ["enroll-batch", str(manifest), "--purpose", PURPOSE]
    nowhere = f"ray://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(cli, [*common, "--executor", "ray", "--ray-address", nowhere], env=env)
    assert result.exit_code == 1 and f"cannot reach the Ray cluster at {nowhere}" in result.stderr
    assert "Ray Client port" in result.stderr
    result = CliRunner().invoke(cli, [*common, "--ray-address", nowhere], env=env)
    assert result.exit_code == 2 and "--ray-address needs --executor ray" in result.stderr


def test_more_workers_than_the_cluster_has_cpus_is_refused(ray_head: tuple[str, Path]) -> None:
    with pytest.raises(FaceledgerError, match=r"has 2 CPU\(s\): ask for at most 2 workers"):
        RayExecutor(Engine().recipe, address=ray_head[0], workers=3)
