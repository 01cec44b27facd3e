"""The web UI in a real Chromium against a real `faceledger serve`, as its users see it: two reviewers confirm a
match after looking at both faces, a rejection destroys the evidence, a forged form is refused, a role that may not
review is turned away, an enroller erases a subject and sees the receipt, new candidates appear without a reload,
and the ledger page shows where a tampered chain breaks. Screenshots go to ``$FACELEDGER_SCREENSHOTS``."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

import browser
from browser import Browser, LiveServer, require_chromium, serve_gallery
from faceledger.gallery import Gallery
from faceledger.ledger import EXAMPLE_POLICY
from test_api_helpers import group_photo, people

pytest_plugins = ["browser"]
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
PURPOSE = "access-control"
USERS = {"bob": "reviewer", "dana": "reviewer", "erin": "enroller", "carol": "auditor"}


def _prepare(faces_dir: Path) -> object:
    photos = people(faces_dir)

    def prepare(db: Path) -> None:
        policy = db.with_name("two-reviewers.toml")
        two = EXAMPLE_POLICY.replace("reviewers_required = 1 ", "reviewers_required = 2 ")
        assert two != EXAMPLE_POLICY
        policy.write_text(two, encoding="utf-8")
        with Gallery.open(db) as g:
            g.set_policy(policy, actor="setup")
            for name, role in USERS.items():
                g.add_user(name, role=role, password=PASSWORD, actor="setup")
            for name in ("amy", "raj", "penny"):
                g.add_consent(f"emp-{name}", actor="erin", collected_by="front desk", legal_basis="explicit consent",
                              purpose=PURPOSE, evidence_ref=f"forms/{name}.pdf")  # fmt: skip
                g.enroll(f"emp-{name}", photos[name][:2], actor="erin", purpose=PURPOSE)
            g.identify(group_photo(faces_dir), actor="door-1", purpose=PURPOSE)

    return prepare


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[LiveServer]:
    require_chromium()
    with serve_gallery(tmp_path_factory.mktemp("ui"), prepare=_prepare(faces_dir)) as live:  # type: ignore[arg-type]
        yield live


def _pending(server: LiveServer, subject: str) -> str:
    with Gallery.open(server.db) as g:
        found = [c for c in g.candidates(status="pending") if c.subject_id == subject]
    assert found, f"no pending candidate for {subject}"
    return found[-1].id


def sign_in(page: Page, server: LiveServer, name: str, path: str = "/ui") -> None:
    page.goto(server.url(path))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("header .who")).to_contain_text(name)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def _images_loaded(page: Page, card: str) -> list[int]:
    widths: list[int] = page.eval_on_selector_all(f"{card} img", "imgs => imgs.map(i => i.naturalWidth)")
    return widths


def test_two_reviewers_confirm_a_match_after_seeing_both_faces(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    candidate = _pending(server, "emp-amy")
    card = f"#card-{candidate}"
    sign_in(page, server, "bob")
    expect(page).to_have_url(server.url("/ui/review"))
    expect(page.locator(card)).to_contain_text("emp-amy")
    expect(page.locator(card)).to_contain_text("0 of 2")
    widths = _images_loaded(page, card)
    assert len(widths) >= 4 and 0 not in widths  # found face, its context, two enrolled faces
    expect(page.locator(card)).to_contain_text("pairs of different people")
    chromium.screenshot("queue-bob")
    page.locator(card).get_by_label("What did you compare?").fill("eyes, nose and hairline match both photos")
    page.locator(card).get_by_role("button", name="Confirm match").click()
    expect(page.locator(card)).to_contain_text("1 of 2; another reviewer must confirm")
    page.reload()  # bob cannot confirm twice: the card says so and offers no form
    expect(page.locator(card)).to_contain_text("each reviewer decides once")
    expect(page.locator(card).get_by_role("button", name="Confirm match")).to_have_count(0)
    chromium.screenshot("queue-bob-after")
    sign_out(page)

    sign_in(page, server, "dana")
    expect(page.locator(card)).to_contain_text("1 of 2")
    expect(page.locator(card)).to_contain_text("confirmed by bob")
    page.locator(card).get_by_label("What did you compare?").fill("same person: eyes, brows, smile")
    page.locator(card).get_by_role("button", name="Confirm match").click()
    expect(page.locator(card)).to_contain_text("Confirmed: the match counts now.")
    chromium.screenshot("confirmed-dana")
    with Gallery.open(server.db) as g:
        (record,) = [c for c in g.candidates(subject="emp-amy") if c.id == candidate]
        assert record.status == "confirmed"
        assert sorted(r.reviewer for r in g.reviews(candidate)) == ["bob", "dana"]
        views = [e.data for e in g.audit_entries(action="evidence.view")]
        assert {"bob", "dana"} <= {v["actor"] for v in views if candidate in str(v["details"])}
    assert chromium.left_loopback() == [] and chromium.errors == []


def _blobs(db: Path, candidate: str) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT face, context FROM evidence WHERE candidate_id = ?", (candidate,)).fetchone()
    return [] if row is None else [bytes(row[0]), bytes(row[1])]


def test_a_rejection_destroys_the_evidence(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    candidate = _pending(server, "emp-raj")
    blobs = _blobs(server.db, candidate)
    assert len(blobs) == 2 and all(len(b) > 1000 for b in blobs)
    sign_in(page, server, "bob", f"/ui/review/{candidate}")
    card = page.locator(f"#card-{candidate}")
    card.get_by_label("What did you compare?").fill("ears and jaw differ from the enrolled photos")
    card.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("Rejected: the candidate's evidence was destroyed.")).to_be_visible()
    chromium.screenshot("rejected")
    page.goto(server.url(f"/ui/review/{candidate}"))
    expect(page.locator(f"#card-{candidate}")).to_contain_text("no evidence kept")
    expect(page.locator(f"#card-{candidate}")).to_contain_text("rejected")
    assert _blobs(server.db, candidate) == []
    files = [server.db, server.db.with_name(server.db.name + "-wal")]
    data = b"".join(f.read_bytes() for f in files if f.exists())
    assert not any(blob[:64] in data for blob in blobs)  # no byte sequence of the ciphertexts is left


def test_a_forged_form_is_refused(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    candidate = _pending(server, "emp-penny")
    sign_in(page, server, "dana", f"/ui/review/{candidate}")
    card = page.locator(f"#card-{candidate}")
    page.eval_on_selector(f"#card-{candidate} input[name=csrf]", "i => { i.value = 'forged-by-another-site' }")
    page.eval_on_selector("body", "b => b.removeAttribute('hx-headers')")
    card.get_by_label("What did you compare?").fill("this should not be recorded")
    card.get_by_role("button", name="Confirm match").click()
    expect(page.get_by_text("the CSRF check failed")).to_be_visible()
    chromium.screenshot("csrf-refused")
    with Gallery.open(server.db) as g:
        assert g.reviews(candidate) == []


def test_a_role_that_may_not_review_is_turned_away(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    sign_in(page, server, "carol")
    expect(page.locator("header nav")).not_to_contain_text("Review")
    page.goto(server.url("/ui/review"))
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text("Your role (auditor) may not open the review queue")).to_be_visible()
    chromium.screenshot("auditor-refused")


def test_new_candidates_appear_without_a_reload(chromium: Browser, server: LiveServer, faces_dir: Path) -> None:
    page = chromium.page
    sign_in(page, server, "bob")
    before = page.locator("article.candidate").count()
    with Gallery.open(server.db) as g:
        found = g.identify(people(faces_dir)["amy"][3], actor="door-2", purpose=PURPOSE)
    (match,) = [m for f in found.faces for m in f.candidates if m.subject == "emp-amy"]
    started = time.monotonic()
    expect(page.locator(f"#card-{match.candidate_id}")).to_be_visible(timeout=15_000)
    assert page.locator("article.candidate").count() == before + 1
    assert time.monotonic() - started < 12
    chromium.screenshot("new-candidate")


def test_an_enroller_erases_a_subject_and_sees_the_receipt(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    sign_in(page, server, "erin")
    page.get_by_role("link", name="emp-penny").click()
    expect(page.get_by_role("heading", name="Enrolled faces")).to_be_visible()
    assert 0 not in _images_loaded(page, "section.card")
    page.get_by_label("Type emp-penny to confirm").fill("emp-penny")
    page.get_by_role("button", name="Erase emp-penny").click()
    expect(page.get_by_role("heading", name="Erasure receipt")).to_be_visible()
    expect(page.locator(".receipt")).to_contain_text("2 template(s)")
    chromium.screenshot("erasure-receipt")
    with Gallery.open(server.db) as g:
        assert all(s.id != "emp-penny" for s in g.subjects(actor="test", purpose="audit"))
        assert not [c for c in g.candidates() if c.subject_id == "emp-penny"]
    with sqlite3.connect(server.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reference_faces WHERE subject_id = 'emp-penny'").fetchone()[0] == 0


def test_the_ledger_page_shows_where_a_tampered_chain_breaks(chromium: Browser, server: LiveServer) -> None:
    page = chromium.page
    sign_in(page, server, "carol", "/ui/ledger")
    expect(page.get_by_role("heading", name="✔ The chain verifies")).to_be_visible()
    page.get_by_label("Action").select_option("identify")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.ledger tr[id^=entry-]")
    expect(rows.first).to_contain_text("identify")
    assert all("identify" in t for t in rows.all_inner_texts())
    # A database administrator rewrites who ran the first search, bypassing faceledger.
    with sqlite3.connect(server.db) as conn:
        seq = conn.execute("SELECT MIN(seq) FROM audit WHERE action = 'identify'").fetchone()[0]
        conn.execute("DROP TRIGGER audit_append_only")
        conn.execute("UPDATE audit SET body = replace(body, '\"door-1\"', '\"nobody\"') WHERE seq = ?", (seq,))
    page.goto(server.url("/ui/ledger"))
    expect(page.get_by_role("heading", name=f"✘ The chain is broken at entry #{seq}")).to_be_visible()
    expect(page.locator(f"#entry-{seq}")).to_have_class("bad")
    chromium.screenshot("ledger-tampered")


README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Web UI: two reviewers confirm a match")
    section = text[start : text.index("\n## ", start + 1)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_readme_web_ui_walkthrough_works_as_written(
    chromium: Browser, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """As written on SQLite; on PostgreSQL the same commands without ``--db ui.db``, the database and the master key
    file set once in the environment, as the README's "On several hosts" says."""
    setup, serve = _readme_blocks()
    port = browser._free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FACELEDGER_THREADS": "1"}
    for name in ("FACELEDGER_DB", "FACELEDGER_KEY_FILE", "FACELEDGER_MASTER_KEY", "FACELEDGER_ACTOR"):
        env.pop(name, None)
    db, key_file = str(tmp_path / "ui.db"), tmp_path / "ui.db.key"
    if backend == "postgresql":
        assert setup.count(" --db ui.db") == 7 and serve.count(" --db ui.db") == 1
        db, key_file = request.getfixturevalue("postgres_url"), tmp_path / "ui.key"
        setup, serve = setup.replace(" --db ui.db", ""), serve.replace(" --db ui.db", "")
        env.update(FACELEDGER_DB=db, FACELEDGER_KEY_FILE=str(key_file))
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + setup], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    command = shlex.split(serve.strip().replace("8000", str(port)))  # as written, on a free port
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        page = chromium.page
        for reviewer, expected in (("bob", "1 of 2; another reviewer must confirm"), ("dana", "Confirmed")):
            password = re.search(rf"echo '([^']+)' \| faceledger users add {reviewer} ", setup)
            assert password
            page.goto(base + "/ui")
            page.get_by_label("Name").fill(reviewer)
            page.get_by_label("Password").fill(password.group(1))
            page.get_by_role("button", name="Sign in", exact=True).click()
            card = page.locator("article.candidate").first
            expect(card).to_contain_text("emp-001")
            assert 0 not in _images_loaded(page, "article.candidate")
            chromium.screenshot(f"readme-{reviewer}")
            card.get_by_label("What did you compare?").fill("eyes, nose and mouth agree with the enrolled photo")
            card.get_by_role("button", name="Confirm match").click()
            expect(page.locator("article.candidate").first).to_contain_text(expected)
            sign_out(page)
        assert chromium.left_loopback() == []
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Gallery.open(db, key_file=key_file) as g:
        (candidate,) = g.candidates()
        assert candidate.status == "confirmed" and candidate.subject_id == "emp-001"
