"""Score the face tracks of a video run (``faceledger watch VIDEO --json``) against a scene's ground truth.

Each ``track`` event is attributed to the appearance whose true face box at the event's ``best_frame`` overlaps the
event's ``box`` most (IoU at least ``iou_match``); a track that overlaps none is *unassigned* (a false detection, or
a face the truth does not know). Then, per the target of a watchlist deployment:

* **recall**: watchlisted appearances with at least one track naming the right subject among its candidates, over
  all watchlisted appearances;
* **wrong subject**: candidates on a watchlisted person's tracks that name another subject;
* **bystander candidates**: candidates on the tracks of bystanders (people not in the watchlist) or on unassigned
  tracks: every one is a false alarm a reviewer has to dismiss;
* **tracks per appearance**: how often the tracker split one crossing of the scene into several tracks.

Only events whose ``decision`` is ``"candidate"`` (or that carry no decision) contribute candidates: a ``no_match``
or ``unusable`` track raises nothing for a reviewer, whatever else it lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faceledger.evaluate.scenes import Scene

__all__ = ["AppearanceScore", "VideoScore", "iou", "score_tracks"]


def iou(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Intersection over union of two ``x1, y1, x2, y2`` boxes (0 when either is empty or NaN)."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    w, h = min(ax2, bx2) - max(ax1, bx1), min(ay2, by2) - max(ay1, by1)
    if not (w > 0 and h > 0):  # also false for NaN
        return 0.0
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - w * h
    return w * h / union if union > 0 else 0.0


@dataclass(frozen=True)
class AppearanceScore:
    """One appearance: who, whether watchlisted (``subject`` is then the enrolled subject id), its tracks, whether
    one of them named the right subject, and the wrong subjects named."""

    index: int
    person: str
    first_frame: int
    last_frame: int
    subject: str | None
    tracks: tuple[int, ...]
    hit: bool
    wrong_subjects: tuple[str, ...]


@dataclass(frozen=True)
class VideoScore:
    """How a video run did against its scene (see the module docstring for each figure)."""

    appearances: int
    watchlisted_appearances: int
    hits: int
    recall: float  # NaN without watchlisted appearances
    wrong_subject: int
    bystander_candidates: int
    unassigned_tracks: int
    unassigned_candidates: int
    tracks: int
    tracks_per_appearance: float
    max_tracks_per_appearance: int
    missed: tuple[str, ...]  # persons of the watchlisted appearances without a hit
    per_appearance: tuple[AppearanceScore, ...]

    def meets(self, min_recall: float = 0.95, max_tracks_per_appearance: float = 1.3) -> bool:
        """True when the run meets a deployment's target: recall, no wrong subject, no bystander candidate, few
        split tracks."""
        recall_ok = self.watchlisted_appearances == 0 or self.recall >= min_recall
        return (
            recall_ok
            and self.wrong_subject == 0
            and self.bystander_candidates == 0
            and self.tracks_per_appearance <= max_tracks_per_appearance
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN recall as ``None``)."""
        data = asdict(self)
        data["recall"] = None if np.isnan(self.recall) else round(self.recall, 6)
        data["tracks_per_appearance"] = round(self.tracks_per_appearance, 6)
        data["missed"] = list(self.missed)
        data["per_appearance"] = [
            {**p, "tracks": list(p["tracks"]), "wrong_subjects": list(p["wrong_subjects"])}
            for p in data["per_appearance"]
        ]
        data["meets_target"] = self.meets()
        return data

    def summary(self) -> str:
        """One line: recall, wrong subjects, bystander candidates, tracks per appearance, unassigned tracks."""
        recall = "n/a" if np.isnan(self.recall) else f"{100 * self.recall:.1f}%"
        return (
            f"recall {self.hits}/{self.watchlisted_appearances} ({recall}), wrong subject {self.wrong_subject}, "
            f"bystander candidates {self.bystander_candidates}, tracks/appearance {self.tracks_per_appearance:.2f} "
            f"(max {self.max_tracks_per_appearance}), unassigned tracks {self.unassigned_tracks}"
        )


def _subjects(event: dict[str, Any]) -> list[str]:
    """The subjects an event raises as candidates for review."""
    if event.get("decision", "candidate") != "candidate":
        return []
    return [str(c["subject"]) for c in event.get("candidates") or []]


def _appearance_of(scene: Scene, event: dict[str, Any], iou_match: float) -> int | None:
    frame = int(event.get("best_frame", event.get("first_frame", -1)))
    best, best_iou = None, iou_match
    for i, appearance in enumerate(scene.appearances):
        truth = appearance.box(frame)
        if truth is not None:
            overlap = iou(truth, event["box"])
            if overlap >= best_iou:
                best, best_iou = i, overlap
    return best


def score_tracks(
    scene: Scene, events: list[dict[str, Any]], *, watchlist: dict[str, str], iou_match: float = 0.3
) -> VideoScore:
    """Score ``events`` (the JSON lines of a run; only ``track`` events count) against ``scene``.

    ``watchlist`` maps a person label of the scene to the subject id enrolled for them; everyone else in the scene
    is a bystander.
    """
    tracks = [e for e in events if e.get("event", "track") == "track"]
    by_appearance: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(scene.appearances))}
    unassigned: list[dict[str, Any]] = []
    for event in tracks:
        index = _appearance_of(scene, event, iou_match)
        (unassigned if index is None else by_appearance[index]).append(event)
    per: list[AppearanceScore] = []
    bystander = sum(len(_subjects(e)) for e in unassigned)
    for i, appearance in enumerate(scene.appearances):
        subject = watchlist.get(appearance.person)
        named = [s for e in by_appearance[i] for s in _subjects(e)]
        if subject is None:
            bystander += len(named)
        per.append(
            AppearanceScore(
                i,
                appearance.person,
                appearance.first_frame,
                appearance.last_frame,
                subject,
                tuple(int(e.get("track", -1)) for e in by_appearance[i]),
                subject is not None and subject in named,
                tuple(s for s in named if subject is not None and s != subject),
            )
        )
    watched = [p for p in per if p.subject is not None]
    hits = sum(p.hit for p in watched)
    counts = [len(p.tracks) for p in per]
    return VideoScore(
        appearances=len(per),
        watchlisted_appearances=len(watched),
        hits=hits,
        recall=hits / len(watched) if watched else float("nan"),
        wrong_subject=sum(len(p.wrong_subjects) for p in watched),
        bystander_candidates=bystander,
        unassigned_tracks=len(unassigned),
        unassigned_candidates=sum(len(_subjects(e)) for e in unassigned),
        tracks=len(tracks),
        tracks_per_appearance=sum(counts) / len(counts) if counts else 0.0,
        max_tracks_per_appearance=max(counts, default=0),
        missed=tuple(p.person for p in watched if not p.hit),
        per_appearance=tuple(per),
    )
