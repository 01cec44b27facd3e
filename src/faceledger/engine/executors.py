"""Where a batch job's image work runs: threads of this process, or the actors of a Ray cluster.

An executor maps ``func(engine, item)`` over items and yields the results in input order; an item whose call raised
yields the exception instead, so one bad file never stops a batch (as :meth:`Engine.map`). ``func`` must be a
module-level function (Ray sends it by name) and items should be small: paths, not pixels.

:class:`RayExecutor` builds one engine per actor from the engine's :class:`~faceledger.engine.EngineRecipe`, so the
models load in the worker and are checked there against the SHA-256 they were described with. Nothing biometric
enters Ray's object store: a worker refuses to return a result larger than Ray returns inline to the caller
(:data:`INLINE_LIMIT`), and larger results are what Ray would put in its shared-memory store and may spill to disk.
Embeddings and a face crop are a few kilobytes; the process that called the executor encrypts and commits them.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from faceledger.engine import Engine, EngineRecipe, _default_workers, ordered_map
from faceledger.errors import FaceledgerError

T = TypeVar("T")
Job = Callable[[Engine, Any], T]

# Ray returns a task's result inline, in the reply to the caller and never through the object store, when it is at
# most ``max_direct_call_object_size`` bytes: 100 KiB by default. A local cluster started here sets it explicitly.
INLINE_LIMIT = 100 * 1024

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    remote: bool  # True when the work runs in other processes: then the items must be paths, never pixels
    workers: int

    def map(self, func: Job[T], items: Iterable[Any]) -> Iterator[T | BaseException]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """The image work on ``workers`` threads of this process, sharing its engine (see :meth:`Engine.map`)."""

    remote = False

    def __init__(self, engine: Engine, workers: int | None = None) -> None:
        self.engine = engine
        self.workers = workers or _default_workers()

    def map(self, func: Job[T], items: Iterable[Any]) -> Iterator[T | BaseException]:
        engine = self.engine
        return ordered_map(lambda item: func(engine, item), items, self.workers)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayExecutor:
    """The image work on ``workers`` Ray actors, each with its own engine built from ``recipe``.

    ``address`` is a running cluster (``ray://host:10001`` through Ray Client, or ``host:6379`` / ``auto`` from a
    node of the cluster); without it a local cluster of ``workers`` CPUs is started here and stopped by
    :meth:`close`. An actor whose process dies is restarted and its task run again, up to ``retries`` times.
    ``workers`` defaults to the cluster's CPUs.
    """

    remote = True

    def __init__(
        self, recipe: EngineRecipe, *, address: str | None = None, workers: int | None = None, retries: int = 3
    ) -> None:
        ray = _import_ray()
        from ray.util import ActorPool

        self._ray = ray
        self._owned = False
        self._temp: str | None = None
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
                try:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise FaceledgerError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            else:
                ray.init(
                    num_cpus=workers or _default_workers(),
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    _temp_dir=self._temp_dir(),
                    _system_config={"max_direct_call_object_size": INLINE_LIMIT},
                )
            self._owned = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers and workers > cpus:  # an actor takes one CPU: the ones beyond would wait for ever
            self.close()
            raise FaceledgerError(f"the Ray cluster has {cpus} CPU(s): ask for at most {cpus} workers")
        self.workers = workers or max(1, cpus)
        actor = ray.remote(num_cpus=1, max_restarts=retries, max_task_retries=retries)(_Worker)
        self._actors = [actor.remote(recipe) for _ in range(self.workers)]
        try:
            problems = [p for p in ray.get([a.ready.remote() for a in self._actors]) if isinstance(p, Exception)]
        except ray.exceptions.RayError as exc:
            problems = [exc]
        if problems:
            self.close()
            raise FaceledgerError(f"the Ray workers could not build the engine: {_cause(problems[0])}") from None
        self._pool = ActorPool(self._actors)

    def map(self, func: Job[T], items: Iterable[Any]) -> Iterator[T | BaseException]:
        window = 2 * self.workers  # enough queued to keep every actor busy, without reading the whole input ahead
        pending = 0
        for item in items:
            self._pool.submit(lambda a, v: a.run.remote(func, v), item)
            pending += 1
            if pending >= window:
                yield self._next()
                pending -= 1
        for _ in range(pending):
            yield self._next()

    def _next(self) -> Any:
        try:
            return self._pool.get_next()
        except self._ray.exceptions.RayError as exc:  # the actor died more often than it may be restarted
            return FaceledgerError(f"a Ray worker failed: {_cause(exc)}")

    def close(self) -> None:
        for a in getattr(self, "_actors", []):
            self._ray.kill(a)
        self._actors = []
        if self._owned:
            self._ray.shutdown()
            self._owned = False
        if self._temp:  # only logs and sockets: nothing biometric is written there (see the module)
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def _temp_dir(self) -> str:
        chosen = os.environ.get("FACELEDGER_RAY_TEMP")
        if chosen:
            return chosen
        # Ray's socket paths live under its temp directory and must stay under 107 bytes: a short base
        self._temp = tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        return self._temp

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """A Ray actor: one engine, built once from the recipe, running one item at a time."""

    def __init__(self, recipe: EngineRecipe) -> None:
        self.engine: Engine | None = None
        self.problem: Exception | None = None
        try:
            self.engine = recipe.build()
        except Exception as exc:  # kept for ready(): Ray would only say the actor died in its constructor
            self.problem = _picklable(exc)

    def ready(self) -> int | Exception:
        return self.problem or os.getpid()

    def run(self, func: Job[Any], item: Any) -> Any:
        if self.engine is None:
            return self.problem
        try:
            result = func(self.engine, item)
        except Exception as exc:  # returned, not raised: Ray would retry a raising task and wrap the error
            return _picklable(exc)
        size = len(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        if size > INLINE_LIMIT:
            return FaceledgerError(
                f"a result of {size} bytes is over the {INLINE_LIMIT} that Ray returns inline; it would pass through "
                "Ray's object store, which may spill to disk, so it is not returned"
            )
        return result


def _picklable(exc: Exception) -> Exception:
    """``exc``, or a FaceledgerError with its message when it would not survive the trip back to the caller."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return FaceledgerError(f"{type(exc).__name__}: {exc}")
    return exc


def require_path(executor: Executor, item: Any) -> None:
    """Refuse an item a remote executor cannot take: anything but a path would travel as pixels through Ray's
    object store."""
    if executor.remote and not isinstance(item, str | os.PathLike):
        raise ValueError("batch workers take image paths: pixels would pass through their object store")


def make_executor(
    kind: str, engine: Engine, *, workers: int | None = None, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """The executor called ``kind`` (``local`` or ``ray``) for ``engine``'s work."""
    if kind == "local":
        if address:
            raise ValueError("a Ray address needs the ray executor")
        return LocalExecutor(engine, workers)
    if kind == "ray":
        return RayExecutor(engine.recipe, address=address, workers=workers)
    raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address where nothing listens: Ray itself retries for minutes, then exits the process."""
    if address == "auto":
        return
    client = address.startswith("ray://")
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":") if ":" in where else (where, "", "")
    number = int(port) if port.isdigit() else (10001 if client else 6379)
    try:
        socket.create_connection((host or where, number), timeout).close()
    except OSError as exc:
        raise FaceledgerError(
            f"cannot reach the Ray cluster at {address} ({host or where}:{number}: {exc.strerror or exc}); "
            "is it running, and is this the head's "
            + ("Ray Client port (ray://host:10001)?" if client else "GCS port (host:6379)?")
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FaceledgerError("the ray executor needs Ray: pip install 'faceledger[ray]'") from None
    return ray


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0]
