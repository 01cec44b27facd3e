"""Every kind of audit entry, in one enumeration: what the gallery writes, what the report counts, what the docs list.

The values are the ``action`` strings stored in the chain (changing one would make old entries unreadable to the
report, so values never change; new actions are added). ``describe()`` gives the sentence the docs print.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """The ``action`` of an audit entry."""

    LEDGER_INIT = "ledger.init"
    POLICY_CHANGE = "policy.change"
    CONSENT_ADD = "consent.add"
    CONSENT_LIST = "consent.list"
    CONSENT_WITHDRAW = "consent.withdraw"
    CONSENT_EXPIRE = "consent.expire"
    CONSENT_PURGE = "consent.purge"
    ENROLL = "enroll"
    SUBJECTS_LIST = "subjects.list"
    IDENTIFY = "identify"
    IDENTIFY_REFUSED = "identify.refused"
    VERIFY = "verify"
    REVIEW_LIST = "review.list"
    REVIEW_CONFIRM = "review.confirm"
    REVIEW_REJECT = "review.reject"
    REVIEW_PURGE = "review.purge"
    SUBJECT_ERASE = "subject.erase"
    TEMPLATE_PURGE = "template.purge"
    AUDIT_PURGE = "audit.purge"
    AUDIT_EXPORT = "audit.export"
    PURGE = "purge"
    REPORT = "report"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    KEY_ROTATE = "key.rotate"
    DEPLOYMENT_ADD = "deployment.add"
    DEPLOYMENT_CHANGE = "deployment.change"
    DEPLOYMENT_END = "deployment.end"
    WATCH_START = "watch.start"
    WATCH_REFUSED = "watch.refused"
    WATCH_TRACK = "watch.track"
    WATCH_STOP = "watch.stop"
    EVIDENCE_VIEW = "evidence.view"
    EVIDENCE_PURGE = "evidence.purge"
    USER_ADD = "user.add"
    USER_DISABLE = "user.disable"
    SIGNIN = "signin"
    SIGNIN_FAILED = "signin.failed"
    SIGNOUT = "signout"
    RECORDS_READ = "records.read"
    LEDGER_SIGNING_KEY = "ledger.signing_key"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    STATE_SEAL = "state.seal"
    CALIBRATION_EXTRAPOLATION = "calibration.extrapolation"

    def describe(self) -> str:
        """One sentence: what the entry records."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: dict[AuditAction, str] = {
    AuditAction.LEDGER_INIT: "the deployment was created: master key id, galleries",
    AuditAction.POLICY_CHANGE: "a new policy was put in force: previous and new hash",
    AuditAction.CONSENT_ADD: "a consent was recorded: legal basis, collector, validity",
    AuditAction.CONSENT_LIST: "someone looked up consent records",
    AuditAction.CONSENT_WITHDRAW: "consents were withdrawn (an erasure follows when none is left)",
    AuditAction.CONSENT_EXPIRE: "consents reached their expiry (an erasure follows when none is left)",
    AuditAction.CONSENT_PURGE: "ended consent records past their retention were deleted",
    AuditAction.ENROLL: "templates were made for a subject: images by hash, outcomes, possible duplicates",
    AuditAction.SUBJECTS_LIST: "someone listed the enrolled subjects",
    AuditAction.IDENTIFY: "a 1:N search: probe hash, threshold, faces, candidates",
    AuditAction.IDENTIFY_REFUSED: "a 1:N search refused by the policy (purpose not allowed)",
    AuditAction.VERIFY: "a 1:1 check, against a subject or between two images: similarity and decision",
    AuditAction.REVIEW_LIST: "a reviewer opened the queue of pending candidates",
    AuditAction.REVIEW_CONFIRM: "a reviewer confirmed a candidate",
    AuditAction.REVIEW_REJECT: "a reviewer rejected a candidate",
    AuditAction.REVIEW_PURGE: "candidates and reviews past their retention were deleted",
    AuditAction.SUBJECT_ERASE: "a subject was erased: templates and data key destroyed, candidates deleted",
    AuditAction.TEMPLATE_PURGE: "templates past their retention were deleted",
    AuditAction.AUDIT_PURGE: "audit entries past their retention were deleted (checkpoint: range and last hash)",
    AuditAction.AUDIT_EXPORT: "the whole ledger was exported",
    AuditAction.PURGE: "a retention run finished: what each step removed",
    AuditAction.REPORT: "a transparency report was generated",
    AuditAction.KEY_CREATE: "an API key was created: owner and role",
    AuditAction.KEY_REVOKE: "an API key was revoked",
    AuditAction.KEY_ROTATE: "the master key was rotated: old and new key ids",
    AuditAction.DEPLOYMENT_ADD: "a video deployment was authorised: who, where, sources, watchlist, validity",
    AuditAction.DEPLOYMENT_CHANGE: "a deployment's validity, sources or watchlist size limit changed: before and after",
    AuditAction.DEPLOYMENT_END: "a deployment was ended before its validity ran out",
    AuditAction.WATCH_START: "a video session started: deployment, source, gallery, threshold",
    AuditAction.WATCH_REFUSED: "a video session was refused: no valid deployment, source or watchlist size",
    AuditAction.WATCH_TRACK: "a face track in video raised candidates: subjects, similarities, when it was seen",
    AuditAction.WATCH_STOP: "a video session stopped: frames, tracks, candidates, dropped frames, gaps",
    AuditAction.EVIDENCE_VIEW: "someone looked at faces: a candidate's evidence or a subject's reference faces",
    AuditAction.EVIDENCE_PURGE: "evidence of decided candidates past its retention was destroyed",
    AuditAction.USER_ADD: "a web UI account was created: name and role",
    AuditAction.USER_DISABLE: "a web UI account was disabled (its sessions end)",
    AuditAction.SIGNIN: "someone signed in to the web UI: account or API key, role",
    AuditAction.SIGNIN_FAILED: "a web UI sign-in failed: the name tried, why, from which address",
    AuditAction.SIGNOUT: "someone signed out of the web UI",
    AuditAction.RECORDS_READ: "someone read records: candidates, reviews, counts or audit entries (filters, how many)",
    AuditAction.LEDGER_SIGNING_KEY: "the key that signs the ledger's heads was recorded: its id and public key",
    AuditAction.AUDIT_CHECKPOINT: "a signed checkpoint: the seq, hash and time of the entry before, and the signature",
    AuditAction.STATE_SEAL: "the records of a database made before seals were sealed as they were: how many of each",
    AuditAction.CALIBRATION_EXTRAPOLATION: "thresholds beyond the measured calibration were accepted for a gallery "
    "up to a size: who, why, the method",
}
