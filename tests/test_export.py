"""vpprl-export and OnnxPolicy: the ONNX graph acts like the framework's own policy (RllibPolicy, SB3's
predict) in and far outside the training range; the loader refuses a tampered model, another observation
schema version and another feature layout; serving needs neither torch nor ray; the CLI's user errors are one
line without a traceback. The real-training round trip is marked slow."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from vpprl.deployment.onnx_policy import OnnxPolicy
from vpprl.envs import FleetConfig, VppEnv
from vpprl.envs.devices import DEVICE_CLASSES
from vpprl.envs.observation import BASE_GLOBAL_FEATURES, HOME_FEATURES
from vpprl.training.checkpoints import write_run_config
from vpprl.training.config import AgentConfig, TrainConfig

ATOL = 5e-5  # = deployment.export.CHECK_TOLERANCE: float32 sums differ by ~1e-5 between ONNX Runtime and torch
PRICE_ARBITRAGE_GLOBALS = len(BASE_GLOBAL_FEATURES) + 7  # the task adds seven price features
ROW_WIDTH = len(HOME_FEATURES) + PRICE_ARBITRAGE_GLOBALS


def run_config(agent: str, num_homes: int = 3) -> TrainConfig:
    return TrainConfig(fleet=FleetConfig(num_homes=num_homes, seed=0), episode_hours=6.0,
                       eval_policies=["no_control"],
                       agent=AgentConfig(name=agent, hidden=[32, 32], train_batch_size=64, minibatch_size=32))


def observations(num_homes: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(centralized vector, per-home rows) of a real env step: observations inside the training range."""
    env = VppEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=num_homes, seed=seed), episode_hours=6.0)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    return obs, env.agent_observations()


def far_outside(obs: np.ndarray) -> np.ndarray:
    """The same observation blown far past the O(1) training range (saturates tanh layers, clips actions)."""
    rng = np.random.default_rng(7)
    return (obs * 50.0 + rng.normal(0.0, 100.0, obs.shape)).astype(np.float32)


# ----- fixtures: checkpoints with random weights, in the layout vpprl-train writes -------------------------
@pytest.fixture(scope="module")
def rllib_checkpoint(tmp_path_factory) -> tuple[Path, object]:
    """A home-batch module with random weights (head scaled up so actions leave [-1, 1] before clipping),
    saved where an Algorithm checkpoint keeps it (``learner_group/learner/rl_module/<id>``), with the run
    settings."""
    import gymnasium as gym
    import torch
    from vpprl.training.rllib_home_batch import SharedHomeModule

    torch.manual_seed(0)
    module = SharedHomeModule(observation_space=gym.spaces.Box(-np.inf, np.inf, (ROW_WIDTH,), np.float32),
                              action_space=gym.spaces.Box(-1.0, 1.0, (len(DEVICE_CLASSES),), np.float32),
                              model_config={"hidden": [32, 32], "activation": "tanh"})
    with torch.no_grad():
        module.pi[-1].weight.mul_(300.0)
    checkpoint = tmp_path_factory.mktemp("rllib") / "checkpoint"
    module.save_to_path(str(checkpoint / "learner_group" / "learner" / "rl_module" / "default_policy"))
    (checkpoint / "rllib_checkpoint.json").write_text("{}")  # the marker vpprl-train's checkpoints carry
    write_run_config(run_config("rllib_ppo", num_homes=4), checkpoint)
    return checkpoint, module


def sb3_checkpoint(root: Path, agent: str) -> tuple[Path, object]:
    """An untrained SB3 model built as vpprl-train builds it, head scaled up, saved as vpprl-train does."""
    import torch
    from vpprl.training import sb3_adapter

    cfg = run_config(agent)
    model = sb3_adapter.build_model(cfg, sb3_adapter.make_training_env(cfg))
    head = model.policy.action_net if agent == "sb3_ppo" else model.policy.actor.mu
    with torch.no_grad():
        head.weight.mul_(300.0)
    checkpoint = sb3_adapter.save(model, root / agent / "checkpoint")
    write_run_config(cfg, checkpoint)
    return checkpoint, model


@pytest.fixture(scope="module")
def sb3_ppo_checkpoint(tmp_path_factory) -> tuple[Path, object]:
    return sb3_checkpoint(tmp_path_factory.mktemp("sb3"), "sb3_ppo")


@pytest.fixture(scope="module")
def rllib_export(rllib_checkpoint, tmp_path_factory) -> Path:
    from vpprl.deployment.export import export_policy

    return export_policy(rllib_checkpoint[0], tmp_path_factory.mktemp("rllib_export"))


@pytest.fixture(scope="module")
def sb3_export(sb3_ppo_checkpoint, tmp_path_factory) -> Path:
    from vpprl.deployment.export import export_policy

    return export_policy(sb3_ppo_checkpoint[0], tmp_path_factory.mktemp("sb3_export"))


def copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(directory: Path, edit) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


# ----- (a) the graph acts like the framework's policy ------------------------------------------------------
def test_rllib_export_acts_like_rllib_policy_on_any_fleet_and_clips(rllib_checkpoint, rllib_export):
    from vpprl.training.rllib_adapter import RllibPolicy

    reference = RllibPolicy(checkpoint=rllib_checkpoint[0])  # loads the module the framework's way
    served = OnnxPolicy(rllib_export)
    for num_homes in (4, 13):  # the training fleet and a bigger one: the per-home policy transfers
        vector, rows = observations(num_homes)
        for obs in (vector, rows, far_outside(vector), far_outside(rows)):
            want = reference.act(obs)
            got = served.act(obs)
            assert got.dtype == np.float32 and got.shape == want.shape == (num_homes * len(DEVICE_CLASSES),)
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    wide = reference.act(far_outside(rows))
    assert np.any(np.abs(wide) == 1.0) and np.any(np.abs(wide) < 0.99)  # clipping exercised, not everywhere
    manifest = served.manifest
    assert manifest["model_sha256"] == hashlib.sha256((rllib_export / "policy.onnx").read_bytes()).hexdigest()
    assert manifest["algorithm"] == "rllib_ppo" and manifest["observation"]["kind"] == "home_rows"
    assert manifest["observation"]["home_features"] == list(HOME_FEATURES)
    globals_ = manifest["observation"]["global_features"]
    assert globals_[: len(BASE_GLOBAL_FEATURES)] == list(BASE_GLOBAL_FEATURES)
    assert globals_[-1] == "price_arbitrage.price_dearer_h_next_24h/24"
    assert manifest["observation"]["width"] == ROW_WIDTH and manifest["observation"]["num_homes"] is None
    assert manifest["action"]["device_classes"] == list(DEVICE_CLASSES)
    assert manifest["training_config"]["fleet"]["num_homes"] == 4
    assert manifest["observation_schema_version"] == 4


@pytest.mark.parametrize("agent", ["sb3_ppo", "sb3_sac"])
def test_sb3_export_acts_like_deterministic_predict(agent, sb3_ppo_checkpoint, tmp_path):
    from vpprl.deployment.export import export_policy
    from vpprl.training.sb3_adapter import Sb3Policy

    checkpoint = sb3_ppo_checkpoint[0] if agent == "sb3_ppo" else sb3_checkpoint(tmp_path, agent)[0]
    served = OnnxPolicy(export_policy(checkpoint, tmp_path / "export"))
    reference = Sb3Policy(checkpoint=checkpoint, algorithm=agent)  # SB3's own load and predict
    vector, _ = observations(3, seed=0)
    for obs in (vector, far_outside(vector)):
        np.testing.assert_allclose(served.act(obs), reference.act(obs), atol=ATOL, rtol=0)
    batch = np.stack([vector, far_outside(vector), np.zeros_like(vector)])
    np.testing.assert_allclose(served.act(batch), reference.act(batch).ravel(), atol=ATOL, rtol=0)
    wide = reference.act(far_outside(vector))
    assert np.all(np.abs(wide) <= 1.0) and np.any(np.abs(wide) == 1.0)  # PPO clips, SAC's tanh saturates
    manifest = served.manifest
    assert manifest["observation"]["kind"] == "centralized" and manifest["observation"]["num_homes"] == 3
    assert manifest["observation"]["width"] == 3 * len(HOME_FEATURES) + PRICE_ARBITRAGE_GLOBALS
    assert ("tanh" in manifest["normalisation"]["action"]) == (agent == "sb3_sac")


def test_act_rejects_observations_of_the_wrong_width(rllib_export, sb3_export):
    rllib, sb3 = OnnxPolicy(rllib_export), OnnxPolicy(sb3_export)
    with pytest.raises(ValueError, match=rf"shape \(4, {ROW_WIDTH + 1}\) is neither per-home rows "
                                         rf"\(N, {ROW_WIDTH}\)"):
        rllib.act(np.zeros((4, ROW_WIDTH + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="neither per-home rows"):
        rllib.act(np.zeros(2 * len(HOME_FEATURES) + PRICE_ARBITRAGE_GLOBALS + 1, dtype=np.float32))
    vector, _ = observations(4)  # a 4-home observation for a policy of exactly 3 homes
    with pytest.raises(ValueError, match=r"exactly 126 values \(3 homes x 36 home features \+ 18 global"):
        sb3.act(vector)


# ----- (c) the loader refuses what it cannot trust ---------------------------------------------------------
def test_loader_refuses_a_tampered_model(rllib_export, tmp_path):
    export = copy_export(rllib_export, tmp_path / "tampered")
    with open(export / "policy.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ValueError, match=r"policy.onnx: SHA-256 [0-9a-f]{64} does not match the manifest's "
                                         r"model_sha256"):
        OnnxPolicy(export)


def test_checkpoint_of_another_observation_schema_is_refused_at_load_and_resume(rllib_checkpoint, tmp_path):
    """A checkpoint's weights read the rows of the schema they were trained on: loading, exporting or resuming
    one of another schema (or one written before the schema was recorded) stops with the field and both
    versions named, before any weights are read."""
    from vpprl.deployment.export import export_policy
    from vpprl.envs import observation
    from vpprl.training.checkpoints import RUN_CONFIG, load_policy
    from vpprl.training.train import check_resumable

    current = observation.OBSERVATION_SCHEMA_VERSION
    src, _ = rllib_checkpoint
    for label, edit in (("older", lambda text: text.replace(f"observation_schema_version: {current}",
                                                           "observation_schema_version: 3")),
                        ("unrecorded", lambda text: text.replace(f"observation_schema_version: {current}\n", ""))):
        checkpoint = Path(shutil.copytree(src, tmp_path / label / "checkpoint"))
        settings = checkpoint / RUN_CONFIG
        text = settings.read_text()
        assert f"observation_schema_version: {current}\n" in text  # written by write_run_config
        settings.write_text(edit(text))
        was = "schema 3" if label == "older" else r"schema 3 or older \(no observation_schema_version"
        with pytest.raises(ValueError, match=f"checkpoint: .* was trained on observation {was}.*this vpprl builds "
                                             f"observation schema {current}"):
            load_policy(str(checkpoint))
        with pytest.raises(ValueError, match=f"checkpoint: .* trained on observation {was}"):
            export_policy(checkpoint, tmp_path / label / "export")
        cfg = run_config("rllib_ppo", num_homes=4)
        cfg.resume_from = str(checkpoint)
        with pytest.raises(ValueError, match=f"resume_from: .* trained on observation {was}"):
            check_resumable(cfg)


def test_loader_refuses_another_observation_schema_version(rllib_export, tmp_path, monkeypatch):
    from vpprl.envs import observation

    current = observation.OBSERVATION_SCHEMA_VERSION
    monkeypatch.setattr(observation, "OBSERVATION_SCHEMA_VERSION", current + 1)  # the running code moved on
    with pytest.raises(ValueError, match=f"observation_schema_version {current} differs from this vpprl's "
                                         f"OBSERVATION_SCHEMA_VERSION {current + 1}"):
        OnnxPolicy(rllib_export)
    monkeypatch.undo()
    export = copy_export(rllib_export, tmp_path / "old_schema")
    edit_manifest(export, lambda m: m.update(observation_schema_version=0))
    with pytest.raises(ValueError, match="observation_schema_version 0 differs"):
        OnnxPolicy(export)


def test_loader_refuses_a_changed_feature_layout(rllib_export, sb3_export, tmp_path, monkeypatch):
    from vpprl.envs import observation

    renamed = list(HOME_FEATURES)
    renamed[4] = "battery_soc_percent"
    monkeypatch.setattr(observation, "HOME_FEATURES", tuple(renamed))
    with pytest.raises(ValueError, match=r"observation.home_features differ from the running code's layout .*"
                                         r"position 4: 'battery_soc' in the export, 'battery_soc_percent'"):
        OnnxPolicy(rllib_export)
    monkeypatch.setattr(observation, "HOME_FEATURES", HOME_FEATURES + ("new_feature",))
    with pytest.raises(ValueError, match=r"home_features differ .*36 in the export, 37 here.*"
                                         r"the running code has 1 more: \['new_feature'\]"):
        OnnxPolicy(sb3_export)
    monkeypatch.undo()
    export = copy_export(rllib_export, tmp_path / "other_task")
    edit_manifest(export, lambda m: m["observation"].update(tasks=["peak_shaving"]))
    with pytest.raises(ValueError, match=r"observation.global_features differ .*"
                                         r"'price_arbitrage.price_next_import' in the export, "
                                         r"'peak_shaving.feeder_limit_per_home_kw'"):
        OnnxPolicy(export)
    export = copy_export(rllib_export, tmp_path / "width")
    edit_manifest(export, lambda m: m["observation"].update(width=ROW_WIDTH + 1))
    with pytest.raises(ValueError, match=rf"observation.width is {ROW_WIDTH + 1} in the export but "
                                         rf"{ROW_WIDTH}"):
        OnnxPolicy(export)


def test_loader_names_a_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a vpprl-export directory \\(no manifest.json"):
        OnnxPolicy(tmp_path)


# ----- (d) serving imports neither torch nor ray ------------------------------------------------------------
BLOCKED_SERVER = textwrap.dedent("""
    import importlib.abc, json, sys
    import numpy as np

    BLOCKED = ("torch", "ray", "stable_baselines3")

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"import of {name} blocked: serving must not need it")
            return None

    if sys.argv[4] == "block":  # torch and ray absent: loading and acting must not need them
        sys.meta_path.insert(0, Refuse())
    from vpprl.deployment.onnx_policy import OnnxPolicy

    policy = OnnxPolicy(sys.argv[1])
    np.save(sys.argv[3], policy.act(np.load(sys.argv[2])))
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
""")


def test_served_without_torch_or_ray(rllib_checkpoint, rllib_export, tmp_path):
    from vpprl.training.rllib_adapter import RllibPolicy

    script = tmp_path / "serve.py"
    script.write_text(BLOCKED_SERVER)
    vector, _ = observations(6)
    np.save(tmp_path / "obs.npy", vector)
    want = RllibPolicy(module=rllib_checkpoint[1]).act(vector)
    for mode in ("block", "installed"):  # absent: it works; installed: it still loads neither
        args = [str(script), str(rllib_export), str(tmp_path / "obs.npy"), str(tmp_path / "action.npy"), mode]
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [], mode
        np.testing.assert_allclose(np.load(tmp_path / "action.npy"), want, atol=ATOL, rtol=0)


# ----- the command line -------------------------------------------------------------------------------------
def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vpprl.deployment.export", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, check=False)


def test_cli_exports_and_writes_nothing_else(sb3_ppo_checkpoint, tmp_path):
    from vpprl.training.sb3_adapter import Sb3Policy

    done = cli(f"checkpoint={sb3_ppo_checkpoint[0]}", "out=exported", "opset=13", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no Hydra run folder, no log file
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["manifest.json", "policy.onnx"]
    assert "sb3_ppo policy ->" in done.stdout
    served = OnnxPolicy(tmp_path / "exported")
    assert served.manifest["onnx_opset"] == 13
    vector, _ = observations(3, seed=0)
    reference = Sb3Policy(checkpoint=sb3_ppo_checkpoint[0], algorithm="sb3_ppo")
    for obs in (vector, far_outside(vector)):
        np.testing.assert_allclose(served.act(obs), reference.act(obs), atol=ATOL, rtol=0)


@pytest.mark.parametrize(("args", "message"), [
    ((), "checkpoint is required: vpprl-export checkpoint="),
    (("checkpoint={missing}",), r"checkpoint: .*missing is not a vpprl-train checkpoint \(no vpprl_config"),
    (("checkpoint={ok}", "+opset_typo=3"), r"unknown key opset_typo; valid keys here: \['checkpoint'"),
    (("checkpoint={ok}", "opset=99"), "ExportConfig.opset must be in \\[13, 20\\], got 99"),
    (("checkpoint={ok}", "out={file}"), "out: .*a_file is a file; give a directory"),
])
def test_cli_user_errors_are_one_line_without_traceback(args, message, sb3_ppo_checkpoint, tmp_path):
    (tmp_path / "a_file").write_text("")
    paths = {"missing": tmp_path / "missing", "ok": sb3_ppo_checkpoint[0], "file": tmp_path / "a_file"}
    args = [a.format(**paths) for a in args]
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert re.search("vpprl-export: error: " + message, done.stderr), done.stderr


def test_cli_rejects_a_misspelt_key(tmp_path):
    done = cli("chekpoint=x", cwd=tmp_path)
    assert done.returncode != 0 and "chekpoint" in done.stderr and "Traceback" not in done.stderr


# ----- (b) a real training run's checkpoint, exported by the command line ----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("home_batch", "distribution"), [(True, "gaussian"), (False, "gaussian"),
                                                          (True, "squashed_gaussian")])
def test_trained_rllib_checkpoint_round_trip(home_batch, distribution, tmp_path):
    from vpprl.training.config import TrainingSettings
    from vpprl.training.rllib_adapter import RllibPolicy
    from vpprl.training.train import train

    cfg = run_config("rllib_ppo", num_homes=4)
    cfg.agent = AgentConfig(name="rllib_ppo", hidden=[32, 32], train_batch_size=96, minibatch_size=32,
                            num_epochs=1, home_batch=home_batch, num_envs_per_env_runner=1,
                            action_distribution=distribution)
    cfg.training = TrainingSettings(iterations=1, log_every=1)
    cfg.evaluate, cfg.tensorboard, cfg.output_dir = False, False, str(tmp_path / "run")
    checkpoint = train(cfg)["checkpoint"]
    done = cli(f"checkpoint={checkpoint}", f"out={tmp_path / 'exported'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    served, reference = OnnxPolicy(tmp_path / "exported"), RllibPolicy(checkpoint=checkpoint)
    assert served.manifest["training_config"]["agent"]["home_batch"] is home_batch
    assert served.manifest["shield"]["enabled"] is True and served.manifest["shield"]["in_graph"] is False
    for num_homes in (4, 40):
        vector, rows = observations(num_homes)
        for obs in (vector, rows, far_outside(rows)):
            np.testing.assert_allclose(served.act(obs), reference.act(obs), atol=ATOL, rtol=0)
    if home_batch:  # the served action from RLlib's own forward pass: tanh (squashed) or clip of its mean
        import torch

        rows = far_outside(observations(4)[1])
        with torch.no_grad():
            logits = reference.module.forward_inference({"obs": torch.as_tensor(rows)})["action_dist_inputs"]
        mean = logits.numpy()[:, : len(DEVICE_CLASSES)]
        squashed = distribution == "squashed_gaussian"
        want = np.tanh(mean) if squashed else np.clip(mean, -1.0, 1.0)
        np.testing.assert_allclose(served.act(rows), want.ravel(), atol=ATOL, rtol=0)
        assert served.manifest["normalisation"]["action"].startswith("tanh" if squashed else "clip")
