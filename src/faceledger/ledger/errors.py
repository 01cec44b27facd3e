"""Errors raised by the ledger and the gallery use cases.

Each one names what it is about (a field, a subject, a file, an audit entry) and says what to do next.
They all derive from :class:`faceledger.errors.FaceledgerError`.
"""

from __future__ import annotations

from faceledger.errors import FaceledgerError


class LedgerError(FaceledgerError):
    """Base class of the errors of the system of record (store, audit, keys, policy)."""


class StoreError(LedgerError):
    """The database is missing, not initialised, locked for too long, or of an unknown schema version."""


class DatabaseMissingError(StoreError):
    """No database exists at the location given (``location`` names it); create one first."""

    def __init__(self, message: str, location: str) -> None:
        self.location = location
        super().__init__(message)


class NotInitialisedError(StoreError):
    """The database exists but holds no deployment yet (``location`` names it); initialise it first."""

    def __init__(self, message: str, location: str) -> None:
        self.location = location
        super().__init__(message)


class AlreadyInitialisedError(StoreError):
    """Initialising a database that already holds a deployment (``location`` names it); open it instead."""

    def __init__(self, message: str, location: str) -> None:
        self.location = location
        super().__init__(message)


class MasterKeyError(LedgerError):
    """The master key is missing, malformed, readable by others, or not the one the database was made with."""


class PolicyError(LedgerError, ValueError):
    """A policy file is invalid. ``problems`` lists ``(field, message)`` pairs, ``source`` names the file."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"{source}: invalid policy: {lines}")


class ConsentError(LedgerError):
    """An operation needs a valid consent record and there is none, or a consent record is invalid."""


class NoConsentError(ConsentError):
    """No consent at all is recorded for ``subject``: record one before enrolling."""

    def __init__(self, message: str, subject: str) -> None:
        self.subject = subject
        super().__init__(message)


class UnknownSubjectError(LedgerError, LookupError):
    """No subject (or consent, candidate, API key) with the given id exists."""


class DuplicateError(LedgerError):
    """The same thing was recorded before: an image already enrolled, a reviewer reviewing twice."""


class PurposeError(LedgerError, PermissionError):
    """The stated purpose (or gallery) is not one the policy allows for this operation."""


class DeploymentError(LedgerError, PermissionError):
    """Identification in video is not authorised: no deployment valid now covers this source and watchlist."""


class ReviewError(LedgerError):
    """A review cannot be recorded: the candidate was already decided, or the decision is malformed."""


class AccessDenied(LedgerError, PermissionError):
    """An API key is unknown, revoked, or lacks the role an operation needs."""


class AccountabilityError(LedgerError, ValueError):
    """A call that touches people came without an actor or a purpose (``missing`` says which)."""

    def __init__(self, message: str, missing: str) -> None:
        self.missing = missing
        super().__init__(message)


class TamperedRecordError(StoreError):
    """A record that decides who may be searched or what a search means does not match the seal of the audit entry
    that last wrote it: it was changed, inserted or deleted outside faceledger. ``kind`` and ``key`` name it; it is
    not used."""

    def __init__(self, message: str, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(message)


class GallerySizeError(LedgerError):
    """The gallery is larger than the recognizer's calibration can hold to the policy's target FPIR (the per-comparison
    false-match rate needed is below what it measured), and no extrapolation was accepted for that size."""
