"""OpenVINO as a second CPU runtime, for the recognizers whose model card names it (``runtime = "openvino"``).

The bundled ``sface_2021dec_bf16`` runs SFace's float32 graph with OpenVINO's bfloat16 inference precision: on CPUs
with bf16 matrix units (Intel AMX, AVX-512 BF16) its convolutions run on them, about twice as fast per face as
onnxruntime's int8 kernels on one thread (figures in benchmarks/README.md). OpenVINO is an optional dependency
(``pip install 'faceledger[openvino]'``); nothing else in faceledger needs it.

:class:`OpenVINOSession` offers the three methods of ``onnxruntime.InferenceSession`` the wrappers call
(``get_inputs``, ``get_outputs``, ``run``), so :class:`~faceledger.vision.embedding.ArcFaceRecognizer` and the router's
signature checks work unchanged. It is written here because OpenVINO has no such adapter of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceledger.errors import ModelError

PRECISIONS = ("bf16", "f32")
WORKERS_ENV = "FACELEDGER_WORKERS"
_CAPABILITY = {"bf16": "BF16", "f32": "FP32"}


@dataclass(frozen=True)
class Port:
    """An input or output as onnxruntime describes one: its name and shape (a string for a dynamic dimension)."""

    name: str
    shape: list[int | str]


def _ports(ports: Sequence[Any]) -> list[Port]:
    out = []
    for port in ports:
        shape: list[int | str] = []
        for i, dim in enumerate(port.get_partial_shape()):
            shape.append(dim.get_length() if dim.is_static else ("N" if i == 0 else f"d{i}"))
        out.append(Port(port.get_any_name(), shape))
    return out


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _streams() -> int:
    """Execution streams: as many as inferences run at once in this process, which is the threads
    :meth:`faceledger.Engine.map` uses (``FACELEDGER_WORKERS``, else the CPUs; a service worker sets it to its
    ``--model-concurrency``). An idle stream's threads still wake and spin: with 2 streams in each of 2 service
    workers on 2 CPUs, 80.6 requests/s against 96.2 with one each."""
    given = os.environ.get(WORKERS_ENV, "")
    return int(given) if given.isdigit() and int(given) > 0 else max(1, _cpus())


class OpenVINOSession:
    """A model compiled by OpenVINO for the CPU at ``precision`` (``"bf16"`` or ``"f32"``), ``threads`` per inference.

    One execution stream per concurrent caller (:func:`_streams`), so that several threads
    (:meth:`faceledger.Engine.map`) run inferences side by side as they do on an onnxruntime session; each thread
    has its own infer request (OpenVINO's requests are not shared between threads).
    """

    def __init__(self, data: bytes, *, threads: int, precision: str, where: str) -> None:
        try:
            import openvino
        except ImportError:
            raise ModelError(
                f"{where} runs on OpenVINO, which is not installed: pip install 'faceledger[openvino]' "
                "(or use the default recognizer, sface_2021dec_int8, on onnxruntime)"
            ) from None
        if precision not in PRECISIONS:
            raise ModelError(f"{where}: OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        core = openvino.Core()
        capabilities = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        if _CAPABILITY[precision] not in capabilities:
            raise ModelError(
                f"{where} needs a CPU with {precision} instructions (Intel AMX or AVX-512 BF16), and this one offers "
                f"{', '.join(sorted(capabilities))}: its calibration was measured at {precision}, so it is not run at "
                "another precision. Use the default recognizer, sface_2021dec_int8"
            )
        streams = _streams()
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": streams * max(1, threads),
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            # OpenVINO pins its stream threads to cores as if it owned the machine; two service workers then
            # pinned theirs to the same cores and left the CPUs 80 % busy (BENCHMARKS.md). The OS places them.
            "ENABLE_CPU_PINNING": False,
        }

        try:
            model = core.read_model(data, b"")
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses
            raise ModelError(f"{where}: OpenVINO cannot compile this model ({str(exc).splitlines()[0][:200]})") from exc
        self._inputs = _ports(self._compiled.inputs)
        self._outputs = _ports(self._compiled.outputs)
        self._local = threading.local()
        self.precision = precision

    def get_inputs(self) -> list[Port]:
        """The model's inputs."""
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        """The model's outputs."""
        return list(self._outputs)

    def run(self, output_names: Sequence[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs ``output_names`` (all when None) for the inputs in ``feed``, as onnxruntime's ``run``."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer({name: np.ascontiguousarray(value) for name, value in feed.items()})
        names = [p.name for p in self._outputs] if output_names is None else list(output_names)
        return [request.get_tensor(name).data.copy() for name in names]
