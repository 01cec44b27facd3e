"""Reproduce the vendored browser assets in ``src/faceledger/interfaces/assets/vendor/`` from the npm registry.

The service serves them itself (``/docs``, ``/redoc`` and the web UI) so that nothing is loaded from a CDN:

* ``swagger-ui/``: Swagger UI's bundle, stylesheet and favicon (``swagger-ui-dist``);
* ``redoc/``: ReDoc's standalone bundle, React and everything else inside it (``redoc``);
* ``htmx/``: htmx, for the web UI (``htmx.org``).

Each package is fetched at its pinned version with ``npm pack``, its tarball checked against the pinned
integrity (SHA-512, as npm records it), and the listed files are copied byte for byte, with the package's
licence (and the licence notices of what its bundle contains). ``vendor/VENDORED.md`` lists every file with
its SHA-256; a test checks the files against it.

Usage (needs npm and access to the npm registry, or the tarballs already downloaded)::

    python scripts/vendor_assets.py
    python scripts/vendor_assets.py --tarballs /tmp/npm   # swagger-ui-dist-5.35.0.tgz, ... already there

To move to another version: change ``version`` and ``integrity`` below (``npm view PKG@VERSION dist.integrity``),
run the script, and look at /docs and /redoc (``tests/test_browser_docs.py``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "faceledger" / "interfaces" / "assets" / "vendor"


@dataclass(frozen=True)
class Package:
    """An npm package to vendor: ``files`` maps a path in the tarball (under ``package/``) to a file name in
    ``vendor/<folder>/``."""

    name: str
    version: str
    integrity: str
    licence: str
    folder: str
    files: dict[str, str]

    @property
    def tarball(self) -> str:
        return f"{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    Package(
        name="swagger-ui-dist",
        version="5.35.0",
        integrity="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
        licence="Apache-2.0",
        folder="swagger-ui",
        files={
            "swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
            "swagger-ui.css": "swagger-ui.css",
            "favicon-32x32.png": "favicon-32x32.png",
            "LICENSE": "LICENSE",
            "NOTICE": "NOTICE",
        },
    ),
    Package(
        name="redoc",
        version="2.5.4",
        integrity="sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==",
        licence="MIT",
        folder="redoc",
        files={
            "bundles/redoc.standalone.js": "redoc.standalone.js",
            "bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
            "LICENSE": "LICENSE",
        },
    ),
    Package(
        name="htmx.org",
        version="2.0.11",
        integrity="sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        licence="0BSD",
        folder="htmx",
        files={"dist/htmx.min.js": "htmx.min.js", "LICENSE": "LICENSE"},
    ),
)


def fetch(package: Package, into: Path, tarballs: Path | None) -> Path:
    """The package's tarball: from ``tarballs`` when given, else ``npm pack`` into ``into``."""
    if tarballs is not None:
        path = tarballs / package.tarball
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (npm pack {package.name}@{package.version})")
        return path
    subprocess.run(
        ["npm", "pack", f"{package.name}@{package.version}", "--pack-destination", str(into), "--silent"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return into / package.tarball


def integrity(data: bytes) -> str:
    """npm's integrity string of a tarball (Subresource Integrity, SHA-512)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def check_content(package: Package, target: str, data: bytes) -> None:
    """Refuse files that are not what the pages expect (the wrong bundle of a package)."""
    if target == "redoc.standalone.js" and (b'require("react")' in data or b"e.Redoc=" not in data[:2000]):
        raise SystemExit(f"error: {package.name} {package.version}: {target} is not the standalone bundle")
    if target == "swagger-ui-bundle.js" and b"SwaggerUIBundle" not in data[:4000]:
        raise SystemExit(f"error: {package.name} {package.version}: {target} does not define SwaggerUIBundle")
    if target.endswith(".png") and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise SystemExit(f"error: {package.name} {package.version}: {target} is not a PNG")


def vendor(package: Package, tarball: Path, out: Path) -> list[tuple[str, str]]:
    """Copy the package's files into ``out/<folder>`` (emptied first); return (path, SHA-256) of each."""
    data = tarball.read_bytes()
    found = integrity(data)
    if found != package.integrity:
        raise SystemExit(f"error: {tarball.name} has integrity {found}, expected {package.integrity}")
    folder = out / package.folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    written = []
    with tarfile.open(tarball, "r:gz") as archive:
        for source, target in package.files.items():
            member = archive.extractfile(f"package/{source}")
            if member is None:
                raise SystemExit(f"error: {tarball.name} has no file package/{source}")
            content = member.read()
            check_content(package, target, content)
            (folder / target).write_bytes(content)
            written.append((f"{package.folder}/{target}", hashlib.sha256(content).hexdigest()))
    return written


def manifest(rows: list[tuple[Package, str, str]]) -> str:
    """The text of ``VENDORED.md``."""
    lines = [
        "# Vendored browser assets",
        "",
        "Copied unmodified from their npm packages by `scripts/vendor_assets.py` (do not edit them by hand; run the",
        "script). The service serves this folder at `/assets/vendor/`; nothing is loaded from the internet.",
        "",
        "| package | version | file | SHA-256 | licence |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {p.name} | {p.version} | `{path}` | `{digest}` | {p.licence} |" for p, path, digest in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    parser.add_argument("--tarballs", type=Path, help="folder with the packages' .tgz files (default: npm pack)")
    args = parser.parse_args()
    if args.tarballs is None and shutil.which("npm") is None:
        print("error: npm not found (install Node.js, or pass --tarballs)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Package, str, str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for package in PACKAGES:
            tarball = fetch(package, Path(scratch), args.tarballs)
            for path, digest in vendor(package, tarball, args.out):
                rows.append((package, path, digest))
                print(f"{digest}  {path}")
    (args.out / "VENDORED.md").write_text(manifest(rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
