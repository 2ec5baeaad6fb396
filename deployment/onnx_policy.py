"""Serve an exported policy (``vpprl-export``) with onnxruntime alone: no ray, no torch.

``OnnxPolicy(directory)`` checks the export before it acts (the model's SHA-256 against the manifest, the
observation schema version and feature layout against the running code) and then acts like the
framework's policy on the same observations: ``RllibPolicy`` (per-home rows or the centralized vector, any
fleet size) or ``Sb3Policy`` (the centralized vector of its training fleet).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..agents.policy import Policy
from .policy_manifest import CENTRALIZED, HOME_ROWS, MANIFEST_FILE, check_manifest


class OnnxPolicy(Policy):
    """A policy exported by ``vpprl-export``: ``act(obs)`` -> home-major action (N * D,) float32 in [-1, 1].

    The graph is the policy alone: a policy trained behind the shield should be served behind
    ``deployment.shield.Shield`` too (``manifest["shield"]`` holds its training settings)."""

    def __init__(self, directory: str | Path, threads: int | None = None) -> None:
        """:param threads: onnxruntime intra-op threads (None: its default, every core)."""
        root = Path(directory).expanduser()
        manifest_path = root / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{root.resolve()} is not a vpprl-export directory "
                                    f"(no {MANIFEST_FILE} in it)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{manifest_path}: not valid JSON ({err})") from None
        model_path = root / str(self.manifest.get("model_file", ""))
        if not model_path.is_file():
            raise FileNotFoundError(f"{root.resolve()}: the manifest's model_file "
                                    f"{self.manifest.get('model_file')!r} is missing")
        check_manifest(self.manifest, model_path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        obs = self.manifest["observation"]
        self.kind: str = obs["kind"]
        self.width: int = int(obs["width"])
        self.home_width: int = int(obs["home_width"])
        self.num_homes: int | None = obs.get("num_homes")
        self.name = f"{self.manifest.get('algorithm', 'policy')}_onnx"
        self._input = self.session.get_inputs()[0].name
        graph_width = self.session.get_inputs()[0].shape[-1]
        if graph_width != self.width:
            raise ValueError(f"{model_path.name}: the graph takes {graph_width} observation values per row, "
                             f"the manifest's observation.width is {self.width}")

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        batch = self._rows(x) if self.kind == HOME_ROWS else self._centralized(x)
        return self.session.run(None, {self._input: batch})[0].astype(np.float32, copy=False).ravel()

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """Per-home rows (N, F + G) from rows passed as is or from the centralized vector (N * F + G,)."""
        if x.ndim == 2 and x.shape[1] == self.width and x.shape[0] >= 1:
            return np.ascontiguousarray(x)
        f, g = self.home_width, self.width - self.home_width
        n, rest = divmod(x.size - g, f)
        if x.ndim != 1 or rest or n < 1:
            raise ValueError(f"observation of shape {x.shape} is neither per-home rows (N, {self.width}) nor "
                             f"a centralized vector of N x {f} home features + {g} global features")
        rows = np.empty((n, self.width), dtype=np.float32)
        rows[:, :f] = x[: n * f].reshape(n, f)
        rows[:, f:] = x[n * f:]
        return rows

    def _centralized(self, x: np.ndarray) -> np.ndarray:
        """A batch (B, N * F + G) from one centralized observation or a batch of them."""
        assert self.kind == CENTRALIZED
        if x.shape[-1:] == (self.width,) and x.ndim in (1, 2) and x.size:
            return x.reshape(-1, self.width)
        algorithm, homes = self.manifest.get("algorithm"), self.num_homes
        raise ValueError(f"observation of shape {x.shape}: this {algorithm} policy acts on the centralized "
                         f"observation of exactly {self.width} values ({homes} homes x {self.home_width} "
                         f"home features + {self.width - homes * self.home_width} global features), shape "
                         f"({self.width},) or (batch, {self.width})")
