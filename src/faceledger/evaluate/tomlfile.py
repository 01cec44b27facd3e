"""Write one table of a TOML file (model card or policy) and leave every other line of the file as it was.

The standard library reads TOML but does not write it; the files faceledger edits are small and hand-written,
with comments worth keeping, so the table is rendered here and spliced into the text. The result is parsed
again and compared with the original: if anything besides that table changed, nothing is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TomlEditError", "render_table", "replace_table", "set_key", "write_table", "write_text_atomic"]


class TomlEditError(ValueError):
    """The TOML file could not be edited safely; the message names the file and the reason."""


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        items = [_value(v) for v in value]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) <= 90:
            return one_line
        lines, current = [], ""
        for item in items:
            if current and len(current) + len(item) + 2 > 100:
                lines.append(current.rstrip())
                current = ""
            current += item + ", "
        lines.append(current.rstrip())
        return "[\n" + "\n".join("    " + ln for ln in lines) + "\n]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_table(name: str, values: Mapping[str, Any], comment: str = "") -> str:
    """``[name]`` followed by ``key = value`` lines (scalars and flat lists), with an optional comment
    block."""
    out = []
    for line in comment.splitlines():
        out.append(f"# {line}".rstrip())
    out.append(f"[{name}]")
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            raise ValueError(f"unsupported TOML key {key!r}")
        out.append(f"{key} = {_value(value)}")
    return "\n".join(out) + "\n"


def _header(line: str) -> str | None:
    m = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$", line)
    return m.group(1) if m else None


def replace_table(text: str, name: str, table_text: str, where: str = "<toml>") -> str:
    """``text`` with table ``name`` (and its sub-tables) replaced by ``table_text``, or with it appended.

    Comment lines directly above the old table header are replaced too (they describe the old table). Raises
    :class:`TomlEditError` when the original does not parse or when the edit would change anything else.
    """
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlEditError(f"{where}: not valid TOML ({exc}); fix it before writing a [{name}] table") from exc
    lines = text.splitlines()
    start = end = None
    for i, line in enumerate(lines):
        header = _header(line)
        if header is None:
            continue
        if start is None and (header == name or header.startswith(name + ".")):
            start = i
        elif start is not None and not (header == name or header.startswith(name + ".")):
            end = i
            break
    if start is None:
        body = text.rstrip("\n")
        new_text = (body + "\n\n" if body else "") + table_text
    else:
        if end is None:
            end = len(lines)
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        # keep blank lines between the table and the next header
        while end > start and not lines[end - 1].strip():
            end -= 1
        head = "\n".join(lines[:start]).rstrip("\n")
        tail = "\n".join(lines[end:])
        new_text = (head + "\n\n" if head else "") + table_text + ("\n" + tail if tail.strip() else "")
        if not new_text.endswith("\n"):
            new_text += "\n"
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlEditError(f"{where}: writing [{name}] would break the file ({exc}); nothing written") from exc
    before.pop(name, None)
    rendered = after.pop(name, None)
    if before != after:
        raise TomlEditError(
            f"{where}: replacing [{name}] would change other parts of the file; nothing written. Move "
            f"[{name}] "
            "to the end of the file, or remove it, and run again"
        )
    if rendered != tomllib.loads(table_text).get(name):
        raise TomlEditError(f"{where}: the [{name}] table did not round-trip; nothing written")
    return new_text


def write_table(path: Path, name: str, values: Mapping[str, Any], comment: str = "") -> str:
    """Replace (or add) table ``name`` in the TOML file at ``path`` atomically; returns the new text.

    A missing file is created holding just the table.
    """
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise TomlEditError(f"{path}: cannot read ({exc})") from exc
    new_text = replace_table(text, name, render_table(name, values, comment), str(path))
    write_text_atomic(path, new_text)
    return new_text


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_key(text: str, table: str, key: str, value: Any, where: str = "<toml>") -> str:
    """``text`` with ``key`` of ``[table]`` set to ``value``; a comment after the old value is kept.

    The key is added right after the table header when the table lacks it. Raises :class:`TomlEditError` when
    the table is missing or when the edit would change anything besides that one value.
    """
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlEditError(f"{where}: not valid TOML ({exc})") from exc
    if not isinstance(before.get(table), dict):
        raise TomlEditError(f"{where}: no [{table}] table to set {key} in")
    lines = text.splitlines()
    header = next((i for i, ln in enumerate(lines) if _header(ln) == table and "[[" not in ln), None)
    if header is None:
        raise TomlEditError(f"{where}: [{table}] is not written as a table header; set {table}.{key} by hand")
    rendered = _value(value)
    end = next((i for i in range(header + 1, len(lines)) if _header(lines[i]) is not None), len(lines))
    pattern = re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#]*?)(\s*#.*)?$")
    for i in range(header + 1, end):
        m = pattern.match(lines[i])
        if m:
            lines[i] = f"{m.group(1)}{rendered}{'  ' + m.group(3).strip() if m.group(3) else ''}"
            break
    else:
        lines.insert(header + 1, f"{key} = {rendered}")
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    try:
        after = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlEditError(f"{where}: setting {table}.{key} would break the file ({exc}); nothing written") from exc
    expected = {**before, table: {**before[table], key: tomllib.loads(f"v = {rendered}")["v"]}}
    if after != expected:
        raise TomlEditError(f"{where}: setting {table}.{key} would change other values; set it by hand")
    return new_text
