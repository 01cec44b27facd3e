"""The deployment policy: a TOML file, validated, whose SHA-256 is recorded with every decision.

See :data:`EXAMPLE_POLICY` for a commented example (``faceledger policy example`` prints it). The policy hash
is the SHA-256 of the policy's UTF-8 text, so anyone can recompute it with ``sha256sum policy.toml``.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faceledger.ledger.errors import PolicyError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deployment(_Strict):
    """Who runs this deployment, why, and on what legal basis."""

    controller: str = Field(min_length=1, description="organisation responsible for the processing")
    purpose: str = Field(min_length=1, description="what the deployment is for, in plain words")
    legal_basis: str = Field(min_length=1, description="legal basis of the processing, e.g. 'explicit consent'")
    contact: str = Field(default="", description="where people can ask about or object to the processing")


class Identification(_Strict):
    """How identification decisions are made."""

    target_fmr: float = Field(gt=0.0, le=0.1, description="false-match rate the threshold is set for")
    target_fpir: float = Field(
        default=0.01,
        gt=0.0,
        le=0.1,
        description="false positive identification rate per searched face: the chance that someone not enrolled gets "
        "a candidate, held at the gallery's size",
    )
    max_group_ratio: float | None = Field(
        default=None,
        ge=1.0,
        description="largest ratio of a group's FMR or FNMR to the best group's that a deployment's evaluation may "
        "show; set, a deployment needs an evaluation (faceledger evaluate --group-column) within it",
    )
    top_k: int = Field(default=5, ge=1, le=100, description="candidates returned per face")
    reviewers_required: int = Field(
        default=1, ge=1, le=5, description="distinct reviewers who must confirm before a match counts"
    )


class Retention(_Strict):
    """How long records are kept, in days. Templates and audit entries are kept without limit when unset."""

    templates_days: int | None = Field(default=None, ge=1, description="age after which templates are deleted")
    consents_days: int = Field(default=3 * 365, ge=0, description="days consent records are kept after they end")
    audit_days: int | None = Field(default=None, ge=1, description="age after which audit entries are purged")
    reviews_days: int = Field(default=365, ge=1, description="age after which candidates and reviews are deleted")
    evidence_days: int = Field(
        default=30, ge=1, description="days a confirmed candidate's evidence (face crops) is kept after the decision"
    )


class Watchlist(_Strict):
    """A gallery of people enrolled without their consent (a court order, a missing-person report): the legal bases
    and entry categories it accepts, and how long an entry may last. Every entry needs an expiry."""

    legal_bases: list[str] = Field(min_length=1, description="legal bases an entry may be made under")
    categories: list[str] = Field(min_length=1, description="entry categories, e.g. 'missing person'")
    max_entry_days: int | None = Field(default=None, ge=1, description="longest time an entry may stay on the list")


ADMINISTRATION_PURPOSES = (
    "administration",
    "consent administration",
    "erasure request",
    "retention",
    "human review",
    "audit",
    "transparency report",
    "transparency",
    "ledger export",
    "deployment administration",
    "key rotation",
)
"""The default of ``administration.purposes``: what the CLI's defaults, the web UI and the docs use."""


def _named_once(value: list[str]) -> list[str]:
    for purpose in value:
        if not purpose.strip():
            raise ValueError("purposes must be non-empty strings")
    if len(set(value)) != len(value):
        raise ValueError("purposes are listed twice")
    return value


class Administration(_Strict):
    """The purposes of the administrative operations: listing consents, subjects and the review queue, erasure,
    consent withdrawal, retention, reading and exporting the ledger, the transparency report. Each also accepts
    the purposes of the gallery it is about (of any gallery when it is about none); any other is refused."""

    purposes: list[str] = Field(
        default=list(ADMINISTRATION_PURPOSES), min_length=1, description="purposes administrative operations accept"
    )

    @field_validator("purposes")
    @classmethod
    def _purposes_named(cls, value: list[str]) -> list[str]:
        _named_once(value)
        if "retention" not in value:
            raise ValueError("must include 'retention': the scheduled retention runs use it")
        return value


class GalleryPolicy(_Strict):
    """One gallery (a set of enrolled subjects) and the purposes it may be searched for."""

    name: str = Field(pattern=NAME_PATTERN)
    purposes: list[str] = Field(min_length=1)
    description: str = ""
    watchlist: Watchlist | None = Field(default=None, description="set for a watchlist of people who did not consent")

    @field_validator("purposes")
    @classmethod
    def _purposes_named(cls, value: list[str]) -> list[str]:
        return _named_once(value)


class Policy(_Strict):
    """A validated policy. Build it with :func:`load_policy` or :func:`parse_policy`."""

    version: Literal[1] = 1
    deployment: Deployment
    identification: Identification
    retention: Retention = Retention()
    administration: Administration = Administration()
    unmatched_faces: str = Field(default="discard", description="always 'discard'")
    galleries: list[GalleryPolicy] = Field(min_length=1)

    @field_validator("unmatched_faces")
    @classmethod
    def _discard_only(cls, value: str) -> str:
        if value != "discard":
            raise ValueError(
                f"faceledger never keeps faces that match no one (asked: {value!r}); "
                "the only accepted value is 'discard'"
            )
        return value

    @model_validator(mode="after")
    def _unique_galleries(self) -> Policy:
        names = [g.name for g in self.galleries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"gallery names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def gallery(self, name: str | None) -> GalleryPolicy:
        """The named gallery, or the only one when ``name`` is None.

        Raises ``KeyError`` naming the choices.
        """
        if name is None:
            if len(self.galleries) == 1:
                return self.galleries[0]
            raise KeyError(
                "this policy has several galleries; choose one of: " + ", ".join(g.name for g in self.galleries)
            )
        for gallery in self.galleries:
            if gallery.name == name:
                return gallery
        raise KeyError(f"no gallery {name!r} in the policy; galleries: {', '.join(g.name for g in self.galleries)}")

    def administrative_purposes(self, gallery: str | None) -> list[str]:
        """What an administrative operation about ``gallery`` accepts: ``administration.purposes`` and the
        gallery's purposes (every gallery's when ``gallery`` is None; none of a gallery the policy lacks)."""
        allowed = list(self.administration.purposes)
        for place in self.galleries:
            if gallery is None or place.name == gallery:
                allowed += [p for p in place.purposes if p not in allowed]
        return allowed


class LoadedPolicy:
    """A policy together with its source text and the SHA-256 of that text."""

    def __init__(self, policy: Policy, text: str, source: str) -> None:
        self.policy = policy
        self.text = text
        self.source = source
        self.hash = policy_hash(text)

    def __repr__(self) -> str:
        return f"LoadedPolicy(source={self.source!r}, hash={self.hash[:12]}...)"


def policy_hash(text: str) -> str:
    """SHA-256 (hex) of the policy text encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _field_name(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            in_range = isinstance(node, list) and 0 <= item < len(node)
            element = node[item] if in_range else None
            label = element.get("name", item) if isinstance(element, dict) else item
            if parts:
                parts[-1] += f"[{label}]"
            else:
                parts.append(f"[{label}]")
            node = element
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(policy)"


def parse_policy(text: str, source: str = "<policy>") -> LoadedPolicy:
    """Validate policy TOML text; raises :class:`PolicyError` listing every problem by field name."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, [("(toml)", str(exc))]) from None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown field (check its spelling and section)"
            elif err["type"] == "missing":
                message = "required field is missing"
            message = message.removeprefix("Value error, ")
            problems.append((_field_name(tuple(err["loc"]), data), message))
        raise PolicyError(source, problems) from None
    return LoadedPolicy(policy, text, source)


def load_policy(path: str | os.PathLike[str]) -> LoadedPolicy:
    """Read and validate a policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(str(path), [("(file)", "not found; `faceledger policy example` prints a template")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [("(file)", f"cannot be read: {exc}")]) from None
    return parse_policy(text, str(path))


EXAMPLE_POLICY = """\
# faceledger policy. Its SHA-256 is recorded with every enrollment, search, review and erasure:
# change it with `faceledger policy set FILE` (the change itself is an audit entry).

version = 1

# Unmatched faces (faces in a probe image that match no enrolled subject) are never stored: no image,
# crop, template or similarity leaves the process. This is the only accepted value.
unmatched_faces = "discard"

[deployment]
controller = "Example Organisation"           # who is responsible for the processing
purpose = "Door access for staff who opted in"  # what the deployment is for
legal_basis = "explicit consent"              # e.g. GDPR Art. 9(2)(a) explicit consent
contact = "privacy@example.org"               # where people ask, object or request erasure

[identification]
# The decision threshold is set as the error rates you accept, not as a raw similarity:
# target_fmr: one comparison of two different people (1:1 verification, and the floor for searches); 1e-3 means
#   about one impostor comparison in a thousand scores above the threshold.
# target_fpir: one search of a face against the whole gallery (1:N): the chance that someone who is not enrolled
#   gets a candidate. It grows with the gallery, so the search threshold rises with it; a gallery too large for the
#   recognizer's calibration to hold this rate is refused (see docs/gallery.md, "Thresholds at the gallery's size").
target_fmr = 1e-3
target_fpir = 1e-2
top_k = 5                  # candidates returned per face (only those at or above the threshold)
reviewers_required = 1     # distinct people who must confirm a candidate; use 2 for remote identification

[retention]
# templates_days = 365     # delete templates older than this (unset: keep while consent is valid)
consents_days = 1095       # keep consent records this long after they end (withdrawn or expired)
# audit_days = 2190        # purge audit entries older than this (unset: keep forever)
reviews_days = 365         # delete candidates and review records older than this
evidence_days = 30         # keep the face crops shown to reviewers this long after a confirmation (a rejection
                           # destroys them at once)

# The purposes administrative operations accept: listing consents, subjects and the review queue, erasure, consent
# withdrawal, retention, reading and exporting the ledger, the transparency report. Each also accepts the purposes
# of the gallery it is about (of any gallery when it is about none); any other purpose is refused. Unset: this list
# (what the command line's defaults and the web UI use). Keep "retention": the scheduled retention runs use it.
# [administration]
# purposes = ["administration", "consent administration", "erasure request", "retention", "human review", "audit",
#             "transparency report", "transparency", "ledger export", "deployment administration", "key rotation"]

[[galleries]]
name = "staff"
purposes = ["access-control"]
description = "Employees who enrolled at the front desk"

# [[galleries]]
# name = "visitors"
# purposes = ["access-control", "incident-investigation"]

# A watchlist: people searched for without their consent, each entry authorised and time-limited.
# Live video identification runs against it only under a deployment (`faceledger deployment add`).
# [[galleries]]
# name = "missing-persons"
# purposes = ["locate-missing-person"]
# [galleries.watchlist]
# legal_bases = ["court order", "missing-person report"]
# categories = ["missing person", "vulnerable adult"]
# max_entry_days = 30
"""
"""A complete, commented example policy (valid as is)."""

WATCHLIST_POLICY = """\
# faceledger policy for live identification against a watchlist of people who did not consent (here: missing
# persons). Every entry is authorised (category, legal basis, who and which order) and expires; video is
# searched only under a deployment (`faceledger deployment add`): who authorised it, where, when, how large
# the watchlist may be. Change it with `faceledger policy set FILE` (the change is an audit entry).

version = 1
unmatched_faces = "discard"     # faces that match no one are never stored: no frame, crop, template or score

[deployment]
controller = "Example Police Service"
purpose = "Locating missing and vulnerable people at transport hubs"
legal_basis = "court order"
contact = "dpo@example.org"

[identification]
target_fmr = 1e-3
target_fpir = 1e-3         # a passer-by gets a candidate in at most about one search in a thousand
# max_group_ratio = 1.5    # a deployment needs an evaluation (`faceledger evaluate --group-column ...` on data like
                           # the people it will see) whose per-group FMR and FNMR are within 1.5x the best group's
top_k = 1
reviewers_required = 2     # two people each verify a match before it counts (EU AI Act art. 14(5))

[retention]
consents_days = 365        # watchlist entry records are kept this long after they end
reviews_days = 30          # candidates and reviews are deleted after this
evidence_days = 7          # the face crops reviewers saw are destroyed this long after a confirmation

# Listings, erasure, withdrawal, retention, the ledger and the report accept the watchlist's purposes and the
# administrative ones (unset: the list `faceledger policy example` shows; "retention" is required), e.g.
# [administration]
# purposes = ["administration", "erasure request", "retention", "human review", "audit", "transparency report"]

[[galleries]]
name = "missing-persons"
purposes = ["locate-missing-person"]
description = "People reported missing, each entered under an order that expires"

[galleries.watchlist]
legal_bases = ["court order", "missing-person report"]
categories = ["missing person", "vulnerable adult"]
max_entry_days = 30        # an entry may not outlive this; renew it with a new authorisation
"""
"""A complete example policy for a watchlist searched in video (valid as is)."""
