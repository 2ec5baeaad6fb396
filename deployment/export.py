"""``vpprl-export``: a ``vpprl-train`` checkpoint -> ``policy.onnx`` + ``manifest.json``, which
``deployment.onnx_policy.OnnxPolicy`` serves with onnxruntime alone (no ray, no torch on the server).

    vpprl-export checkpoint=outputs/<run>/checkpoint out=exported/
    vpprl-export checkpoint=outputs/<run>/checkpoint out=exported/ opset=13   # for an older onnxruntime

The graph is the whole deterministic policy (``deployment.torch_actors``); the export is checked against the
framework's own policy on sample observations (in and far outside the training range) before the manifest
is written, so a manifest only ever sits beside a graph that acts like its checkpoint.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ..envs.observation import HOME_FEATURES, OBSERVATION_SCHEMA_VERSION
from ..envs.tasks.base import check_ranges
from ..training.checkpoints import check_policy_checkpoint
from ..training.cli import check_known_keys, user_errors
from .policy_manifest import (
    CENTRALIZED,
    FORMAT_VERSION,
    HOME_ROWS,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    action_layout,
    global_feature_names,
    observation_layout,
    sha256_of,
)

DEFAULT_OPSET = 17
OPSET_RANGE = (13, 20)  # 20: the newest opset torch's TorchScript exporter writes
CHECK_TOLERANCE = 5e-5  # max |ONNX action - framework action| the export accepts (float32 sums over a
# few hundred inputs differ by ~1e-5 between runtimes; 5e-5 of a 10 kW range is 0.5 W)
log = logging.getLogger("vpprl.export")


@dataclass
class ExportConfig:
    """What to export. Validated when converted to this object (``OmegaConf.to_object``).

    :param checkpoint: the ``checkpoint/`` directory a ``vpprl-train`` run wrote (rllib_ppo, sb3_ppo or
        sb3_sac).
    :param out: the directory to write ``policy.onnx`` and ``manifest.json`` to (created if missing).
    :param opset: the ONNX opset of the graph; lower it for an older onnxruntime on the device.
    """

    checkpoint: str | None = None
    out: str = "export"
    opset: int = DEFAULT_OPSET

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError("checkpoint is required: vpprl-export checkpoint=<the checkpoint/ directory of "
                             "a vpprl-train run> out=<directory>")
        check_ranges("ExportConfig", opset=(self.opset, *OPSET_RANGE))
        if not self.out:
            raise ValueError("out must name a directory, got an empty string")


def _tasks(run: dict) -> list[str]:
    return [t.strip() for t in str(run.get("task", "price_arbitrage")).split("+")]


def _load(checkpoint: Path, agent: str) -> tuple[Any, Any, str, int]:
    """(framework policy, torch actor, observation kind, observation width) of a checkpoint."""
    from .torch_actors import RllibActor, Sb3Actor

    if agent == "rllib_ppo":
        import ray  # noqa: F401 (configures its loggers, which quiet_ray then turns down)

        from ..training.cli import quiet_ray
        from ..training.rllib_adapter import RllibPolicy

        quiet_ray()
        policy = RllibPolicy(checkpoint=checkpoint)
        return policy, RllibActor(policy.module), HOME_ROWS, int(policy.module.observation_space.shape[-1])
    from ..training.sb3_adapter import Sb3Policy

    policy = Sb3Policy(checkpoint=checkpoint, algorithm=agent)
    return policy, Sb3Actor(policy.model.policy), CENTRALIZED, int(policy.model.observation_space.shape[0])


def _centralized_homes(width: int, tasks: list[str]) -> int:
    g = len(global_feature_names(tasks))
    n, rest = divmod(width - g, len(HOME_FEATURES))
    if rest or n < 1:
        raise ValueError(f"checkpoint: its policy takes {width} observation values, which is no number of "
                         f"homes x {len(HOME_FEATURES)} home features + {g} global features of tasks {tasks}")
    return n


def _write_onnx(actor: Any, kind: str, width: int, path: Path, opset: int) -> None:
    """Trace ``actor`` into ``path`` with a dynamic leading axis (rows of homes, or a batch). torch's
    TorchScript exporter (``dynamo=False``): the torch.export-based one needs onnxscript, not a dependency."""
    import onnx
    import torch

    axis = "rows" if kind == HOME_ROWS else "batch"
    actor.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, chosen on purpose
        torch.onnx.export(actor, (torch.zeros((2, width), dtype=torch.float32),), str(path), dynamo=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                          dynamic_axes={INPUT_NAME: {0: axis}, OUTPUT_NAME: {0: axis}})
    onnx.checker.check_model(str(path))


def _sample_observations(kind: str, width: int) -> np.ndarray:
    """Observations in the training range (O(1) features) and far outside it (clipping, saturation)."""
    rng = np.random.default_rng(0)
    rows = 32 if kind == HOME_ROWS else 8
    typical = rng.normal(0.0, 1.0, (rows, width))
    extreme = rng.normal(0.0, 1.0, (rows, width)) * rng.choice([10.0, 100.0, 1000.0], (rows, 1))
    return np.concatenate([typical, extreme]).astype(np.float32)


def _check_against(policy: Any, path: Path, kind: str, width: int) -> float:
    """Max |ONNX - framework| action on sample observations; RuntimeError above ``CHECK_TOLERANCE``."""
    import onnxruntime as ort

    obs = _sample_observations(kind, width)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0].ravel()
    want = np.asarray(policy.act(obs), dtype=np.float32).ravel()
    diff = float(np.max(np.abs(got - want)))
    if not diff <= CHECK_TOLERANCE:
        raise RuntimeError(f"the exported graph acts unlike its checkpoint: max |difference| {diff:.3g} > "
                           f"{CHECK_TOLERANCE:g} on {len(obs)} sample observations")
    return diff


def _versions() -> dict[str, str]:
    out = {}
    for package in ("vpprl", "torch", "onnx", "onnxruntime", "ray", "stable_baselines3"):
        try:
            out[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return out


def export_policy(checkpoint: Path, out_dir: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``policy.onnx`` and ``manifest.json`` for a ``vpprl-train`` checkpoint into ``out_dir``;
    returns ``out_dir`` (what ``OnnxPolicy`` loads)."""
    checkpoint, out_dir = Path(checkpoint).expanduser(), Path(out_dir).expanduser()
    check_ranges("export_policy", opset=(opset, *OPSET_RANGE))
    run = check_policy_checkpoint("checkpoint", str(checkpoint))
    agent, tasks = run["agent"]["name"], _tasks(run)
    policy, actor, kind, width = _load(checkpoint, agent)
    num_homes = _centralized_homes(width, tasks) if kind == CENTRALIZED else None
    layout = observation_layout(kind, tasks, num_homes)
    if layout["width"] != width:
        raise ValueError(f"checkpoint: its policy takes rows of {width} observation values, but this vpprl "
                         f"builds {layout['width']} ({layout['home_width']} home + {layout['global_width']} "
                         f"global features for tasks {tasks})")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)  # no earlier export's manifest vouches for this graph
    model_path = out_dir / MODEL_FILE
    _write_onnx(actor, kind, width, model_path, opset)
    diff = _check_against(policy, model_path, kind, width)
    shield = run.get("shield") or {}
    manifest = {
        "format_version": FORMAT_VERSION,
        "algorithm": agent,
        "model_file": MODEL_FILE,
        "model_sha256": sha256_of(model_path),
        "onnx_opset": opset,
        "observation_schema_version": OBSERVATION_SCHEMA_VERSION,
        "observation": layout,
        "normalisation": {**actor.normalisation, "where": "inside the graph: serving feeds the env's "
                          "observation as is and gets actions in [-1, 1]"},
        "action": action_layout(kind, num_homes),
        "shield": {**shield, "in_graph": False,
                   "note": "the graph is the policy alone; a policy trained behind the shield (enabled: "
                           "true) should be served behind deployment.shield.Shield with these settings"},
        "training_config": run,
        "export_check": {"observations": len(_sample_observations(kind, width)), "max_abs_diff": diff,
                         "tolerance": CHECK_TOLERANCE},
        "exported_from": str(checkpoint.resolve()),
        "exported_with": _versions(),
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_dir


ConfigStore.instance().store(name="export_schema", node=ExportConfig)


@hydra.main(config_path="pkg://vpprl.configs.export", config_name="export", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    with user_errors("vpprl-export"):
        check_known_keys(cfg, ExportConfig)
        obj: ExportConfig = OmegaConf.to_object(cfg)  # runs the schema's validation
        check_policy_checkpoint("checkpoint", obj.checkpoint)
        out = Path(obj.out).expanduser()
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"out: {out.resolve()} is a file; give a directory to write "
                                     f"{MODEL_FILE} and {MANIFEST_FILE} into")
    path = export_policy(Path(obj.checkpoint), out, obj.opset)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    log.info("%s policy -> %s (%s, sha256 %s); checked against the checkpoint: max |difference| %.2g",
             manifest["algorithm"], path / MODEL_FILE, manifest["observation"]["kind"],
             manifest["model_sha256"][:12], manifest["export_check"]["max_abs_diff"])
    if manifest["shield"].get("enabled"):
        log.info("it trained behind the safety shield: serve it behind deployment.shield.Shield too (the "
                 "graph is the policy alone; settings in manifest.json's shield)")


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
