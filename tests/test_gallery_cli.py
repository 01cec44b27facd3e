"""The gallery and ledger commands, run through click: JSON output, exit codes, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import GalleryLocation, card_threshold, drop_append_only
from faceledger.interfaces.cli import register
from faceledger.ledger import MASTER_KEY_ENV
from faceledger.ledger.signing import signing_key_file

pytestmark = pytest.mark.shared_data

INIT_ACTIONS = ["ledger.init", "ledger.signing_key", "audit.checkpoint"]  # init signs its first checkpoint


@pytest.fixture(scope="module")
def cli() -> click.Group:
    @click.group()
    def main() -> None:
        """faceledger"""

    register(main)
    return main


@pytest.fixture
def where(tmp_path: Path, gallery_location: GalleryLocation) -> GalleryLocation:
    """Every test runs on SQLite (``cli.db``) and on PostgreSQL (with ``FACELEDGER_KEY_FILE``)."""
    if gallery_location.postgres:
        return gallery_location
    return GalleryLocation(str(tmp_path / "cli.db"), tmp_path / "cli.db.key")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, where: GalleryLocation) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.setenv("FACELEDGER_DB", where.location)
    if where.postgres:
        monkeypatch.setenv("FACELEDGER_KEY_FILE", str(where.key_file))
    else:
        monkeypatch.delenv("FACELEDGER_KEY_FILE", raising=False)
    monkeypatch.setenv("FACELEDGER_ACTOR", "tester")
    monkeypatch.delenv("FACELEDGER_PURPOSE", raising=False)


def run(cli: click.Group, *args: str) -> tuple[int, list[dict], str]:  # type: ignore[type-arg]
    result = CliRunner().invoke(cli, list(args))
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, result.stderr


def test_cli_end_to_end(cli: click.Group, faces_dir: Path, tmp_path: Path, where: GalleryLocation) -> None:
    amy = sorted((faces_dir / "face_api_js" / "examples" / "images" / "amy").glob("amy*.png"))
    code, out, _ = run(cli, "init", "--json")
    assert code == 0 and out[0]["audit_head"]["seq"] == 3  # init, its signing key, the first signed checkpoint
    assert where.key_file.stat().st_mode & 0o077 == 0
    assert signing_key_file(where.key_file).stat().st_mode & 0o077 == 0
    code, _, err = run(cli, "init")
    assert code == 1 and "already initialised" in err

    code, _, err = run(cli, "enroll", "amy", str(amy[0]), "--purpose", "access-control")
    assert code == 1 and "no consent" in err
    code, _, err = run(cli, "enroll", "amy", str(amy[0]))
    assert code == 2 and "--purpose" in err
    code, out, _ = run(
        cli,
        "consent",
        "add",
        "amy",
        "--collected-by",
        "desk",
        "--legal-basis",
        "explicit consent",
        "--evidence",
        "form-7",
        "--purpose",
        "access-control",
        "--json",
    )
    assert code == 0 and out[0]["state"] == "valid"
    consent_id = out[0]["id"]

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    code, out, err = run(
        cli,
        "enroll",
        "amy",
        str(amy[0]),
        str(amy[1]),
        str(broken),
        "--consent",
        consent_id,
        "--purpose",
        "access-control",
        "--json",
    )
    assert code == 1 and "broken.png" in err
    assert out[0]["enrolled"] == 2 and out[0]["rejected"] == 1

    code, out, err = run(
        cli, "identify", "--json", "--purpose", "access-control", str(amy[2]), str(tmp_path / "gone.jpg")
    )
    assert code == 1 and "gone.jpg" in err
    face = out[0]["faces"][0]
    assert set(face) >= {"box", "candidates"} and len(face["box"]) == 4
    assert face["candidates"][0]["subject"] == "amy" and isinstance(face["candidates"][0]["similarity"], float)
    assert out[1]["error"]
    candidate = face["candidates"][0]["candidate_id"]

    code, _, err = run(cli, "identify", "--purpose", "marketing", str(amy[2]))
    assert code == 2 and "not allowed" in err

    code, out, _ = run(cli, "review", "list", "--purpose", "access-control", "--json")
    assert code == 0 and [c["id"] for c in out] == [candidate]
    code, out, _ = run(cli, "review", "confirm", candidate, "--reason", "checked", "--actor", "rev-1", "--json")
    assert code == 0 and out[0]["status"] == "confirmed"

    code, out, _ = run(cli, "subjects", "--purpose", "audit", "--json")
    assert out == [
        {
            "id": "amy",
            "gallery": "staff",
            "templates": 2,
            "created_at": out[0]["created_at"],
            "consent": "valid",
        }
    ]
    code, out, _ = run(cli, "keys", "create", "door-service", "--role", "operator", "--json")
    assert code == 0 and out[0]["token"].startswith("flk_")
    code, out, _ = run(cli, "report", "--purpose", "transparency", "--json")
    assert code == 0 and out[0]["totals"]["searches"] == 1 and out[0]["totals"]["confirmed"] == 1

    code, out, _ = run(cli, "erase", "amy", "--purpose", "erasure request", "--json")
    assert code == 0 and out[0]["templates_destroyed"] == 2 and out[0]["reclaimed"]
    code, _, err = run(cli, "erase", "amy", "--purpose", "erasure request")
    assert code == 0  # consent records remain: erasing again ends nothing new but is recorded
    code, _, err = run(cli, "erase", "nobody", "--purpose", "erasure request")
    assert code == 1 and "nobody" in err
    code, out, _ = run(cli, "purge", "--json")
    assert code == 0 and "audit_entries_purged" in out[0]

    code, out, _ = run(cli, "audit", "head", "--json")
    head = out[0]
    code, out, _ = run(cli, "audit", "verify", "--json", "--expect", f"{head['seq']}:{head['hash']}")
    assert code == 0 and out[0]["ok"] and out[0]["entries"] == head["seq"]
    exported = tmp_path / "audit.jsonl"
    code, _, _ = run(cli, "audit", "export", "-o", str(exported), "--purpose", "audit")
    assert code == 0 and len(exported.read_text().splitlines()) == head["seq"] + 1

    # tamper with the ledger by hand: the first altered entry is named, exit code 1
    drop_append_only(where.location)
    where.sql("UPDATE audit SET body = replace(body, 'access-control', 'other') WHERE seq = 5")
    code, out, err = run(cli, "audit", "verify", "--json")
    assert code == 1 and out[0]["bad_seq"] == 5 and "entry 5" in err


def test_help_and_policy_commands(cli: click.Group, tmp_path: Path, where: GalleryLocation) -> None:
    for command in (
        "init",
        "enroll",
        "identify",
        "review",
        "audit",
        "report",
        "keys",
        "consent",
        "erase",
        "purge",
    ):
        code, _, _ = run(cli, command, "--help")
        assert code == 0, command
    result = CliRunner().invoke(cli, ["policy", "example"])
    policy = tmp_path / "p.toml"
    policy.write_text(result.stdout.replace('"discard"', '"keep"'))
    code, out, _ = run(cli, "policy", "check", str(policy), "--json")
    assert code == 1 and out[0]["problems"][0][0] == "unmatched_faces"
    code, _, err = run(cli, "init", "--policy", str(policy))
    assert code == 2 and "unmatched_faces" in err
    if where.postgres:
        assert where.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'") == []
    else:
        assert not Path(where.location).exists()
    assert not where.key_file.exists()


def test_a_folder_among_the_images_is_reported_and_the_rest_processed(cli: click.Group, tmp_path: Path) -> None:
    from faceledger.examples import ASTRONAUT

    folder = tmp_path / "folder"
    folder.mkdir()
    assert run(cli, "init")[0] == 0
    consent = (
        "consent",
        "add",
        "s1",
        "--collected-by",
        "desk",
        "--legal-basis",
        "explicit consent",
        "--evidence",
        "f",
        "--purpose",
        "access-control",
    )
    assert run(cli, *consent)[0] == 0
    code, out, err = run(cli, "enroll", "s1", str(folder), str(ASTRONAUT), "--purpose", "access-control", "--json")
    assert code == 1 and f"faceledger: {folder}: a folder: use --recursive" in err
    assert out[0]["image"] == str(folder) and out[0]["error"] and out[1]["enrolled"]
    code, out, err = run(cli, "identify", str(folder), str(ASTRONAUT), "--purpose", "access-control", "--json")
    assert code == 1 and f"faceledger: {folder}: a folder: use --recursive" in err
    assert out[0]["image"] == str(folder) and out[0]["faces"] == [] and out[0]["error"]
    assert out[1]["faces"][0]["candidates"][0]["subject"] == "s1"


def test_an_administrative_command_refuses_a_purpose_the_policy_does_not_allow(cli: click.Group) -> None:
    assert run(cli, "init")[0] == 0
    consent = ("--collected-by", "desk", "--legal-basis", "explicit consent", "--evidence", "form-9")
    assert run(cli, "consent", "add", "bob", *consent, "--purpose", "access-control")[0] == 0
    code, _, err = run(cli, "erase", "bob", "--purpose", "marketing")
    assert code == 2, "a purpose the policy refuses is a usage error"
    assert "purpose 'marketing' is not allowed to erase a subject" in err
    assert "erasure request" in err and "access-control" in err, "the message names what is allowed"
    code, out, _ = run(cli, "consent", "list", "bob", "--purpose", "consent administration", "--json")
    assert code == 0 and [c["state"] for c in out] == ["valid"], "the refused erasure changed nothing"
    code, _, err = run(cli, "purge", "--purpose", "marketing")
    assert code == 2 and "not allowed to apply retention" in err
    code, out, _ = run(cli, "erase", "bob", "--purpose", "erasure request", "--json")
    assert code == 0 and out[0]["subject"] == "bob" and out[0]["consents_ended"]


def test_audit_show_is_one_records_read_entry_naming_the_actor(cli: click.Group) -> None:
    assert run(cli, "init")[0] == 0
    code, out, _ = run(cli, "audit", "show", "--json")
    assert code == 0 and [e["action"] for e in out] == INIT_ACTIONS
    code, out, _ = run(cli, "audit", "show", "--json", "--after", "3")
    assert code == 0 and [e["action"] for e in out] == ["records.read"], "the first show was recorded, once"
    read = out[0]
    assert read["actor"] == "tester" and read["purpose"] == "audit"
    assert read["details"] == {"kind": "audit entries", "filters": {"after_seq": 0}, "count": 3}
    code, _, err = run(cli, "audit", "show", "--purpose", "marketing")
    assert code == 2 and "not allowed to read audit entries" in err
    code, _, err = run(cli, "audit", "show", "--actor", "")
    assert code == 2 and "--actor is required" in err


def test_a_bundled_recognizer_is_chosen_by_name_and_a_missing_file_is_named(cli: click.Group) -> None:
    from faceledger.examples import __file__ as examples

    photo = str(Path(examples).parent / "astronaut.jpg")
    assert run(cli, "init")[0] == 0
    search = ("identify", photo, "--purpose", "access-control", "--json")
    code, out, err = run(cli, *search, "--recognizer", "sface_2021dec")
    assert code == 0, err
    assert out[0]["threshold"] == pytest.approx(card_threshold("sface_2021dec"), abs=1e-6)  # its own calibration
    code, out, err = run(cli, *search)  # the default, int8
    assert code == 0 and out[0]["threshold"] == pytest.approx(card_threshold("sface_2021dec_int8"), abs=1e-6)
    assert card_threshold("sface_2021dec") != card_threshold("sface_2021dec_int8")
    code, _, err = run(cli, *search, "--recognizer", "missing.onnx")
    assert code == 1 and "missing.onnx: model file not found" in err and "sface_2021dec_int8" in err
