"""The use cases that touch people: consent, enrollment, identification, review, erasure, retention, reports.

>>> from faceledger.gallery import Gallery
>>> g = Gallery.init("faceledger.db", actor="admin")          # database + master key + example policy
>>> g.add_consent("emp-001", actor="desk", collected_by="desk", legal_basis="explicit consent",
...               purpose="access-control", evidence_ref="form-0001.pdf")
>>> g.enroll("emp-001", ["a.jpg", "b.jpg"], actor="desk", purpose="access-control")
>>> g.identify("door.jpg", actor="door-1", purpose="access-control")

Every call that touches people takes an ``actor`` and a ``purpose`` and writes an audit entry in the same
transaction as its effect. This is the only layer that writes audit entries.
"""

from faceledger.gallery.index import Hit, SearchIndex
from faceledger.gallery.report import TransparencyReport
from faceledger.gallery.results import (
    CandidateMatch,
    ConsentWithdrawal,
    DuplicateWarning,
    EnrollmentResult,
    ErasureReceipt,
    FaceResult,
    Identification,
    ImageOutcome,
    ImageVerification,
    PurgeReport,
    ReviewOutcome,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.gallery.service import DB_ENV, KEY_FILE_ENV, Gallery, default_db_path, default_key_file

__all__ = [
    "DB_ENV",
    "KEY_FILE_ENV",
    "CandidateMatch",
    "ConsentWithdrawal",
    "DuplicateWarning",
    "EnrollmentResult",
    "ErasureReceipt",
    "FaceResult",
    "Gallery",
    "Hit",
    "Identification",
    "ImageOutcome",
    "ImageVerification",
    "PurgeReport",
    "ReviewOutcome",
    "SearchIndex",
    "SubjectInfo",
    "SubjectVerification",
    "TransparencyReport",
    "default_db_path",
    "default_key_file",
]
