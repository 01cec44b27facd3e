"""The identification threshold at the gallery's size: open-set 1:N search held to a false positive identification
rate (FPIR), not only to the 1:1 false-match rate (FMR).

A probe face searched against ``M`` enrolled templates has ``M`` chances to match someone it is not. With the
recognizer's calibration giving the false-match rate ``FMR(t)`` of one comparison at threshold ``t``, the chance that
a person who is not enrolled gets a candidate is about ``FPIR = 1 - (1 - FMR(t))^M`` (NIST's FPIR; NISTIR 8271).
The policy states the ``target_fpir`` per searched face; the threshold in force is the one whose per-comparison FMR
meets both ``1 - (1 - target_fpir)^(1/M)`` and the policy's 1:1 ``target_fmr`` (so it never falls below the 1:1
threshold), recomputed whenever the number of searchable templates changes, and recorded with every search.

When the per-comparison FMR needed is below what the calibration measured (too few impostor pairs), the gallery of
that size is refused, unless the operator calibrated the recognizer on more data (``faceledger calibrate``) or
accepted an extrapolation of the calibration for that gallery up to a size, which is on the ledger
(``calibration.extrapolation``, :func:`accept_extrapolation`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from faceledger.errors import ModelError
from faceledger.gallery.context import GalleryContext, accountable
from faceledger.gallery.index import SearchIndex
from faceledger.gallery.index_sync import AllowedSubjects, allowed_subjects, search_mask, sync_index
from faceledger.gallery.results import SearchThreshold
from faceledger.ledger.actions import AuditAction
from faceledger.ledger.errors import GallerySizeError
from faceledger.ledger.store import Transaction

if TYPE_CHECKING:
    from faceledger.models.cards import Calibration

EXTRAPOLATION_FROM = 1e-3
"""The calibration points used to extrapolate: those at or below this FMR (the tail of the impostor scores)."""


def comparison_fmr(target_fpir: float, comparisons: int) -> float:
    """The per-comparison FMR at which ``comparisons`` independent comparisons give a false positive with probability
    ``target_fpir``: ``1 - (1 - target_fpir)^(1/comparisons)``, computed without cancellation."""
    return -math.expm1(math.log1p(-target_fpir) / max(comparisons, 1))


def search_threshold(
    ctx: GalleryContext, tx: Transaction, gallery: str, purpose: str | None, now: datetime
) -> SearchThreshold:
    """The threshold for a search of ``gallery`` for ``purpose`` now (the index synchronised in ``tx``); raises
    :class:`GallerySizeError` for a gallery too large for the calibration without an accepted extrapolation."""
    index = sync_index(ctx, tx)
    return threshold_for_search(ctx, tx, gallery, index, allowed_subjects(ctx, tx, gallery, purpose, now))


def threshold_for_search(
    ctx: GalleryContext, tx: Transaction, gallery: str, index: SearchIndex, allowed: AllowedSubjects
) -> SearchThreshold:
    """The threshold for a search over ``allowed`` in ``index`` (both already brought up to date by the caller)."""
    comparisons = int(np.count_nonzero(search_mask(index, allowed))) if len(allowed.subjects) else 0
    return threshold_for_size(ctx, tx, gallery, subjects=len(allowed.subjects), comparisons=comparisons)


def threshold_for_size(
    ctx: GalleryContext, tx: Transaction, gallery: str, *, subjects: int, comparisons: int
) -> SearchThreshold:
    """The threshold for a gallery of ``subjects`` with ``comparisons`` templates (see :func:`search_threshold`)."""
    ident = ctx.policy.policy.identification
    calibration = _calibration(ctx)
    fmr = min(ident.target_fmr, comparison_fmr(ident.target_fpir, comparisons))
    source = f"{ctx.model_id()} ({calibration.impostor_pairs:,} impostor pairs)"
    extrapolated = False
    if fmr < calibration.smallest_fmr:
        accepted = accepted_extrapolation(tx, gallery)
        if accepted is None or accepted < subjects:
            raise GallerySizeError(_too_large(gallery, subjects, comparisons, ident.target_fpir, fmr, calibration,
                                              accepted))  # fmt: skip
        threshold, extrapolated = extrapolate(calibration, fmr), True
    else:
        threshold = calibration.threshold_for_fmr(fmr)
    at = calibration.fmr_at(threshold)
    beyond = threshold > float(calibration.thresholds[-1])  # no measured miss rate there (only "at least" one)
    fnmr = math.nan if beyond else float(np.interp(threshold, calibration.thresholds, calibration.fnmr))
    return SearchThreshold(
        threshold=float(threshold),
        target_fpir=ident.target_fpir,
        target_fmr=ident.target_fmr,
        subjects=subjects,
        comparisons=comparisons,
        comparison_fmr=fmr,
        expected_fpir=-math.expm1(max(comparisons, 1) * math.log1p(-min(fmr if extrapolated else at, 0.999999))),
        expected_fnir=None if math.isnan(fnmr) else fnmr,
        calibration=source,
        extrapolated=extrapolated,
    )


def check_gallery_size(
    ctx: GalleryContext, tx: Transaction, gallery: str, *, version: int, added: tuple[int, int]
) -> SearchThreshold:
    """Refuse (:class:`GallerySizeError`) a gallery grown beyond what the calibration can hold to the target FPIR: every
    enrolled subject and template of ``gallery`` counted, whatever the purpose or the state of their consent.

    Called by a write transaction that has just added ``added`` (subjects, templates) to ``gallery`` and set the
    data version to ``version``. The database counts the gallery once; while this process's own transactions are
    the only changes since (the data version moved by one each), its count is carried forward, so a batch
    enrolling into a gallery of millions does not count them again for every subject."""
    known = ctx.gallery_sizes.get(gallery)
    if known is not None and known[0] == version - 1:
        subjects, templates = known[1] + added[0], known[2] + added[1]
    else:
        subjects, templates = tx.gallery_counts(gallery)  # this transaction's own rows included
    ctx.gallery_sizes[gallery] = (version, subjects, templates)  # forgotten if the transaction fails
    return threshold_for_size(ctx, tx, gallery, subjects=subjects, comparisons=templates)


def _calibration(ctx: GalleryContext) -> Calibration:
    calibration = ctx.engine.calibration
    if calibration is None:
        raise ModelError(
            f"recognizer {ctx.engine.recognizer.card.name} has no calibration, so no threshold can be set for the "
            "policy's target FPIR: run `faceledger calibrate` on your own data"
        )
    return calibration


def _too_large(
    gallery: str, subjects: int, comparisons: int, fpir: float, fmr: float, calibration: Calibration,
    accepted: int | None,
) -> str:  # fmt: skip
    needed = math.ceil(3.0 / fmr)  # no false match among n pairs bounds the rate below 3/n at 95 %
    largest = largest_gallery(fpir, calibration.smallest_fmr)
    earlier = f" (an extrapolation was accepted up to {accepted:,} subjects)" if accepted is not None else ""
    return (
        f"gallery {gallery!r} has {subjects:,} searchable subjects ({comparisons:,} templates): holding a target FPIR "
        f"of {fpir:g} per searched face needs a false-match rate of {fmr:.1e} per comparison, below what the "
        f"recognizer's calibration can measure ({calibration.impostor_pairs:,} impostor pairs measure down to "
        f"{calibration.smallest_fmr:.1e}; it holds galleries of up to about {largest:,} templates){earlier}. Showing "
        f"{fmr:.1e} with 95 % confidence takes at least {needed:,} impostor pairs with no false match: calibrate on "
        "more data of your own (`faceledger calibrate`), or accept an extrapolation of the calibration for this "
        f"gallery, on the ledger (`faceledger policy accept-extrapolation --gallery {gallery} --up-to N`)"
    )


def largest_gallery(target_fpir: float, smallest_fmr: float) -> int:
    """The most templates a gallery may hold before ``target_fpir`` needs a per-comparison FMR below
    ``smallest_fmr``."""
    if smallest_fmr <= 0:
        return 0
    return max(1, math.floor(math.log1p(-target_fpir) / math.log1p(-smallest_fmr)))


def extrapolate(calibration: Calibration, fmr: float) -> float:
    """The threshold at ``fmr`` beyond the measured calibration: log10(FMR) fitted as a straight line in the threshold
    over the calibration's tail (points at or below :data:`EXTRAPOLATION_FROM`), extended. An estimate, used only
    when an operator accepted it on the ledger; never below the highest measured threshold."""
    tail = (calibration.fmr <= EXTRAPOLATION_FROM) & (calibration.fmr > 0)
    if int(np.count_nonzero(tail)) < 2:
        raise ModelError("the calibration has too few points below FMR 1e-3 to extrapolate from")
    slope, intercept = np.polyfit(calibration.thresholds[tail], np.log10(calibration.fmr[tail]), 1)
    if slope >= 0:
        raise ModelError("the calibration's tail does not fall with the threshold; it cannot be extrapolated")
    return max(float((math.log10(fmr) - intercept) / slope), float(calibration.thresholds[-1]))


def accepted_extrapolation(tx: Transaction, gallery: str) -> int | None:
    """The gallery size (subjects) up to which the last accepted extrapolation for ``gallery`` holds, or None."""
    accepted = None
    for entry in tx.audit_entries(action=AuditAction.CALIBRATION_EXTRAPOLATION.value):
        details = entry.data.get("details") or {}
        if entry.data.get("gallery") == gallery:
            accepted = int(details.get("up_to_subjects", 0)) or None
    return accepted


def accept_extrapolation(
    ctx: GalleryContext, *, gallery: str | None, up_to: int, reason: str, actor: str, purpose: str = "administration"
) -> dict[str, Any]:
    """Accept, on the ledger, thresholds extrapolated beyond the calibration for ``gallery`` up to ``up_to``
    searchable subjects (0 withdraws an earlier acceptance). Returns what was recorded."""
    actor, purpose = accountable(actor, purpose)
    if not reason or not reason.strip():
        raise ValueError("accepting an extrapolation needs a reason (why the measured calibration is not enough)")
    if up_to < 0:
        raise ValueError(f"--up-to must be 0 or more subjects, not {up_to}")
    with ctx.write() as tx:
        policy = ctx.refresh_policy(tx)
        name = ctx.gallery_name(policy, gallery)
        ctx.check_administrative_purpose(policy, purpose, "accept an extrapolation", gallery=name)
        calibration = _calibration(ctx)
        ident = policy.policy.identification
        details = {
            "up_to_subjects": up_to,
            "reason": reason.strip(),
            "target_fpir": ident.target_fpir,
            "measured_down_to_fmr": calibration.smallest_fmr,
            "impostor_pairs": calibration.impostor_pairs,
            "largest_measured_gallery": largest_gallery(ident.target_fpir, calibration.smallest_fmr),
            "method": f"log10(FMR) linear in the threshold over the calibration at FMR <= {EXTRAPOLATION_FROM:g}",
            "model": ctx.model_id(),
        }
        entry = ctx.record(
            tx, AuditAction.CALIBRATION_EXTRAPOLATION, actor=actor, purpose=purpose, gallery=name,
            policy_hash=policy.hash, details=details,
        )  # fmt: skip
    return {"gallery": name, "audit_seq": entry.seq, **details}
