"""Evaluation datasets: a folder of identity subfolders, a manifest CSV, or an LFW-style pairs file.

* **Folder**: ``DATASET/<identity>/<image>``; images directly inside ``DATASET`` are unlabeled. A folder
  holding a ``manifest.csv`` is read through that manifest instead.
* **Manifest CSV**: a header with at least ``path`` and ``identity``; optional ``n_faces_expected`` (-1 or
  empty for unknown) and a group column (``group`` by default, any other name with ``group_column``). Paths
  are relative to the CSV's folder. An empty identity marks an unlabeled image (a group photo, a photo with no
  face): it counts for detection only.
* **Pairs file** (LFW ``pairs.txt`` layout): an optional header line (``N`` or ``folds N``), then one pair per
  line, ``name i j`` (same person) or ``name1 i name2 j`` (different people), images at
  ``<images>/<name>/<name>_<iiii>.jpg``; ``images`` defaults to the file's folder, or its ``lfw`` subfolder
  when that is where the names are. Lines ``path_a path_b 1|0`` (paths relative to the file) are accepted too.

Groups are labels the user supplies; faceledger never infers them.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "Dataset", "DatasetError", "Pair", "Sample", "load_dataset"]

#: File name endings treated as images when scanning a folder.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"})


class DatasetError(ValueError):
    """The dataset cannot be read; the message names the file (and line or column) and what to fix."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    ``identity`` is ``""`` for an unlabeled image; ``group`` the user-supplied group label or ``None``;
    ``n_faces_expected`` the known number of faces or ``None`` when unknown.
    """

    path: Path
    identity: str
    group: str | None = None
    n_faces_expected: int | None = None


@dataclass(frozen=True)
class Pair:
    """An explicit comparison of two samples (indices into :attr:`Dataset.samples`) and whether they match."""

    a: int
    b: int
    same: bool


@dataclass
class Dataset:
    """Samples in dataset order (the first usable image of an identity is its gallery image), optional
    pairs."""

    name: str
    kind: str  # "folder", "manifest" or "pairs"
    source: Path
    samples: list[Sample]
    pairs: list[Pair] | None = None
    group_column: str | None = None

    @property
    def identities(self) -> list[str]:
        """Distinct non-empty identities in order of first appearance."""
        return list(dict.fromkeys(s.identity for s in self.samples if s.identity))

    @property
    def has_groups(self) -> bool:
        """True when at least one sample carries a group label."""
        return any(s.group for s in self.samples)

    def subset(self, keep: list[int]) -> Dataset:
        """A dataset with only the samples at the given indices (pairs not involving them dropped)."""
        index = {old: new for new, old in enumerate(keep)}
        pairs = None
        if self.pairs is not None:
            pairs = [Pair(index[p.a], index[p.b], p.same) for p in self.pairs if p.a in index and p.b in index]
        return Dataset(self.name, self.kind, self.source, [self.samples[i] for i in keep], pairs, self.group_column)


def load_dataset(
    path: str | os.PathLike[str],
    group_column: str | None = None,
    images: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Read a dataset from a folder, a manifest ``.csv`` or a pairs file (see the module docstring)."""
    p = Path(path)
    if p.is_dir():
        manifest = p / "manifest.csv"
        if manifest.is_file():
            return load_manifest(manifest, group_column)
        if group_column:
            raise DatasetError(
                f"{p}: --group-column needs a manifest CSV with that column; a folder of identity subfolders "
                "carries no group labels"
            )
        return load_folder(p)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder; give a folder of identity subfolders, a CSV or pairs file")
    if p.suffix.lower() == ".csv":
        return load_manifest(p, group_column)
    if group_column:
        raise DatasetError(f"{p}: --group-column applies to manifest CSV datasets only")
    return load_pairs(p, images)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def load_folder(root: Path) -> Dataset:
    """``root/<identity>/**/<image>`` (sorted); images directly in ``root`` are unlabeled."""
    samples: list[Sample] = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            files = sorted(f for f in entry.rglob("*") if _is_image(f))
            samples.extend(Sample(f, entry.name) for f in files)
        elif _is_image(entry):
            samples.append(Sample(entry, ""))
    if not samples:
        raise DatasetError(
            f"{root}: no images found; expected one subfolder per person ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return Dataset(root.name, "folder", root, samples)


def _int_field(value: str | None, where: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise DatasetError(f"{where}: n_faces_expected must be an integer (-1 for unknown), got {value!r}") from None
    return None if number < 0 else number


def load_manifest(csv_path: Path, group_column: str | None = None) -> Dataset:
    """Read ``path,identity[,group][,n_faces_expected]`` rows; paths are relative to the CSV's folder."""
    root = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            for required in ("path", "identity"):
                if required not in fields:
                    raise DatasetError(
                        f"{csv_path}: missing column {required!r} (header has: "
                        f"{', '.join(fields) or 'nothing'}); "
                        "a manifest needs path,identity[,group][,n_faces_expected]"
                    )
            column = group_column
            if column is None and "group" in fields:
                column = "group"
            if column is not None and column not in fields:
                raise DatasetError(f"{csv_path}: no column {column!r} for groups (header has: {', '.join(fields)})")
            samples = []
            for line, row in enumerate(reader, start=2):
                where = f"{csv_path}:{line}"
                rel = (row.get("path") or "").strip()
                if not rel:
                    raise DatasetError(f"{where}: empty path")
                group = ((row.get(column) or "").strip() or None) if column else None
                samples.append(
                    Sample(
                        path=(root / rel),
                        identity=(row.get("identity") or "").strip(),
                        group=group,
                        n_faces_expected=_int_field(row.get("n_faces_expected"), where),
                    )
                )
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DatasetError(f"{csv_path}: not a readable CSV file ({exc})") from exc
    if not samples:
        raise DatasetError(f"{csv_path}: the manifest lists no images")
    return Dataset(csv_path.stem, "manifest", csv_path, samples, group_column=column)


def _lfw_image(root: Path, name: str, number: str, where: str) -> Path:
    try:
        n = int(number)
    except ValueError:
        raise DatasetError(f"{where}: image number must be an integer, got {number!r}") from None
    return root / name / f"{name}_{n:04d}.jpg"


def load_pairs(pairs_path: Path, images: str | os.PathLike[str] | None = None) -> Dataset:
    """Read an LFW-style pairs file (or ``path_a path_b 1|0`` lines) into samples and explicit pairs."""
    try:
        text = pairs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{pairs_path}: cannot read pairs file ({exc})") from exc
    lines = [(i, ln.split()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]
    if lines and all(tok.isdigit() for tok in lines[0][1]) and len(lines[0][1]) <= 2:
        lines = lines[1:]  # "300" or "10 300" header
    if not lines:
        raise DatasetError(f"{pairs_path}: no pairs found")
    if images is not None:
        root = Path(images)
    else:
        root = pairs_path.parent
        first = lines[0][1]
        if len(first) in (3, 4) and not (root / first[0]).is_dir() and (root / "lfw" / first[0]).is_dir():
            root = root / "lfw"
    index: dict[Path, int] = {}
    samples: list[Sample] = []
    pairs: list[Pair] = []

    def add(path: Path, identity: str) -> int:
        if path not in index:
            index[path] = len(samples)
            samples.append(Sample(path, identity))
        return index[path]

    for number, tokens in lines:
        where = f"{pairs_path}:{number}"
        if len(tokens) == 3 and tokens[2] in ("0", "1") and not tokens[1].lstrip("-").isdigit():
            a = add(pairs_path.parent / tokens[0], "")
            b = add(pairs_path.parent / tokens[1], "")
            pairs.append(Pair(a, b, tokens[2] == "1"))
        elif len(tokens) == 3:
            name = tokens[0]
            a = add(_lfw_image(root, name, tokens[1], where), name)
            b = add(_lfw_image(root, name, tokens[2], where), name)
            pairs.append(Pair(a, b, True))
        elif len(tokens) == 4:
            a = add(_lfw_image(root, tokens[0], tokens[1], where), tokens[0])
            b = add(_lfw_image(root, tokens[2], tokens[3], where), tokens[2])
            pairs.append(Pair(a, b, tokens[0] == tokens[2]))
        else:
            raise DatasetError(
                f"{where}: expected 'name i j', 'name1 i name2 j' or 'path_a path_b 1|0', got {' '.join(tokens)!r}"
            )
    return Dataset(pairs_path.stem, "pairs", pairs_path, samples, pairs)
