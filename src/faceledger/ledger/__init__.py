"""The system of record: store, hash-chained audit ledger, keys and encryption, policy, retention.

This layer uses only the standard library, ``cryptography`` and ``pydantic``; it knows nothing of images or
models. The use cases that touch people live in :mod:`faceledger.gallery`, which is the only writer of audit
entries.
"""

from faceledger.ledger.apikeys import authenticate, create_api_key, list_api_keys, revoke_api_key
from faceledger.ledger.audit import (
    AuditDraft,
    AuditEntry,
    AuditHead,
    VerifyResult,
    canonical_json,
    verify_chain,
)
from faceledger.ledger.crypto import MASTER_KEY_ENV, MasterKey, create_key_file, load_master_key
from faceledger.ledger.errors import (
    AccessDenied,
    AccountabilityError,
    ConsentError,
    DuplicateError,
    LedgerError,
    MasterKeyError,
    PolicyError,
    PurposeError,
    ReviewError,
    StoreError,
    UnknownSubjectError,
)
from faceledger.ledger.policy import (
    EXAMPLE_POLICY,
    WATCHLIST_POLICY,
    LoadedPolicy,
    Policy,
    load_policy,
    parse_policy,
)
from faceledger.ledger.records import (
    ROLES,
    ApiKey,
    CandidateRecord,
    Consent,
    ReviewRecord,
    Subject,
    SubjectKey,
    TemplateRecord,
    TemplateRef,
)
from faceledger.ledger.store import SQLiteStore, Store, Transaction, verify_audit

__all__ = [
    "EXAMPLE_POLICY",
    "MASTER_KEY_ENV",
    "ROLES",
    "WATCHLIST_POLICY",
    "AccessDenied",
    "AccountabilityError",
    "ApiKey",
    "AuditDraft",
    "AuditEntry",
    "AuditHead",
    "CandidateRecord",
    "Consent",
    "ConsentError",
    "DuplicateError",
    "LedgerError",
    "LoadedPolicy",
    "MasterKey",
    "MasterKeyError",
    "Policy",
    "PolicyError",
    "PurposeError",
    "ReviewError",
    "ReviewRecord",
    "SQLiteStore",
    "Store",
    "StoreError",
    "Subject",
    "SubjectKey",
    "TemplateRecord",
    "TemplateRef",
    "Transaction",
    "UnknownSubjectError",
    "VerifyResult",
    "authenticate",
    "canonical_json",
    "create_api_key",
    "create_key_file",
    "list_api_keys",
    "load_master_key",
    "load_policy",
    "parse_policy",
    "revoke_api_key",
    "verify_audit",
    "verify_chain",
]
