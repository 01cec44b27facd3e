"""``faceledger serve``: run the REST service under uvicorn.

The database must exist (``faceledger init``); API keys are managed with ``faceledger keys``. With
``--workers N`` each worker process loads the models and opens its own connection to the database.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from faceledger.errors import FaceledgerError

__all__ = ["register", "serve_command"]


def _default(name: str) -> Any:
    from faceledger.interfaces.api.settings import ServiceSettings

    return ServiceSettings.__dataclass_fields__[name].default


def _db_path(ctx: click.Context, db: Path | None) -> Path:
    if db is not None:
        return db
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, dict) and obj.get("db"):
        return Path(obj["db"])
    if root.params.get("db"):
        return Path(root.params["db"])
    return Path(os.environ.get("FACELEDGER_DB") or "faceledger.db")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Database file (default: $FACELEDGER_DB or ./faceledger.db).",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FACELEDGER_KEY_FILE",
    help="Master key file (default: the database path + '.key'; $FACELEDGER_MASTER_KEY wins).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback should sit behind TLS (--ssl-* or a proxy).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes; each loads the models and opens its own database connection.",
)
@click.option(
    "--max-upload-bytes",
    type=click.IntRange(min=1),
    default=_default("max_upload_bytes"),
    show_default=True,
    help="Largest request body (413 above).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=_default("max_pixels"),
    show_default=True,
    help="Largest image in pixels, checked before decoding (422 above).",
)
@click.option(
    "--max-faces",
    type=click.IntRange(min=1),
    default=_default("max_faces"),
    show_default=True,
    help="Most faces per image (422 above).",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=_default("max_images"),
    show_default=True,
    help="Most images per enrollment request.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=0),
    default=_default("rate_limit"),
    show_default=True,
    help="Requests per API key per minute and worker (429 above; 0: no limit).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=_default("timeout"),
    show_default=True,
    help="Seconds before a request is answered 504.",
)
@click.option(
    "--model-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Images processed by the models at once per worker (default: CPUs / workers).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=_default("threads"),
    show_default=True,
    envvar="FACELEDGER_THREADS",
    help="onnxruntime threads per model and request.",
)
@click.option(
    "--purge-interval",
    type=click.FloatRange(min=0),
    default=_default("purge_interval"),
    show_default=True,
    help="Seconds between scheduled retention runs (0: never).",
)
@click.option(
    "--detector",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FACELEDGER_DETECTOR",
    help="YuNet-compatible ONNX detector (default: bundled).",
)
@click.option(
    "--recognizer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="FACELEDGER_RECOGNIZER",
    help="ArcFace-family ONNX recognizer (default: bundled).",
)
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per request (method, path, status; never bodies).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print the effective settings as one JSON line first.")
@click.pass_context
def serve_command(
    ctx: click.Context,
    db: Path | None,
    key_file: Path | None,
    host: str,
    port: int,
    workers: int,
    model_concurrency: int | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    access_log: bool,
    log_level: str,
    as_json: bool,
    **limits: Any,
) -> None:
    """Run the REST service (OpenAPI docs at /docs, routes under /v1).

    Create keys first: `faceledger keys create OWNER --role ROLE`. Every request needs one
    (`Authorization: Bearer <token>`).
    """
    import uvicorn

    from faceledger.gallery import Gallery
    from faceledger.interfaces.api.settings import ServiceSettings

    path = _db_path(ctx, db)
    cpus = os.cpu_count() or 1
    try:
        settings = ServiceSettings(
            db=path,
            key_file=key_file,
            model_concurrency=model_concurrency or max(1, cpus // workers),
            **limits,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    # Fail here, with a clear message, rather than in every worker.
    try:
        with Gallery.open(path, key_file=settings.resolved_key_file) as gallery:
            if not gallery.api_keys():
                click.echo(
                    "faceledger: no API keys yet; create one with "
                    f"`faceledger keys create OWNER --role admin --db {path} --actor YOU`",
                    err=True,
                )
        from faceledger.ledger.crypto import load_master_key

        load_master_key(settings.resolved_key_file)
    except FaceledgerError as exc:
        click.echo(f"faceledger: {exc}", err=True)
        sys.exit(2)
    if not _is_loopback(host) and ssl_certfile is None:
        click.echo(
            f"faceledger: warning: listening on {host} without TLS; API keys travel in headers, so put the "
            "service behind a TLS proxy or pass --ssl-certfile/--ssl-keyfile",
            err=True,
        )
    os.environ.update(settings.to_env())
    scheme = "https" if ssl_certfile else "http"
    if as_json:
        click.echo(json.dumps({"url": f"{scheme}://{host}:{port}", "workers": workers, **settings.to_env()}))
    else:
        click.echo(
            f"faceledger: serving {path} at {scheme}://{host}:{port} (docs at /docs, {workers} worker(s))", err=True
        )
    uvicorn.run(
        "faceledger.interfaces.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=int(settings.timeout) + 5,
        proxy_headers=False,
    )


def register(group: click.Group) -> None:
    """Add ``serve`` to ``group`` (the ``faceledger`` main group)."""
    group.add_command(serve_command)
