"""Signed heads: the ledger's head (seq, hash, time) signed with an Ed25519 key kept outside the database.

The hash chain shows that entries were not changed one by one, but whoever can write the database can rebuild the
whole chain. A signature by a key the database does not hold closes that gap, as Certificate Transparency's signed
tree heads do: a head signed at some moment commits the ledger up to that entry, and any later rewrite of it no
longer matches the signature. Signed checkpoints are entries of the chain itself (``audit.checkpoint``: the seq,
hash and time of the entry before it, and the signature), so removing one breaks the chain; a head can also be
published (``faceledger audit head --signed``), and anyone with the public key checks a copy of the database against
it.

* The **signing key** (an Ed25519 private key, 32 bytes) lives in a file beside the master key file
  (``<db>.signing.key``, mode 0600, created by ``init`` or on first use) or in ``FACELEDGER_SIGNING_KEY`` (base64).
  Its public key is recorded on the ledger (a ``ledger.signing_key`` entry); a check that an administrator cannot
  fake uses the key file or a public key obtained elsewhere (``--public-key``).
* What is signed is the canonical JSON of ``{"kind": "faceledger/head/v1", "seq", "hash", "ts"}``; a retention
  checkpoint (an ``audit.purge`` entry) signs ``{"kind": "faceledger/purge/v1", "purged_to_seq", "last_hash",
  "ts"}``, so old entries can be deleted only by someone holding the key, and names the public key again (the
  entry that first recorded it may be among those deleted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from faceledger.ledger.actions import AuditAction
from faceledger.ledger.audit import canonical_json
from faceledger.ledger.crypto import read_secret_file, write_secret_file
from faceledger.ledger.errors import MasterKeyError

SIGNING_KEY_ENV = "FACELEDGER_SIGNING_KEY"
HEAD_KIND = "faceledger/head/v1"
PURGE_KIND = "faceledger/purge/v1"


def signing_key_file(master_key_file: str | os.PathLike[str]) -> Path:
    """Where the signing key lives: beside the master key file (``walk.db.key`` → ``walk.db.signing.key``)."""
    path = Path(master_key_file)
    stem = path.name[: -len(".key")] if path.name.endswith(".key") else path.name
    return path.with_name(stem + ".signing.key")


def key_id(public: bytes) -> str:
    """A 16-hex-digit identifier of a public key."""
    return hashlib.sha256(b"faceledger/signing-key-id/v1|" + public).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class SigningKey:
    """The ledger's signing key; ``id`` names its public key."""

    private: Ed25519PrivateKey
    source: str

    def __repr__(self) -> str:
        return f"SigningKey(id={self.id!r}, source={self.source!r})"

    @property
    def public(self) -> bytes:
        """The raw 32-byte public key."""
        return _raw_public(self.private.public_key())

    @property
    def public_b64(self) -> str:
        """The public key in base64, as published."""
        return _b64(self.public)

    @property
    def id(self) -> str:
        """The public key's identifier."""
        return key_id(self.public)

    def sign(self, statement: dict[str, Any]) -> str:
        """The base64 signature of a statement's canonical JSON."""
        return _b64(self.private.sign(canonical_json(statement).encode("utf-8")))


def verify_statement(statement: dict[str, Any], signature: str, public: bytes) -> bool:
    """Whether ``signature`` is ``public``'s signature of the statement."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            _unb64(signature, "signature"), canonical_json(statement).encode("utf-8")
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def create_signing_key_file(path: str | os.PathLike[str]) -> SigningKey:
    """A new signing key in ``path`` (mode 0600); refuses to overwrite a file."""
    path = Path(path)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    write_secret_file(
        path, _b64(raw), exists="a signing key file already exists; it is loaded automatically",
        what="signing key file",
    )  # fmt: skip
    return SigningKey(private, str(path))


def _from_text(text: str, source: str) -> SigningKey:
    try:
        raw = _unb64(text, source)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise MasterKeyError(f"{source}: not a base64 encoded 32-byte Ed25519 private key")
    return SigningKey(Ed25519PrivateKey.from_private_bytes(raw), source)


def load_signing_key(path: str | os.PathLike[str] | None, *, create: bool = False) -> SigningKey | None:
    """The signing key from ``FACELEDGER_SIGNING_KEY``, else from ``path`` (created when ``create`` and missing);
    None when there is none. A key file other users can read is refused."""
    env = os.environ.get(SIGNING_KEY_ENV)
    if env:
        return _from_text(env, SIGNING_KEY_ENV)
    if path is None:
        return None
    path = Path(path)
    text = read_secret_file(path, "signing key file")
    if text is None:
        return create_signing_key_file(path) if create else None
    return _from_text(text, str(path))


def public_key_from_text(text: str) -> bytes:
    """A public key given in base64 (as ``audit head --signed`` prints it); ValueError otherwise."""
    raw = _unb64(text, "public key")
    if len(raw) != 32:
        raise ValueError("public key must be 32 bytes (base64 of an Ed25519 public key)")
    return raw


@dataclass(frozen=True)
class SignedHead:
    """A head of the ledger and its signature: what is stored as a checkpoint and what is published."""

    seq: int
    hash: str
    ts: str
    key_id: str
    public_key: str
    signature: str

    def statement(self) -> dict[str, Any]:
        """What the signature covers."""
        return {"kind": HEAD_KIND, "seq": self.seq, "hash": self.hash, "ts": self.ts}

    def valid(self, public: bytes | None = None) -> bool:
        """Whether the signature holds under ``public`` (default: the public key the head carries)."""
        key = public if public is not None else public_key_from_text(self.public_key)
        return key_id(key) == self.key_id and verify_statement(self.statement(), self.signature, key)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as published."""
        return {
            "kind": HEAD_KIND, "seq": self.seq, "hash": self.hash, "ts": self.ts, "key_id": self.key_id,
            "public_key": self.public_key, "signature": self.signature,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedHead:
        """Read a published head; ValueError naming what is missing or malformed."""
        if data.get("kind", HEAD_KIND) != HEAD_KIND:
            raise ValueError(f"not a faceledger signed head (kind {data.get('kind')!r})")
        try:
            return cls(
                int(data["seq"]), str(data["hash"]), str(data["ts"]), str(data["key_id"]),
                str(data["public_key"]), str(data["signature"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a signed head needs seq, hash, ts, key_id, public_key and signature ({exc})") from None


def sign_head(key: SigningKey, seq: int, head_hash: str, ts: str) -> SignedHead:
    """Sign the head ``(seq, hash)`` at time ``ts``."""
    head = SignedHead(seq, head_hash, ts, key.id, key.public_b64, "")
    return SignedHead(seq, head_hash, ts, key.id, key.public_b64, key.sign(head.statement()))


def purge_statement(purged_to_seq: int, last_hash: str, ts: str) -> dict[str, Any]:
    """What a retention checkpoint's signature covers."""
    return {"kind": PURGE_KIND, "purged_to_seq": purged_to_seq, "last_hash": last_hash, "ts": ts}


SIGNING_KEY_ACTION = AuditAction.LEDGER_SIGNING_KEY.value
CHECKPOINT_ACTION = AuditAction.AUDIT_CHECKPOINT.value
PURGE_ACTION = AuditAction.AUDIT_PURGE.value


def check_signatures(
    entries: list[tuple[int, str, dict[str, Any]]], public: bytes | None
) -> tuple[int, str] | None:
    """The first problem with the ledger's signatures, as ``(seq, problem)``, or None.

    ``entries`` are ``(seq, hash, body)`` of a chain that verified. The trusted key is ``public`` (the key file's or
    one obtained elsewhere), else the one the ledger records (its last ``ledger.signing_key`` entry). Once a key is
    recorded, every checkpoint must carry its signature of an entry the chain still holds, and every retention
    checkpoint its signature of what was purged.
    """
    hashes = {seq: digest for seq, digest, _ in entries}
    # The key is recorded by ledger.signing_key entries, and again by every signed retention checkpoint (retention
    # deletes the oldest entries, the first key record among them).
    recorded = [
        (seq, body)
        for seq, _, body in entries
        if body.get("action") == SIGNING_KEY_ACTION
        or (body.get("action") == PURGE_ACTION and "public_key" in (body.get("details") or {}))
    ]
    trusted = public
    registered_at = None
    if recorded:
        seq, body = recorded[-1]
        try:
            named = public_key_from_text(str(body.get("details", {}).get("public_key", "")))
        except ValueError:
            return seq, f"entry {seq} records no valid signing public key"
        if public is not None and named != public:
            return seq, (
                f"entry {seq} names signing key {key_id(named)}, not the one given ({key_id(public)}): the ledger "
                "was signed by another key, or rebuilt"
            )
        trusted, registered_at = named, recorded[0][0]
    elif public is not None:
        first = entries[0][0] if entries else 1
        return first, (
            f"the ledger records no signing key although key {key_id(public)} was given: it was rebuilt without it, "
            "or never signed"
        )
    if trusted is None:
        return None
    for seq, _, body in entries:
        action, details = body.get("action"), body.get("details") or {}
        if action == CHECKPOINT_ACTION:
            head = SignedHead(
                int(details.get("seq", -1)), str(details.get("hash", "")), str(details.get("ts", "")),
                str(details.get("key_id", "")), _b64(trusted), str(details.get("signature", "")),
            )  # fmt: skip
            if not head.valid(trusted):
                return seq, f"checkpoint entry {seq} is not signed by signing key {key_id(trusted)}"
            if head.seq in hashes and hashes[head.seq] != head.hash:
                return head.seq, f"entry {head.seq} differs from the signed checkpoint of {head.ts}"
        elif action == PURGE_ACTION and registered_at is not None and seq >= registered_at:
            statement = purge_statement(
                int(details.get("purged_to_seq", -1)), str(details.get("last_hash", "")), str(body.get("ts", ""))
            )
            if not verify_statement(statement, str(details.get("signature", "")), trusted):
                return seq, (
                    f"retention checkpoint entry {seq} is not signed by signing key {key_id(trusted)}: the entries "
                    f"up to {details.get('purged_to_seq')} were deleted by someone without it"
                )
    return None
