"""``faceledger serve``: run the REST service under uvicorn.

The database must exist (``faceledger init``); API keys are managed with ``faceledger keys``. With
``--workers N`` each worker process loads the models and opens its own connection to the database. Before
starting, the command checks what every worker will need (the database, the master key) and refuses to start,
exit code 2, naming what is wrong.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from faceledger import config
from faceledger.errors import FaceledgerError
from faceledger.interfaces.cli.options import (
    EXIT_USAGE,
    MASTER_KEY_HINT,
    database,
    db_option,
    describe,
    json_option,
    key_file_option,
    registrar,
    with_hint,
)
from faceledger.interfaces.cli.render import fail, warn

__all__ = ["register", "serve_command"]


def _default(name: str) -> Any:
    from faceledger.interfaces.api.settings import ServiceSettings

    return ServiceSettings.__dataclass_fields__[name].default


def _setting(name: str, kind: click.ParamType, help: str, envvar: str | None = None) -> Any:
    """An option for the service setting ``name``, its default the setting's."""
    return click.option(
        "--" + name.replace("_", "-"), type=kind, default=_default(name), show_default=True, envvar=envvar, help=help
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@db_option()
@key_file_option(
    f"Master key file (default: ${config.KEY_FILE_ENV}, else the database path + '.key'; "
    f"${config.MASTER_KEY_ENV} wins).",
    envvar=config.KEY_FILE_ENV,
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
@_setting("max_upload_bytes", click.IntRange(min=1), "Largest request body (413 above).")
@_setting("max_pixels", click.IntRange(min=1), "Largest image in pixels, checked before decoding (422 above).")
@_setting("max_faces", click.IntRange(min=1), "Most faces per image (422 above).")
@_setting("max_images", click.IntRange(min=1), "Most images per enrollment request.")
@_setting(
    "rate_limit",
    click.IntRange(min=0),
    "Requests per API key per minute, for every role but operator (429 above; 0: no limit for any key); "
    "per worker on SQLite, shared on PostgreSQL.",
)
@_setting(
    "operator_rate_limit",
    click.IntRange(min=0),
    "Requests per operator key per minute (the identify clients: camera gateways; 0: no limit).",
)
@_setting("timeout", click.FloatRange(min=0.1), "Seconds before a request is answered 504.")
@click.option(
    "--model-concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Images processed by the models at once per worker (default: CPUs / workers).",
)
@_setting("threads", click.IntRange(min=1), "onnxruntime threads per model and request.", config.THREADS_ENV)
@_setting("purge_interval", click.FloatRange(min=0), "Seconds between scheduled retention runs (0: never).")
@click.option(
    "--detector",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar=config.DETECTOR_ENV,
    help="YuNet-compatible ONNX detector (default: bundled).",
)
@click.option(
    "--recognizer",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=config.RECOGNIZER_ENV,
    help="ArcFace-family ONNX recognizer file, or a bundled one by name: sface_2021dec_int8, sface_2021dec "
    "(default: the one the gallery's templates were made with, else sface_2021dec_int8).",
)
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per request: method, route template (never the path or query, which can name a subject), "
    "status, time.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@json_option("Print the effective settings as one JSON line first.")
def serve_command(
    db: str | None,
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

    from faceledger.interfaces.api.settings import ServiceSettings

    try:
        location = database(db)
        settings = ServiceSettings(
            db=location.path or location.text,
            key_file=key_file,
            model_concurrency=model_concurrency or max(1, (os.cpu_count() or 1) // workers),
            access_log=access_log,
            **limits,
        )
    except ValueError as exc:  # config.ConfigError is one
        raise click.UsageError(str(exc)) from None
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    _check(location, key_file)  # here, with a clear message, rather than in every worker
    if not _is_loopback(host) and ssl_certfile is None:
        warn(
            f"warning: listening on {host} without TLS; API keys travel in headers, so put the "
            "service behind a TLS proxy or pass --ssl-certfile/--ssl-keyfile"
        )
    os.environ.update(settings.to_env())
    scheme = "https" if ssl_certfile else "http"
    if as_json:
        click.echo(json.dumps({"url": f"{scheme}://{host}:{port}", "workers": workers, **settings.to_env()}))
    else:
        warn(f"serving {location.path} at {scheme}://{host}:{port} (docs at /docs, {workers} worker(s))")
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "access_log": False,  # uvicorn's names the full path; the service logs route templates (ServiceMiddleware)
        "log_level": log_level,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "timeout_graceful_shutdown": int(settings.timeout) + 5,
        "proxy_headers": False,
    }
    if workers > 1 and hasattr(socket, "SO_REUSEPORT") and sys.platform == "linux":
        _run_workers_on_own_sockets(APP, options)
    else:
        uvicorn.run(APP, **options)


APP = "faceledger.interfaces.api.app:app_from_env"


class _OwnListener(socket.socket):
    """The parent's placeholder for the address, bound with ``SO_REUSEPORT`` and never listening (so the kernel
    gives it no connection). Each worker process it is handed to unpickles it as a new socket of its own bound to
    the same address (:func:`_listen_own`): the kernel then spreads new connections evenly over the workers' queues.

    Written here because uvicorn has no option for it: with its one shared socket the kernel wakes the worker
    that waited last, which accepts every pending connection; 32 keep-alive clients (a load test, a gateway's
    connection pool) then often all land on one worker, and the service ran at 52 % of 2 CPUs (BENCHMARKS.md).
    """

    def __reduce__(self) -> tuple[Any, tuple[int, tuple[Any, ...]]]:
        return _listen_own, (int(self.family), self.getsockname())


def _reuse_port_socket(family: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _listen_own(family: int, address: tuple[Any, ...]) -> socket.socket:
    """In a worker process: its own listening socket on ``address`` (uvicorn calls ``listen``)."""
    sock = _reuse_port_socket(family, address)
    sock.set_inheritable(True)
    return sock


def _run_workers_on_own_sockets(app: str, options: dict[str, Any]) -> None:
    """``uvicorn.run(app, **options)`` with ``workers > 1``, each worker on its own ``SO_REUSEPORT`` socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    cfg = uvicorn.Config(app, **options)
    family = socket.AF_INET6 if ":" in str(options["host"]) else socket.AF_INET
    try:
        probe = _reuse_port_socket(family, (options["host"], options["port"]))
    except OSError as exc:
        fail(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}", EXIT_USAGE)
    placeholder = _OwnListener(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=probe.detach())
    try:
        Multiprocess(cfg, sockets=[placeholder]).run()
    except KeyboardInterrupt:
        pass
    finally:
        placeholder.close()


def _check(location: config.Database, key_file: Path | None) -> None:
    """Exit 2 naming the problem unless the gallery opens and its database and master key are ready; warn when
    no API key exists yet (every request needs one)."""
    from faceledger.gallery import Gallery

    try:
        with Gallery.open(location, key_file=config.key_file(location, key_file)) as gallery:
            if not gallery.api_keys():
                warn(
                    "no API keys yet; create one with "
                    f"`faceledger keys create OWNER --role admin --db {location.path or location} --actor YOU`"
                )
            checks = gallery.readiness(models=False)
    except FaceledgerError as exc:
        fail(describe(exc), EXIT_USAGE)
    for name, state in checks.items():
        if state != "ok":
            fail(with_hint(state, MASTER_KEY_HINT) if name == "master_key" else state, EXIT_USAGE)


register = registrar(serve_command)
