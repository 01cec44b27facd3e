"""Face embedding with an ArcFace-family recognizer (N x 3 x 112 x 112 in, N x D out) through onnxruntime."""

from __future__ import annotations

from typing import Any

import numpy as np


class ArcFaceRecognizer:
    """Turns aligned 112x112 BGR face crops into L2-normalised float32 vectors.

    ``mean``/``std`` normalise pixels before the network (``(x - mean) / std``), ``rgb`` swaps BGR to RGB.
    ``batch_size`` is the number of faces per forward pass (1 when the model's batch dimension is fixed). With one
    onnxruntime thread, batches of 1 to 4 cost the same per face and 8 or more cost more (cache), and big batches
    grow onnxruntime's memory pool (24 faces at once: peak 583 MiB with batches of 32, 432 MiB with 8); hence 4.
    ``flip`` averages each embedding with the one of the horizontally mirrored crop (costs a second pass).
    """

    def __init__(
        self,
        session: Any,
        *,
        mean: float = 127.5,
        std: float = 127.5,
        rgb: bool = True,
        card: Any = None,
        batch_size: int = 4,
        flip: bool = False,
    ) -> None:
        self.session = session
        self.card = card
        self.mean = float(mean)
        self.std = float(std)
        self.rgb = rgb
        self.flip = flip
        inp = session.get_inputs()[0]
        out = session.get_outputs()[0]
        self.input_name: str = inp.name
        self.output_name: str = out.name
        self.input_size = (int(inp.shape[2]), int(inp.shape[3]))
        fixed_batch = isinstance(inp.shape[0], int)
        self.batch_size = int(inp.shape[0]) if fixed_batch else max(1, batch_size)
        self.dim = int(out.shape[-1]) if isinstance(out.shape[-1], int) else int(getattr(card, "dim", 0) or 0)

    def _forward(self, crops: np.ndarray) -> np.ndarray:
        blob = crops[..., ::-1] if self.rgb else crops
        blob = np.ascontiguousarray(blob.transpose(0, 3, 1, 2), dtype=np.float32)
        if self.mean != 0.0 or self.std != 1.0:
            blob -= self.mean
            blob /= self.std
        outs = []
        for start in range(0, len(blob), self.batch_size):
            part = blob[start : start + self.batch_size]
            outs.append(self.session.run([self.output_name], {self.input_name: part})[0])
        return np.concatenate(outs).reshape(len(blob), -1).astype(np.float32, copy=False)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``crops (N, 112, 112, 3)`` uint8 BGR → ``(N, D)`` float32 unit vectors (``(0, D)`` for no crops)."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = self._forward(crops)
        if self.flip:
            vectors = vectors + self._forward(np.ascontiguousarray(crops[:, :, ::-1]))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
