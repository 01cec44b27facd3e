"""The image arguments of the command line: folders (reported, or expanded with --recursive) and - (stdin)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from faceledger.interfaces.cli import main
from faceledger.ledger import MASTER_KEY_ENV

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "faceledger" / "examples" / "astronaut.jpg"
PHOTO = EXAMPLE.read_bytes()


def run(*args: str, stdin: bytes | None = None) -> tuple[int, list[dict], str]:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, list(args), input=stdin)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Images at two depths, hidden ones, a video, a text file: ``a.png``, ``b.jpg`` and ``sub/c.jpg`` are taken."""
    root = tmp_path / "photos"
    for name in ("b.jpg", "a.png", "sub/c.jpg", ".hidden.jpg", ".git/d.jpg", "sub/.e.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE, root / name)
    (root / "notes.txt").write_text("not an image")
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return root


def taken(folder: Path) -> list[str]:
    return [str(folder / name) for name in ("a.png", "b.jpg", "sub/c.jpg")]


@pytest.mark.parametrize("command", ["detect", "embed", "anonymize"])
def test_a_folder_without_recursive_is_reported_and_skipped(command: str, folder: Path, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path / "out")] if command == "anonymize" else []
    code, lines, err = run(command, "--json", *extra, str(folder), str(EXAMPLE))
    assert code == 1, "a skipped folder is a failed input"
    assert [line["image"] for line in lines] == [str(folder), str(EXAMPLE)], "the rest is processed"
    assert lines[0]["error"].startswith("a folder: use --recursive") and lines[1]["error"] is None
    assert err.startswith(f"faceledger: {folder}: a folder: use --recursive") and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", ["detect", "embed", "anonymize"])
def test_recursive_takes_the_images_inside_sorted(command: str, folder: Path, tmp_path: Path) -> None:
    extra = ["--out", str(tmp_path / "out")] if command == "anonymize" else []
    code, lines, err = run(command, "--json", "--recursive", *extra, str(folder))
    assert code == 0, err
    assert [line["image"] for line in lines] == taken(folder), "images only, hidden ones left out, sorted"
    assert all(line["error"] is None for line in lines)
    note = [line for line in err.splitlines() if "clip.mp4" in line]
    assert len(note) == 1 and note[0].startswith(f"faceledger: {folder / 'clip.mp4'}: a video, skipped")
    assert "faceledger watch" in note[0] and "faceledger anonymize" in note[0]
    assert "notes.txt" not in err and ".hidden" not in err


def test_a_folder_with_no_image_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / ".cache").mkdir(parents=True)
    shutil.copy(EXAMPLE, empty / ".cache" / "x.jpg")
    code, lines, err = run("detect", "--json", "-r", str(empty), str(EXAMPLE))
    assert code == 1 and lines[0]["image"] == str(empty) and "no image files" in lines[0]["error"]
    assert err.startswith(f"faceledger: {empty}: a folder with no image files")
    assert len(lines[1]["faces"]) == 1


@pytest.mark.parametrize("command", ["detect", "embed"])
def test_stdin_is_one_image_named_stdin(command: str) -> None:
    code, lines, err = run(command, "--json", "-", str(EXAMPLE), stdin=PHOTO)
    assert code == 0, err
    assert [line["image"] for line in lines] == ["<stdin>", str(EXAMPLE)]
    assert lines[0]["faces"] == lines[1]["faces"], "the same image, read from stdin"


def test_stdin_can_be_given_once() -> None:
    result = CliRunner().invoke(main, ["detect", "-", "-"], input=PHOTO)
    assert result.exit_code == 2 and "only once" in result.stderr
    result = CliRunner().invoke(main, ["verify", "-", "-"], input=PHOTO)
    assert result.exit_code == 2 and "only once" in result.stderr


def test_what_is_wrong_with_stdin_is_named_stdin() -> None:
    code, lines, err = run("detect", "--json", "-", stdin=b"not an image at all")
    assert code == 1 and lines[0]["image"] == "<stdin>" and lines[0]["faces"] == []
    assert err.startswith(f"faceledger: <stdin>: {lines[0]['error']}")
    code, lines, err = run("detect", "--json", "-", stdin=b"")
    assert code == 1 and "nothing on standard input" in lines[0]["error"]


def test_verify_takes_one_image_from_stdin(tmp_path: Path) -> None:
    code, lines, _ = run("verify", "--json", "-", str(EXAMPLE), stdin=PHOTO)
    assert code == 0 and lines[0]["match"] is True
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 200, np.uint8))
    code, lines, err = run("verify", "--json", str(EXAMPLE), "-", stdin=blank.read_bytes())
    assert code == 1 and lines[0]["image"] == "<stdin>" and lines[0]["error"] == "no face found"
    assert err.splitlines() == ["faceledger: <stdin>: no face found"]


def test_anonymize_writes_the_copy_of_stdin(tmp_path: Path) -> None:
    code, lines, _ = run("anonymize", "--json", "--out", str(tmp_path), "-", stdin=PHOTO)
    assert code == 0 and lines[0]["image"] == "<stdin>" and lines[0]["hidden"] == 1
    assert Path(lines[0]["output"]) == tmp_path / "stdin.anonymized.png" and Path(lines[0]["output"]).is_file()


@pytest.mark.parametrize("command", ["detect", "embed", "anonymize", "identify", "enroll"])
def test_help_tells_of_folders_and_stdin(command: str) -> None:
    text = CliRunner().invoke(main, [command, "--help"]).stdout
    assert "--recursive" in text and "standard input" in text
    assert "standard input" in CliRunner().invoke(main, ["verify", "--help"]).stdout


# ---------------------------------------------------------------------------------------------- the gallery
@pytest.fixture
def gallery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.setenv("FACELEDGER_DB", str(tmp_path / "g.db"))
    monkeypatch.setenv("FACELEDGER_ACTOR", "tester")
    monkeypatch.setenv("FACELEDGER_PURPOSE", "access-control")
    assert run("init")[0] == 0
    consent = ("--collected-by", "desk", "--legal-basis", "explicit consent", "--evidence", "form-1")
    assert run("consent", "add", "s1", *consent)[0] == 0


@pytest.mark.usefixtures("gallery")
def test_enroll_and_identify_from_stdin() -> None:
    code, lines, err = run("enroll", "s1", "-", "--json", stdin=PHOTO)
    assert code == 0, err
    assert [(o["source"], o["status"]) for o in lines[0]["images"]] == [("<stdin>", "enrolled")]
    code, lines, err = run("identify", "--json", "-", stdin=PHOTO)
    assert code == 0, err
    assert lines[0]["image"] == "<stdin>" and lines[0]["faces"][0]["candidates"][0]["subject"] == "s1"


@pytest.mark.usefixtures("gallery")
def test_enroll_and_identify_skip_a_folder_or_take_its_images(folder: Path) -> None:
    code, lines, err = run("enroll", "s1", str(folder), str(EXAMPLE), "--json")
    assert code == 1, "the folder was not enrolled from"
    assert lines[0] == {"image": str(folder), "error": lines[0]["error"]}
    assert lines[0]["error"].startswith("a folder: use --recursive") and lines[1]["enrolled"] == 1
    assert f"faceledger: {folder}: a folder: use --recursive" in err
    code, lines, err = run("enroll", "s1", "--recursive", str(folder), "--json")
    assert code == 0, err
    assert [o["source"] for o in lines[0]["images"]] == taken(folder) and lines[0]["skipped"] == 3
    assert "clip.mp4: a video, skipped" in err

    code, lines, err = run("identify", "--json", str(folder), str(EXAMPLE))
    assert code == 1 and lines[0] == {"image": str(folder), "faces": [], "error": lines[0]["error"]}
    assert f"faceledger: {folder}: a folder: use --recursive" in err
    assert lines[1]["faces"][0]["candidates"][0]["subject"] == "s1"
    code, lines, err = run("identify", "--json", "-r", str(folder))
    assert code == 0, err
    assert [line["image"] for line in lines] == taken(folder)
