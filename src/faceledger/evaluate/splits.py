"""A fixed split of identities into a calibration half and an evaluation half.

Thresholds shipped in model cards are calibrated on the *calibration* half of the development face set; tests
that assert accuracy use the other half, so no figure is measured on the data that set the threshold. The
split depends only on the identity label, so it is stable across machines, runs and dataset orderings.
"""

from __future__ import annotations

import hashlib

__all__ = ["is_calibration_identity"]


def is_calibration_identity(identity: str) -> bool:
    """Return True when ``identity`` belongs to the calibration half (about half of all identities).

    The rule: the first hex digit of ``sha256(identity)`` is one of ``0``-``7``.
    """
    return hashlib.sha256(identity.encode()).hexdigest()[0] in "01234567"
