"""A fixed split of identities into a calibration half and an evaluation half.

Thresholds shipped in model cards are calibrated on the *calibration* half of the development face set; tests
that assert accuracy use the other half, so no figure is measured on the data that set the threshold. The
split depends only on the identity label, so it is stable across machines, runs and dataset orderings.
"""

from __future__ import annotations

import hashlib

__all__ = ["is_calibration_identity", "split_indices"]


def is_calibration_identity(identity: str) -> bool:
    """Return True when ``identity`` belongs to the calibration half (about half of all identities).

    The rule: the first hex digit of ``sha256(identity)`` is one of ``0``-``7``.
    """
    return hashlib.sha256(identity.encode()).hexdigest()[0] in "01234567"


def split_indices(identities: list[str], which: str) -> list[int]:
    """Indices of the samples (given by identity, ``""`` = unlabeled) that belong to one half.

    ``which`` is ``"calibration"`` (labeled images of calibration identities), ``"evaluation"`` (labeled
    images of the other identities, plus unlabeled images, which only count for detection) or ``"all"``.
    """
    if which == "all":
        return list(range(len(identities)))
    if which == "calibration":
        return [i for i, k in enumerate(identities) if k and is_calibration_identity(k)]
    if which == "evaluation":
        return [i for i, k in enumerate(identities) if not k or not is_calibration_identity(k)]
    raise ValueError(f"split must be 'all', 'calibration' or 'evaluation', got {which!r}")
