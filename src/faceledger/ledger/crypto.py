"""Keys and encryption of templates.

* The **master key** (32 random bytes) lives outside the database: in a key file readable only by its
  owner (mode 0600, created by ``init``) or in the environment variable ``FACELEDGER_MASTER_KEY`` (base64).
  Its id, a hash of the key, is stored in the database so a wrong key is reported, not used.
* Each subject has a **data key** (AES-256-GCM) stored only wrapped by the master key (AES-256-GCM, with the
  subject id and key id as associated data so a wrapped key cannot be moved to another subject).
* Each template is encrypted with its subject's data key; the associated data binds subject id and template
  id, so a ciphertext cannot be swapped between subjects or templates without detection. A subject's reference
  faces (the aligned crops of its enrolled images) are encrypted the same way, under their own prefix.
* The **evidence** of a candidate (the face that raised it and its context) is encrypted with a key of its own,
  wrapped by the master key with the candidate id and key id as associated data; each image's associated data
  binds candidate id, key id and which image it is, so no blob can be moved to another candidate or swapped.

Erasing a subject destroys its wrapped data key: any copy of its templates left in a backup is unreadable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceledger.config import MASTER_KEY_ENV  # the base64 master key; it takes precedence over the key file
from faceledger.ledger.errors import MasterKeyError

KEY_BYTES = 32
NONCE_BYTES = 12
_WRAP_AAD = b"faceledger/subject-key/v1|"
_TEMPLATE_AAD = b"faceledger/template/v1|"
_REFERENCE_AAD = b"faceledger/reference-face/v1|"
_EVIDENCE_KEY_AAD = b"faceledger/evidence-key/v1|"
_EVIDENCE_AAD = b"faceledger/evidence/v1|"


def _aad(prefix: bytes, *parts: str) -> bytes:
    return prefix + b"|".join(part.encode("utf-8") for part in parts)


@dataclass(frozen=True)
class MasterKey:
    """The master key: wraps and unwraps subject data keys. ``id`` identifies it without revealing it."""

    key: bytes
    source: str

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise MasterKeyError(f"{self.source}: the master key must be {KEY_BYTES} bytes, got {len(self.key)}")

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r}, source={self.source!r})"

    @property
    def id(self) -> str:
        """A 16-hex-digit identifier derived from the key (safe to store and print)."""
        return hashlib.sha256(b"faceledger/master-key-id/v1|" + self.key).hexdigest()[:16]

    def wrap(self, data_key: bytes, *, subject_id: str, key_id: str) -> bytes:
        """Encrypt a subject data key; the result is ``nonce || ciphertext+tag``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, data_key, _aad(_WRAP_AAD, subject_id, key_id))

    def unwrap(self, wrapped: bytes, *, subject_id: str, key_id: str) -> bytes:
        """Decrypt a wrapped subject data key; :class:`MasterKeyError` if this key did not wrap it."""
        nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return AESGCM(self.key).decrypt(nonce, body, _aad(_WRAP_AAD, subject_id, key_id))
        except InvalidTag:
            raise MasterKeyError(
                f"the data key of subject {subject_id!r} does not open with master key {self.id} "
                f"({self.source}): wrong master key, or the key row was tampered with"
            ) from None

    def wrap_evidence_key(self, evidence_key: bytes, *, candidate_id: str, key_id: str) -> bytes:
        """Encrypt a candidate's evidence key; the result is ``nonce || ciphertext+tag``."""
        return seal(self.key, evidence_key, _aad(_EVIDENCE_KEY_AAD, candidate_id, key_id))

    def unwrap_evidence_key(self, wrapped: bytes, *, candidate_id: str, key_id: str) -> bytes:
        """Decrypt a wrapped evidence key; :class:`MasterKeyError` if this key did not wrap it for this candidate."""
        try:
            return unseal(self.key, wrapped, _aad(_EVIDENCE_KEY_AAD, candidate_id, key_id))
        except InvalidTag:
            raise MasterKeyError(
                f"the evidence key of candidate {candidate_id} does not open with master key {self.id} "
                f"({self.source}): wrong master key, or the evidence row was tampered with or moved"
            ) from None


def encode_key(key: bytes) -> str:
    """Base64 text of a key, as written to key files and expected in ``FACELEDGER_MASTER_KEY``."""
    return base64.b64encode(key).decode("ascii")


def _decode_key(text: str, source: str) -> bytes:
    text = text.strip()
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decoder(text.encode("ascii") + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(key) == KEY_BYTES:
            return key
    raise MasterKeyError(f"{source}: not a base64 encoded {KEY_BYTES}-byte key")


def create_key_file(path: str | os.PathLike[str]) -> MasterKey:
    """Create a new random master key in ``path`` with mode 0600; refuses to overwrite an existing file."""
    path = Path(path)
    key = secrets.token_bytes(KEY_BYTES)
    write_secret_file(
        path, encode_key(key), exists="a key file already exists; reuse it (it is loaded automatically) or move it "
        "away first", what="key file",
    )  # fmt: skip
    return MasterKey(key, str(path))


def write_secret_file(path: Path, text: str, *, exists: str, what: str) -> None:
    """Write ``text`` to a new file readable by its owner only (mode 0600, fsynced); never over an existing one
    (``exists``: the message then)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"{path}: {exists}") from None
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot create the {what}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_secret_file(path: Path, what: str) -> str | None:
    """The text of a key file, None when it does not exist; refused when other users can read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"{path}: {what} is accessible by other users; run: chmod 600 {path}")
    return path.read_text(encoding="ascii", errors="replace")


def load_master_key(key_file: str | os.PathLike[str] | None) -> MasterKey:
    """Load the master key from ``FACELEDGER_MASTER_KEY`` if set, else from ``key_file``.

    A key file that other users can read is refused (run ``chmod 600`` on it).
    """
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return MasterKey(_decode_key(env, MASTER_KEY_ENV), MASTER_KEY_ENV)
    if key_file is None:
        raise MasterKeyError(f"no master key: set {MASTER_KEY_ENV} or give the key file created by init")
    path = Path(key_file)
    text = read_secret_file(path, "key file")
    if text is None:
        raise MasterKeyError(
            f"{path}: master key file not found; give the key file created by init or set {MASTER_KEY_ENV}"
        )
    return MasterKey(_decode_key(text, str(path)), str(path))


def new_data_key() -> bytes:
    """A fresh random AES-256 data key for one subject."""
    return AESGCM.generate_key(bit_length=256)


def encrypt_template(data_key: bytes, plaintext: bytes, *, subject_id: str, template_id: str) -> tuple[bytes, bytes]:
    """Encrypt a template's bytes; returns ``(nonce, ciphertext+tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(data_key).encrypt(nonce, plaintext, _aad(_TEMPLATE_AAD, subject_id, template_id))


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a fresh random nonce; the result is ``nonce || ciphertext+tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of :func:`seal`'s output; raises ``InvalidTag`` when key, data or associated data differ."""
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


def encrypt_evidence(key: bytes, plaintext: bytes, *, candidate_id: str, key_id: str, part: str) -> tuple[bytes, bytes]:
    """Encrypt one image of a candidate's evidence (``part``: ``face`` or ``context``); ``(nonce, ciphertext+tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, _aad(_EVIDENCE_AAD, candidate_id, key_id, part))


def decrypt_evidence(
    key: bytes, nonce: bytes, ciphertext: bytes, *, candidate_id: str, key_id: str, part: str
) -> bytes:
    """Decrypt one image of a candidate's evidence; :class:`MasterKeyError` if it was altered, moved or swapped."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(_EVIDENCE_AAD, candidate_id, key_id, part))
    except InvalidTag:
        raise MasterKeyError(
            f"the {part} image of candidate {candidate_id} fails authentication: it was altered or moved"
        ) from None


def encrypt_reference_face(
    data_key: bytes, plaintext: bytes, *, subject_id: str, template_id: str
) -> tuple[bytes, bytes]:
    """Encrypt a subject's reference face (the aligned crop of an enrolled image); ``(nonce, ciphertext+tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(data_key).encrypt(nonce, plaintext, _aad(_REFERENCE_AAD, subject_id, template_id))


def decrypt_reference_face(
    data_key: bytes, nonce: bytes, ciphertext: bytes, *, subject_id: str, template_id: str
) -> bytes:
    """Decrypt a reference face; :class:`MasterKeyError` if it was altered or moved to another subject or template."""
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, _aad(_REFERENCE_AAD, subject_id, template_id))
    except InvalidTag:
        raise MasterKeyError(
            f"reference face of template {template_id} of subject {subject_id!r} fails authentication: "
            "it was altered or moved"
        ) from None


def decrypt_template(data_key: bytes, nonce: bytes, ciphertext: bytes, *, subject_id: str, template_id: str) -> bytes:
    """Decrypt a template; :class:`MasterKeyError` if it was altered or moved to another subject."""
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, _aad(_TEMPLATE_AAD, subject_id, template_id))
    except InvalidTag:
        raise MasterKeyError(
            f"template {template_id} of subject {subject_id!r} fails authentication: it was altered or moved"
        ) from None
