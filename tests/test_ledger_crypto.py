"""Master key handling and template encryption."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from faceledger.ledger import MASTER_KEY_ENV, MasterKeyError, create_key_file, load_master_key
from faceledger.ledger.crypto import decrypt_template, encode_key, encrypt_template, new_data_key


def test_key_file_is_private_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    path = tmp_path / "db.key"
    key = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(path).key == key.key
    assert key.id == load_master_key(path).id and len(key.id) == 16
    assert key.key.hex() not in repr(key)
    with pytest.raises(MasterKeyError, match="already exists"):
        create_key_file(path)


def test_readable_key_file_and_missing_key_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    path = tmp_path / "db.key"
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(path)
    with pytest.raises(MasterKeyError, match="not found"):
        load_master_key(tmp_path / "other.key")


def test_environment_key_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.key"
    file_key = create_key_file(path)
    env_key = os.urandom(32)
    monkeypatch.setenv(MASTER_KEY_ENV, encode_key(env_key))
    loaded = load_master_key(path)
    assert loaded.key == env_key != file_key.key
    monkeypatch.setenv(MASTER_KEY_ENV, "bm90IGEga2V5")
    with pytest.raises(MasterKeyError, match=MASTER_KEY_ENV):
        load_master_key(path)


def test_wrapped_keys_and_templates_are_bound_to_their_subject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    master = create_key_file(tmp_path / "a.key")
    other = create_key_file(tmp_path / "b.key")
    data_key = new_data_key()
    wrapped = master.wrap(data_key, subject_id="alice", key_id="k1")
    assert data_key not in wrapped
    assert master.unwrap(wrapped, subject_id="alice", key_id="k1") == data_key
    with pytest.raises(MasterKeyError):
        master.unwrap(wrapped, subject_id="bob", key_id="k1")
    with pytest.raises(MasterKeyError, match="wrong master key"):
        other.unwrap(wrapped, subject_id="alice", key_id="k1")

    plaintext = os.urandom(512)
    nonce, ciphertext = encrypt_template(data_key, plaintext, subject_id="alice", template_id="t1")
    assert plaintext not in ciphertext
    assert decrypt_template(data_key, nonce, ciphertext, subject_id="alice", template_id="t1") == plaintext
    with pytest.raises(MasterKeyError, match="altered or moved"):
        decrypt_template(data_key, nonce, ciphertext, subject_id="bob", template_id="t1")
    with pytest.raises(MasterKeyError):
        decrypt_template(data_key, nonce, ciphertext, subject_id="alice", template_id="t2")
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(MasterKeyError):
        decrypt_template(data_key, nonce, tampered, subject_id="alice", template_id="t1")
