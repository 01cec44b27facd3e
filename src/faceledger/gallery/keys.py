"""Keys: the master key that wraps every subject's data key, the data keys that encrypt templates, rotation.

A template is readable only with its subject's data key, and a data key only with the master key; destroying a
subject's wrapped data key (erasure) makes its templates unreadable wherever a copy of them survives.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.gallery.context import GalleryContext, accountable
from faceledger.ledger import crypto
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import MasterKeyError, StoreError
from faceledger.ledger.records import SubjectKey, TemplateRecord
from faceledger.ledger.store import Transaction
from faceledger.ledger.timeutil import to_text


def pending_key_file(key_file: Path) -> Path:
    """Where a rotation writes the new key before it replaces the old one."""
    return key_file.with_name(key_file.name + ".new")


def master_key(ctx: GalleryContext, tx: Transaction) -> crypto.MasterKey:
    """The master key (loaded once), checked against the id the database was created with.

    Completes a rotation that committed but was interrupted before the new key file replaced the old one.
    """
    if ctx.master is None:
        master = crypto.load_master_key(ctx.key_file)
        expected = tx.get_meta("master_key_id")
        pending = None if ctx.key_file is None else pending_key_file(ctx.key_file)
        if (
            expected != master.id
            and pending is not None
            and pending.exists()
            and master.source != crypto.MASTER_KEY_ENV
        ):
            candidate = crypto.load_master_key(pending)
            if candidate.id == expected:
                assert ctx.key_file is not None
                os.replace(pending, ctx.key_file)
                master = crypto.MasterKey(candidate.key, str(ctx.key_file))
        if expected != master.id:
            raise MasterKeyError(
                f"{master.source}: master key {master.id} is not the one this database was created with "
                f"({expected}); give the right key file or {crypto.MASTER_KEY_ENV}"
            )
        ctx.master = master
    return ctx.master


def data_key(ctx: GalleryContext, tx: Transaction, subject: str) -> bytes:
    """A subject's data key, unwrapped with the master key (cached while the subject exists)."""
    key = ctx.data_keys.get(subject)
    if key is None:
        record = tx.get_subject_key(subject)
        if record is None:
            raise StoreError(f"subject {subject!r} has templates but no data key: the database is damaged")
        key = master_key(ctx, tx).unwrap(record.wrapped, subject_id=subject, key_id=record.id)
        ctx.data_keys[subject] = key
    return key


def ensure_data_key(ctx: GalleryContext, tx: Transaction, subject: str, now: str) -> tuple[str, bytes]:
    """``(key id, data key)`` of a subject, creating and storing a wrapped key for a new subject."""
    record = tx.get_subject_key(subject)
    if record is not None:
        return record.id, data_key(ctx, tx, subject)
    key = crypto.new_data_key()
    key_id = uuid.uuid4().hex
    master = master_key(ctx, tx)
    tx.add_subject_key(SubjectKey(key_id, subject, master.wrap(key, subject_id=subject, key_id=key_id), master.id, now))
    ctx.data_keys[subject] = key
    return key_id, key


def encrypt_template(key: bytes, vector: np.ndarray, *, subject: str, template_id: str) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext)`` of a template (float32, little-endian), bound to its subject and id."""
    plain = np.asarray(vector, dtype="<f4").tobytes()
    return crypto.encrypt_template(key, plain, subject_id=subject, template_id=template_id)


def decrypt_template(ctx: GalleryContext, tx: Transaction, record: TemplateRecord) -> np.ndarray:
    """The embedding a template record holds."""
    plain = crypto.decrypt_template(
        data_key(ctx, tx, record.subject_id),
        record.nonce,
        record.ciphertext,
        subject_id=record.subject_id,
        template_id=record.id,
    )
    return np.frombuffer(plain, dtype="<f4").astype(np.float32).reshape(record.dim)


def forget(ctx: GalleryContext, subject: str) -> None:
    """Drop a subject's cached data key (after its erasure)."""
    ctx.data_keys.pop(subject, None)


def rotate_master_key(ctx: GalleryContext, *, actor: str, purpose: str = "key rotation") -> dict[str, Any]:
    """Re-wrap every subject data key with a new master key written to the key file (an audit entry).

    Afterwards only the new key opens this database; backups taken before need the old key. Only key files can
    be rotated (not ``FACELEDGER_MASTER_KEY``).
    """
    actor, purpose = accountable(actor, purpose)
    if os.environ.get(crypto.MASTER_KEY_ENV):
        raise MasterKeyError(
            f"the master key comes from {crypto.MASTER_KEY_ENV}; rotation writes a key file, so unset it and "
            "give the key file"
        )
    if ctx.key_file is None:
        raise MasterKeyError("no key file to rotate; open the gallery with key_file=...")
    with ctx.store.read() as tx:
        old = master_key(ctx, tx)
    pending = pending_key_file(ctx.key_file)
    if pending.exists():
        raise MasterKeyError(f"{pending} exists: an earlier rotation did not finish; move it away first")
    new = crypto.create_key_file(pending)
    now = to_text(ctx.now())
    try:
        with ctx.write() as tx:
            if tx.get_meta("master_key_id") != old.id:
                raise MasterKeyError("the master key changed while rotating; retry")
            keys = tx.list_subject_keys()
            for key in keys:
                plain = old.unwrap(key.wrapped, subject_id=key.subject_id, key_id=key.id)
                tx.rewrap_subject_key(key.id, new.wrap(plain, subject_id=key.subject_id, key_id=key.id), new.id)
            tx.set_meta("master_key_id", new.id)
            entry = ctx.record(
                tx,
                AuditAction.KEY_ROTATE,
                actor=actor,
                purpose=purpose,
                at=now,
                details={"old_master_key_id": old.id, "new_master_key_id": new.id, "subject_keys": len(keys)},
            )
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, ctx.key_file)
    ctx.master = crypto.MasterKey(new.key, str(ctx.key_file))
    reclaimed = ctx.store.reclaim()
    return {
        "old_master_key_id": old.id,
        "new_master_key_id": new.id,
        "subject_keys": len(keys),
        "key_file": str(ctx.key_file),
        "audit_seq": entry.seq,
        "reclaimed": reclaimed,
    }
