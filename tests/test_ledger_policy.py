"""Policy files: validation with errors naming the field, the hash, refusing to keep unmatched faces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faceledger.ledger import EXAMPLE_POLICY, PolicyError, load_policy, parse_policy


def test_example_policy_is_valid_and_hashed_by_its_text(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(EXAMPLE_POLICY, encoding="utf-8")
    loaded = load_policy(path)
    assert loaded.hash == hashlib.sha256(path.read_bytes()).hexdigest()
    policy = loaded.policy
    assert policy.identification.target_fmr == pytest.approx(1e-3)
    assert policy.identification.reviewers_required == 1
    assert policy.unmatched_faces == "discard"
    assert policy.gallery(None).name == "staff"
    assert "access-control" in policy.gallery("staff").purposes


def test_keeping_unmatched_faces_is_refused() -> None:
    text = EXAMPLE_POLICY.replace('unmatched_faces = "discard"', 'unmatched_faces = "keep"')
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.toml")
    assert any(field == "unmatched_faces" for field, _ in info.value.problems)
    assert "unmatched_faces" in str(info.value) and "discard" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("target_fmr = 1e-3", "target_fmr = 0.5", "identification.target_fmr"),
        ("target_fmr = 1e-3", "target_fmr = -1", "identification.target_fmr"),
        ("reviewers_required = 1", "reviewers_required = 0", "identification.reviewers_required"),
        ('purposes = ["access-control"]', "purposes = []", "galleries[staff].purposes"),
        ('name = "staff"', 'name = "staff"\ncolour = "blue"', "galleries[staff].colour"),
        ("consents_days = 1095", "consents_days = -3", "retention.consents_days"),
        ('legal_basis = "explicit consent"', "", "deployment.legal_basis"),
    ],
)
def test_errors_name_the_field(old: str, new: str, field: str) -> None:
    assert old in EXAMPLE_POLICY
    with pytest.raises(PolicyError) as info:
        parse_policy(EXAMPLE_POLICY.replace(old, new), "policy.toml")
    fields = [f for f, _ in info.value.problems]
    assert field in fields, fields
    assert str(info.value).startswith("policy.toml: invalid policy")


def test_duplicate_gallery_names_and_bad_toml_and_missing_file(tmp_path: Path) -> None:
    doubled = EXAMPLE_POLICY + '\n[[galleries]]\nname = "staff"\npurposes = ["x"]\n'
    with pytest.raises(PolicyError, match="repeated: staff"):
        parse_policy(doubled)
    with pytest.raises(PolicyError, match="toml"):
        parse_policy("this is = = not toml")
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.toml")


def test_gallery_lookup_names_the_choices() -> None:
    text = EXAMPLE_POLICY + '\n[[galleries]]\nname = "visitors"\npurposes = ["access-control"]\n'
    policy = parse_policy(text).policy
    with pytest.raises(KeyError, match="staff, visitors"):
        policy.gallery(None)
    with pytest.raises(KeyError, match="no gallery 'nope'"):
        policy.gallery("nope")


def test_administrative_purposes_default_and_scope() -> None:
    text = EXAMPLE_POLICY + '\n[[galleries]]\nname = "visitors"\npurposes = ["visitor-log", "access-control"]\n'
    policy = parse_policy(text).policy
    assert "erasure request" in policy.administration.purposes and "retention" in policy.administration.purposes
    assert policy.administrative_purposes("staff")[-1] == "access-control"
    assert "visitor-log" not in policy.administrative_purposes("staff")
    unscoped = policy.administrative_purposes(None)
    assert unscoped[-2:] == ["access-control", "visitor-log"], "every gallery's, each once"
    assert policy.administrative_purposes("nope") == policy.administration.purposes


def test_administration_purposes_are_checked() -> None:
    def with_admin(purposes: str) -> str:
        return EXAMPLE_POLICY.replace(
            "\n[[galleries]]", f"\n[administration]\npurposes = {purposes}\n\n[[galleries]]", 1
        )

    assert parse_policy(with_admin('["retention", "dpo"]')).policy.administration.purposes == ["retention", "dpo"]
    for purposes, message in (
        ('["dpo"]', "must include 'retention'"),
        ('["retention", "retention"]', "listed twice"),
        ('["retention", " "]', "non-empty"),
    ):
        with pytest.raises(PolicyError, match=message) as info:
            parse_policy(with_admin(purposes))
        assert [f for f, _ in info.value.problems] == ["administration.purposes"]


def test_a_target_fmr_the_calibration_cannot_measure_is_refused(tmp_path: Path) -> None:
    from faceledger.gallery import Gallery
    from faceledger.ledger import EXAMPLE_POLICY, PolicyError

    strict = tmp_path / "strict.toml"
    strict.write_text(EXAMPLE_POLICY.replace("target_fmr = 1e-3", "target_fmr = 1e-6"), encoding="utf-8")
    assert strict.read_text() != EXAMPLE_POLICY
    with Gallery.init(tmp_path / "g.db", actor="setup") as g:
        with pytest.raises(PolicyError, match=r"target_fmr: a false-match rate of 1e-06 is below what this"):
            g.set_policy(strict, actor="setup")
        assert g.policy.policy.identification.target_fmr == 0.001  # nothing changed
    # A gallery created with such a policy says so at its first search, naming the policy, not a model failure.
    with Gallery.init(tmp_path / "h.db", actor="setup", policy=strict) as g, pytest.raises(PolicyError):
        g.threshold()
