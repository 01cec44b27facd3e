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
