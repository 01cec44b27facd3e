"""The engine commands of the CLI: JSON shapes scripts depend on, exit codes, outputs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ManifestRow
from faceledger.interfaces.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "src" / "faceledger" / "examples" / "astronaut.jpg")


def run(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, list(args))
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_detect_json_shape_and_partial_failure(tmp_path: Path, manifest: list[ManifestRow]) -> None:
    group = str(next(row.path for row in manifest if row.n_faces == 6))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, lines, err = run("detect", "--json", EXAMPLE, str(broken), group)
    assert code == 1, "some inputs failed"
    assert [line["image"] for line in lines] == [EXAMPLE, str(broken), group], "the rest is processed, in order"
    assert "broken.png" in err
    first, bad, crowd = lines
    assert first["error"] is None and len(first["faces"]) == 1
    face = first["faces"][0]
    assert set(face) >= {"box", "score", "landmarks", "quality"}
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    assert isinstance(face["score"], float) and isinstance(face["quality"], float)
    assert bad["faces"] == [] and bad["error"]
    assert len(crowd["faces"]) == 6


def test_embed_json_largest_face_first_with_unit_embeddings(manifest: list[ManifestRow]) -> None:
    group = str(next(row.path for row in manifest if row.n_faces == 7))
    code, lines, _ = run("embed", "--json", group)
    assert code == 0
    faces = lines[0]["faces"]
    assert len(faces) == 7
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    vectors = np.array([f["embedding"] for f in faces])
    assert vectors.shape == (7, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_verify_json(manifest: list[ManifestRow]) -> None:
    by_person: dict[str, list[str]] = {}
    for row in manifest:
        if row.source == "opencv_course" and row.identity:
            by_person.setdefault(row.identity, []).append(str(row.path))
    a, b = sorted(by_person)[:2]
    code, same, _ = run("verify", "--json", by_person[a][0], by_person[a][1])
    assert code == 0
    keys = {"similarity", "match", "threshold", "fmr", "fmr_interval", "fmr_state", "faces"}
    assert set(same[0]) == keys and same[0]["faces"] == [1, 1]
    code, diff, _ = run("verify", "--json", by_person[a][0], by_person[b][0])
    assert code == 0 and diff[0]["match"] is False
    assert same[0]["similarity"] > diff[0]["similarity"]
    assert 0 < diff[0]["fmr"] < 0.1


def test_verify_says_it_compared_the_largest_faces_of_a_group(manifest: list[ManifestRow]) -> None:
    group = str(next(row.path for row in manifest if row.n_faces == 6))
    code, lines, _ = run("verify", "--json", group, EXAMPLE)
    assert code == 0 and lines[0]["faces"] == [6, 1]
    result = CliRunner().invoke(main, ["verify", group, EXAMPLE])
    assert "compared the largest face of each image (6 and 1 faces found)" in result.stdout


def test_verify_without_a_face_exits_1(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((120, 120, 3), 200, np.uint8))
    code, lines, err = run("verify", "--json", EXAMPLE, str(blank))
    assert code == 1 and "no face" in err
    assert lines[0]["match"] is None


def test_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(main, ["detect"]).exit_code == 2
    assert CliRunner().invoke(main, ["verify", EXAMPLE]).exit_code == 2
    assert CliRunner().invoke(main, ["detect", "--score-threshold", "7", EXAMPLE]).exit_code == 2
    assert CliRunner().invoke(main, ["detect", "--recognizer", "/nonexistent.onnx", EXAMPLE]).exit_code == 2


def test_anonymize_writes_copies(tmp_path: Path, manifest: list[ManifestRow]) -> None:
    group = str(next(row.path for row in manifest if row.n_faces == 6))
    code, lines, _ = run("anonymize", "--json", "--out", str(tmp_path / "out"), EXAMPLE, group)
    assert code == 0
    assert [line["hidden"] for line in lines] == [1, 6]
    for line in lines:
        assert Path(line["output"]).is_file()


def test_anonymize_says_when_keep_names_no_face(tmp_path: Path) -> None:
    code, lines, stderr = run("anonymize", "--json", "--keep", "0", "--keep", "9", "--out", str(tmp_path), EXAMPLE)
    assert code == 0 and lines[0]["hidden"] == 0  # face 0 kept, the only face
    assert "--keep 9 ignored: faces 0-0 found" in stderr


@pytest.mark.parametrize("command", ["detect", "embed", "verify", "anonymize", "demo"])
def test_help_everywhere(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_demo_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "1 face(s)" in result.stdout and "-> match" in result.stdout
    assert "eileen-collins (0." in result.stdout, "the enrolled subject is identified in the transformed copy"
    assert "after erasure: 0 candidate(s)" in result.stdout and "chain verifies" in result.stdout
    assert (tmp_path / "anonymized.jpg").is_file() and (tmp_path / "demo.db").is_file()
    assert CliRunner().invoke(main, ["demo", "--out", str(tmp_path)]).exit_code == 0, "the demo can be rerun"


def test_a_file_name_cannot_forge_messages(tmp_path: Path) -> None:
    name = tmp_path / "a\nfaceledger: everything is fine\x1b[2J.jpg"
    name.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["detect", str(name)])
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 1, lines
    assert "\\nfaceledger: everything is fine\\x1b[2J.jpg" in lines[0] and "\x1b" not in result.stderr


def test_the_command_line_starts_without_loading_models_or_the_web_service() -> None:
    import subprocess
    import sys

    code = (
        "import sys, faceledger.interfaces.cli\n"
        "print(sorted(m for m in ('onnxruntime', 'fastapi', 'av') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "`faceledger --version` should not pay for models, FastAPI or PyAV"


def test_version_and_help_load_no_command_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from faceledger.interfaces.cli import main\n"
        "for args in (['--version'], ['--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('numpy', 'cv2', 'faceledger.gallery', 'faceledger.ledger', 'faceledger.interfaces.cli.engine')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "faceledger, version" in done.stdout and "verify-subject" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_the_command_index_lists_every_command_with_its_help() -> None:
    import inspect

    import click

    from faceledger.interfaces import cli

    found: dict[str, tuple[str, str]] = {}
    for module in cli.GROUP_MODULES:
        group = click.Group()
        importlib.import_module(f"faceledger.interfaces.cli.{module}").register(group)
        for name, command in group.commands.items():
            found[name] = (module, inspect.cleandoc(command.help or "").split("\n\n")[0])
    assert found == cli.COMMANDS


def test_the_help_written_from_the_index_is_the_help_of_the_loaded_commands() -> None:
    import click

    from faceledger.interfaces.cli import LazyGroup, register

    def group(cls: type[click.Group]) -> click.Group:
        return cls("faceledger", params=main.params, help=main.help,
                   context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip

    loaded, lazy = group(click.Group), group(LazyGroup)
    register(loaded)
    runner = CliRunner()
    texts = [runner.invoke(g, ["--help"], prog_name="faceledger", terminal_width=100).stdout for g in (loaded, lazy)]
    assert not lazy.commands  # nothing was imported to write it
    assert "verify-subject" in texts[0] and texts[1] == texts[0]


def test_detect_offers_no_recognizer_it_would_not_use() -> None:
    help_text = CliRunner().invoke(main, ["detect", "--help"]).stdout
    assert "--recognizer" not in help_text and "--detector" in help_text
    assert "--recognizer" in CliRunner().invoke(main, ["embed", "--help"]).stdout


def test_outputs_of_same_named_inputs_do_not_overwrite_each_other(tmp_path: Path) -> None:
    import shutil

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(EXAMPLE, tmp_path / folder / "1.jpg")
    inputs = [str(tmp_path / "a" / "1.jpg"), str(tmp_path / "b" / "1.jpg")]
    assert run("detect", "--draw", str(tmp_path / "drawn"), *inputs)[0] == 0
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["1-2.detected.jpg", "1.detected.jpg"]
    code, lines, _ = run("anonymize", "--json", "--out", str(tmp_path / "hidden"), *inputs)
    assert code == 0 and len({line["output"] for line in lines}) == 2
    assert len(list((tmp_path / "hidden").iterdir())) == 2


def test_drawn_labels_are_readable() -> None:
    from faceledger import Engine
    from faceledger.interfaces.cli.engine import draw_faces

    engine = Engine()
    image = engine.load(EXAMPLE)
    faces = engine.detect(image)
    drawn = draw_faces(image, faces)
    top = round(float(faces[0].box[1])) - 2  # the rows above the box: only the label is drawn there
    changed = np.nonzero((drawn[:top] != image[:top]).any(axis=(1, 2)))[0]
    assert changed.size and changed.max() - changed.min() + 1 >= 12, "labels at least 12 pixels tall on 512 pixels"


def on_a_terminal(*args: str, timeout: float = 120) -> str:
    """What ``faceledger ARGS`` shows with stdout and stderr on one pseudo-terminal (100 columns), as raw text."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    command = [sys.executable, "-m", "faceledger.interfaces.cli", *args]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        child.wait(timeout=30)
    return b"".join(chunks).decode("utf-8", "replace")


def screen(raw: str) -> list[str]:
    """The lines a terminal ends up showing: a carriage return moves back to the start of the line, and what is
    written then overwrites it (no other control sequence is expected)."""
    lines: list[str] = []
    for row in raw.replace("\r\n", "\n").split("\n"):
        cells: list[str] = []
        column = 0
        for char in row:
            if char == "\r":
                column = 0
                continue
            if column < len(cells):
                cells[column] = char
            else:
                cells.append(char)
            column += 1
        lines.append("".join(cells).rstrip())
    return lines


def test_results_on_a_terminal_are_not_spliced_into_the_progress_bar(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    inputs = [EXAMPLE, str(broken), EXAMPLE, EXAMPLE]
    raw = on_a_terminal("detect", "--json", *inputs)
    assert "detect:" in raw and "img/s" in raw, "a bar is shown on a terminal"
    shown = screen(raw)
    records = [line for line in shown if '"image"' in line]
    assert len(records) == len(inputs), shown
    for line in records:
        assert line.startswith("{") and "img/s" not in line, f"a bar fragment in a result line: {line!r}"
        json.loads(line)
    assert [json.loads(line)["image"] for line in records] == inputs
    messages = [line for line in shown if "broken.jpg:" in line]
    assert messages and all(line.startswith("faceledger: ") for line in messages), shown

    text = screen(on_a_terminal("detect", *inputs))
    results = [line for line in text if "face(s)" in line]
    assert len(results) == 3 and all(line.startswith(f"{EXAMPLE}: 1 face(s)") for line in results), text
    assert any(line.startswith("detect: 100%") for line in text), "the bar ends on a line of its own"


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        ("detect", ["image", "faces", "error"]),
        ("embed", ["image", "faces", "error"]),
        ("anonymize", ["image", "output", "faces", "hidden", "error"]),
        ("verify", ["image", "similarity", "match", "threshold", "fmr", "faces", "error"]),
    ],
)
def test_one_error_style(command: str, keys: list[str], tmp_path: Path) -> None:
    """stderr: ``faceledger: FILE: REASON``; JSON: the record of the file that failed, ``error`` the same REASON."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    extra = ["--out", str(tmp_path / "out")] if command == "anonymize" else []
    code, lines, err = run(command, "--json", *extra, EXAMPLE, str(broken))
    assert code == 1
    record = lines[-1]
    assert list(record) == keys and record["image"] == str(broken)
    assert record["error"] and str(broken) not in record["error"], "the name is in image, the reason in error"
    assert err.splitlines() == [f"faceledger: {broken}: {record['error']}"]


def test_engine_usage_errors_share_the_prefix() -> None:
    result = CliRunner().invoke(main, ["detect", "--detector", "/nonexistent.onnx", EXAMPLE])
    assert result.exit_code == 2 and result.stderr.startswith("faceledger: ")


def test_verify_reports_the_fmr_it_measured_and_refuses_one_it_cannot() -> None:
    result = CliRunner().invoke(main, ["verify", EXAMPLE, EXAMPLE, "--threshold", "0.99"])
    assert result.exit_code == 0 and "below what the calibration can measure" in result.output
    measured = CliRunner().invoke(main, ["verify", EXAMPLE, EXAMPLE])
    assert measured.exit_code == 0 and "95 % interval" in measured.output
    refused = CliRunner().invoke(main, ["verify", EXAMPLE, EXAMPLE, "--fmr", "1e-7"])
    assert refused.exit_code == 2 and "below what this calibration can measure" in refused.output
    assert "30,000,000 impostor pairs" in refused.output
