"""Keys: the master key that wraps every subject's data key, the data keys that encrypt templates and reference
faces, the keys of each candidate's evidence, rotation.

A template is readable only with its subject's data key, and a data key only with the master key; destroying a
subject's wrapped data key (erasure) makes its templates and reference faces unreadable wherever a copy of them
survives. A candidate's evidence has a key of its own, wrapped by the master key, deleted with the evidence.
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
from faceledger.ledger.records import EvidenceRecord, ReferenceFace, SubjectKey, TemplateRecord
from faceledger.ledger.seals import SealedTransaction, seal_key
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
    record, key = new_data_key(ctx, tx, subject, now)
    tx.add_subject_key(record)
    ctx.data_keys[subject] = key
    return record.id, key


def new_data_key(ctx: GalleryContext, tx: Transaction, subject: str, now: str) -> tuple[SubjectKey, bytes]:
    """A fresh data key for a new subject: ``(its record, wrapped by the master key; the key)``. Not stored: the
    caller passes the record to ``tx.add_subject_key``, or many of them to ``tx.add_subjects``."""
    key, key_id = crypto.new_data_key(), uuid.uuid4().hex
    master = master_key(ctx, tx)
    return SubjectKey(key_id, subject, master.wrap(key, subject_id=subject, key_id=key_id), master.id, now), key


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


def encrypt_reference_face(key: bytes, jpeg: bytes, *, subject: str, template_id: str) -> tuple[bytes, bytes]:
    """``(nonce, ciphertext)`` of a reference face (JPEG bytes), bound to its subject and template."""
    return crypto.encrypt_reference_face(key, jpeg, subject_id=subject, template_id=template_id)


def decrypt_reference_face(ctx: GalleryContext, tx: Transaction, face: ReferenceFace) -> bytes:
    """The JPEG bytes of a stored reference face."""
    return crypto.decrypt_reference_face(
        data_key(ctx, tx, face.subject_id), face.nonce, face.image, subject_id=face.subject_id,
        template_id=face.template_id,
    )  # fmt: skip


def seal_evidence(
    ctx: GalleryContext, tx: Transaction, candidate_id: str, face: bytes, context: bytes, *, quality: float, now: str
) -> EvidenceRecord:
    """The evidence record of a candidate: its two JPEGs encrypted with a fresh key that the master key wraps."""
    master = master_key(ctx, tx)
    key, key_id = crypto.new_data_key(), uuid.uuid4().hex
    face_nonce, face_ct = crypto.encrypt_evidence(key, face, candidate_id=candidate_id, key_id=key_id, part="face")
    context_nonce, context_ct = crypto.encrypt_evidence(
        key, context, candidate_id=candidate_id, key_id=key_id, part="context"
    )
    wrapped = master.wrap_evidence_key(key, candidate_id=candidate_id, key_id=key_id)
    return EvidenceRecord(
        candidate_id, key_id, wrapped, master.id, face_nonce, face_ct, context_nonce, context_ct, quality, now
    )


def open_evidence(ctx: GalleryContext, tx: Transaction, record: EvidenceRecord) -> tuple[bytes, bytes]:
    """``(face, context)`` JPEG bytes of a stored evidence record."""
    cid, kid = record.candidate_id, record.key_id
    key = master_key(ctx, tx).unwrap_evidence_key(record.wrapped_key, candidate_id=cid, key_id=kid)
    return (
        crypto.decrypt_evidence(key, record.face_nonce, record.face, candidate_id=cid, key_id=kid, part="face"),
        crypto.decrypt_evidence(
            key, record.context_nonce, record.context, candidate_id=cid, key_id=kid, part="context"
        ),
    )


def forget(ctx: GalleryContext, subject: str) -> None:
    """Drop a subject's cached data key (after its erasure)."""
    ctx.data_keys.pop(subject, None)


def rotate_master_key(ctx: GalleryContext, *, actor: str, purpose: str = "key rotation") -> dict[str, Any]:
    """Re-wrap every subject data key and evidence key with a new master key written to the key file (an audit
    entry).

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
            evidence_keys = tx.list_evidence_keys()
            for ek in evidence_keys:
                plain = old.unwrap_evidence_key(ek.wrapped_key, candidate_id=ek.candidate_id, key_id=ek.key_id)
                wrapped = new.wrap_evidence_key(plain, candidate_id=ek.candidate_id, key_id=ek.key_id)
                tx.rewrap_evidence_key(ek.candidate_id, wrapped, new.id)
            assert isinstance(tx, SealedTransaction)
            resealed = tx.reseal_all(seal_key(new.key))  # seals are keyed by the master key too
            tx.set_meta("master_key_id", new.id)
            entry = ctx.record(
                tx,
                AuditAction.KEY_ROTATE,
                actor=actor,
                purpose=purpose,
                at=now,
                details={
                    "old_master_key_id": old.id,
                    "new_master_key_id": new.id,
                    "subject_keys": len(keys),
                    "evidence_keys": len(evidence_keys),
                    "seals": resealed,
                },
            )
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, ctx.key_file)
    ctx.master = crypto.MasterKey(new.key, str(ctx.key_file))
    reclaimed = ctx.reclaim()
    return {
        "old_master_key_id": old.id,
        "new_master_key_id": new.id,
        "subject_keys": len(keys),
        "evidence_keys": len(evidence_keys),
        "key_file": str(ctx.key_file),
        "audit_seq": entry.seq,
        "reclaimed": reclaimed,
    }
