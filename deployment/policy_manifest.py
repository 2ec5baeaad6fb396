"""The manifest beside an exported ``policy.onnx``: what the graph expects and returns, and the checks a
server runs before trusting it.

The exporter writes it (``deployment.export``); the loader (``deployment.onnx_policy``) checks it against the
model file (SHA-256) and against the running code's observation layout, so a policy never silently acts on
features it was not trained on. Imports neither torch nor ray (serving needs neither).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..envs import observation
from ..envs.devices import DEVICE_CLASSES
from ..envs.tasks import TASKS

FORMAT_VERSION = 1  # of the manifest itself; bump when its fields change meaning
MODEL_FILE = "policy.onnx"
MANIFEST_FILE = "manifest.json"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"
HOME_ROWS = "home_rows"  # one row per home (N, F + G), any N: the RLlib shared per-home policy
CENTRALIZED = "centralized"  # the flat fleet observation (B, N * F + G) of a fixed fleet: the SB3 baselines
KINDS = (HOME_ROWS, CENTRALIZED)

ACTION_MAPPING = ("a in [-1, 1] per device maps to kW by envs.devices.base.map_action: "
                  "p_def + a * (p_hi - p_def) for a >= 0, p_def + a * (p_def - p_lo) for a < 0, "
                  "where p_lo is the device's lowest power this step, p_def its power under its own "
                  "control and p_hi its highest (kW drawn from the home's meter: positive consumes, "
                  "negative injects); 0 leaves the device to its own control; entries for devices a "
                  "home does not own are ignored")


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (a model can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def global_feature_names(tasks: Sequence[str]) -> tuple[str, ...]:
    """The global features the running code builds for these tasks, in ``VppEnv``'s order."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"observation.tasks names {unknown}, which this vpprl does not know "
                         f"(known tasks: {sorted(TASKS)})")
    task_features = tuple(f"{t}.{o}" for t in tasks for o in TASKS[t].obs_names)
    return tuple(observation.BASE_GLOBAL_FEATURES) + task_features


def observation_layout(kind: str, tasks: Sequence[str], num_homes: int | None = None) -> dict[str, Any]:
    """The observation section of a manifest for the running code's features."""
    if kind not in KINDS:
        raise ValueError(f"observation kind must be one of {list(KINDS)}, got {kind!r}")
    home = list(observation.HOME_FEATURES)
    glob = list(global_feature_names(tasks))
    layout: dict[str, Any] = {
        "kind": kind, "input_name": INPUT_NAME, "tasks": list(tasks),
        "home_features": home, "global_features": glob, "home_width": len(home), "global_width": len(glob),
    }
    if kind == HOME_ROWS:
        width = len(home) + len(glob)
        layout.update(num_homes=None, width=width, input_shape=["rows", width],
                      description="one row per home: its home features, then the global features; any number "
                                  "of homes; a centralized vector (N x home_width + global_width) is also "
                                  "accepted")
    else:
        if num_homes is None or num_homes < 1:
            raise ValueError(f"a centralized layout needs num_homes >= 1, got {num_homes!r}")
        width = num_homes * len(home) + len(glob)
        layout.update(num_homes=num_homes, width=width, input_shape=["batch", width],
                      description=f"the flat fleet observation: {num_homes} homes' features row-major, then "
                                  f"the global features; exactly {num_homes} homes")
    return layout


def action_layout(kind: str, num_homes: int | None) -> dict[str, Any]:
    """The action section: device columns per home, their order and what a value means in kW."""
    d = len(DEVICE_CLASSES)
    shape: list[Any] = ["rows", d] if kind == HOME_ROWS else ["batch", int(num_homes or 0) * d]
    return {"output_name": OUTPUT_NAME, "output_shape": shape, "device_classes": list(DEVICE_CLASSES),
            "per_home_width": d, "range": [-1.0, 1.0],
            "order": "home-major: home i's device class j at flat index i * per_home_width + j",
            "mapping": ACTION_MAPPING}


def _first_difference(ours: Sequence[str], theirs: Sequence[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"first difference at position {i}: {a!r} in the export, {b!r} in the running code"
    if len(ours) != len(theirs):
        extra = list(ours[len(theirs):]) or list(theirs[len(ours):])
        side = "the export" if len(ours) > len(theirs) else "the running code"
        return f"{side} has {len(extra)} more: {extra[:5]}"
    return "identical"


def check_manifest(manifest: dict[str, Any], model_path: Path) -> None:
    """ValueError naming the field when the model file, the schema version or the feature layout of an
    export differs from what the manifest records and the running code builds."""
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{MANIFEST_FILE}: format_version {version!r} is not the one this vpprl reads "
                         f"({FORMAT_VERSION}); re-export the checkpoint with this vpprl")
    digest = sha256_of(model_path)
    if digest != manifest.get("model_sha256"):
        raise ValueError(f"{model_path.name}: SHA-256 {digest} does not match the manifest's model_sha256 "
                         f"{manifest.get('model_sha256')!r}: the model file changed after export")
    schema = manifest.get("observation_schema_version")
    if schema != observation.OBSERVATION_SCHEMA_VERSION:
        raise ValueError(f"{MANIFEST_FILE}: observation_schema_version {schema!r} differs from this vpprl's "
                         f"OBSERVATION_SCHEMA_VERSION {observation.OBSERVATION_SCHEMA_VERSION}: the policy "
                         f"was trained on observations this code no longer builds")
    obs = manifest.get("observation") or {}
    kind = obs.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{MANIFEST_FILE}: observation.kind must be one of {list(KINDS)}, got {kind!r}")
    expected = observation_layout(kind, list(obs.get("tasks") or []), obs.get("num_homes"))
    for key in ("home_features", "global_features"):
        if list(obs.get(key) or []) != expected[key]:
            raise ValueError(f"{MANIFEST_FILE}: observation.{key} differ from the running code's layout "
                             f"({len(obs.get(key) or [])} in the export, {len(expected[key])} here; "
                             f"{_first_difference(list(obs.get(key) or []), expected[key])})")
    for key in ("home_width", "global_width", "width"):
        if obs.get(key) != expected[key]:
            raise ValueError(f"{MANIFEST_FILE}: observation.{key} is {obs.get(key)!r} in the export but "
                             f"{expected[key]} in the running code's layout")
    devices = (manifest.get("action") or {}).get("device_classes")
    if devices != list(DEVICE_CLASSES):
        raise ValueError(f"{MANIFEST_FILE}: action.device_classes {devices!r} differ from the running code's "
                         f"{list(DEVICE_CLASSES)}")
