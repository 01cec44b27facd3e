"""The use cases that touch people, one module each: consent, enrollment, identification, review, erasure,
retention, keys, index_sync, admin, report; :class:`Gallery` (in ``facade``) is their front door.

>>> from faceledger.gallery import Gallery
>>> Gallery.init("staff.db", actor="admin").close()           # database + master key + example policy
>>> desk = Gallery.open("staff.db").as_actor("front-desk", purpose="access-control")
>>> desk.add_consent("emp-001", collected_by="desk", legal_basis="explicit consent", evidence_ref="form-0001.pdf")
>>> desk.enroll("emp-001", ["a.jpg", "b.jpg"])
>>> desk.identify("door.jpg")

Every call that touches people has an actor and a purpose and writes an audit entry in the same transaction as its
effect. This is the only layer that writes audit entries.
"""

from faceledger.gallery.facade import Gallery
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
    PendingReview,
    PurgeReport,
    ReviewOutcome,
    SubjectInfo,
    SubjectVerification,
)
from faceledger.gallery.session import GallerySession

__all__ = [
    "CandidateMatch",
    "ConsentWithdrawal",
    "DuplicateWarning",
    "EnrollmentResult",
    "ErasureReceipt",
    "FaceResult",
    "Gallery",
    "GallerySession",
    "Hit",
    "Identification",
    "ImageOutcome",
    "ImageVerification",
    "PendingReview",
    "PurgeReport",
    "ReviewOutcome",
    "SearchIndex",
    "SubjectInfo",
    "SubjectVerification",
    "TransparencyReport",
]
