"""Every command and snippet in the README runs, as written, from a fresh directory.

Commands run with a few *budget* arguments appended (one training iteration, ten homes, a few seconds of
benchmark) so that the suite stays short on two cores; the command itself is untouched, so a renamed
option, a missing config group or a wrong path still fails here. Three kinds of command cannot run on a
CI machine and are listed explicitly (a README command in none of the lists fails the test):
``COMPOSED_ONLY`` (need a SLURM or a Ray cluster: their Hydra config is composed and validated instead),
``NOT_RUN`` (build CityLearn's own environment) and ``SETUP`` (the two set-up lines, which
are what CI itself runs).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

TRAIN_BUDGET = ("training.iterations=1 training.log_every=1 training.time_budget_s=null training.checkpoint_every=0 "
                "agent.train_batch_size=400 agent.minibatch_size=200 agent.num_epochs=1 "
                "agent.num_envs_per_env_runner=2 'eval_seeds=[100]' 'eval_start_days=[30]'")
BUDGET = {  # command prefix -> arguments appended
    "vpprl-train": TRAIN_BUDGET,
    "vpprl-evaluate": "num_homes=10 mpc.replan_every_h=6",
    "vpprl-simulate": "--homes 20 --days 1",
    "tensorboard": "--inspect",
    "python benchmarks/oracle_solve.py": "--homes 10 --tasks price_arbitrage --out {tmp}/r.json",
    "python benchmarks/shield_time.py": "--sizes 200 --seconds 0.2 --out {tmp}/r.json",
    "python benchmarks/env_throughput.py": "--sizes 100 --seconds 0.2 --out {tmp}/r.json",
    "python benchmarks/train_throughput.py": "--quick --iterations 1 --out {tmp}/r.json",
    "python benchmarks/train_quality.py": "--quick --minutes 0.1 --work-dir {tmp}/tq --out {tmp}/r.json",
    "python benchmarks/physics_checks.py": "--out {tmp}/r.json",
    "python benchmarks/dr_baselines.py": "--homes 5 --out {tmp}/r.json",
    "python benchmarks/dispatch_latency.py": "--homes 200 --cycles 2 --e2e-homes 2 --out {tmp}/r.json",
    "python benchmarks/device_class_savings.py": ("--checkpoint {tmp}/run/checkpoint --homes 4 --days 30 "
                                                  "--work-dir {tmp}/dcs --out {tmp}/r.json"),
    "vpprl-export": "",
    "vpprl-dispatch": "hours=1",
}
COMPOSED_ONLY = {"launcher=slurm": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                 "launcher=ray_cluster": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
NOT_RUN = {
    'python -m venv /tmp/cl && /tmp/cl/bin/pip install --no-deps citylearn==3.0.2 && /tmp/cl/bin/pip install '
    '"numpy<2" gymnasium==0.28.1 pandas pyyaml simplejson scikit-learn==1.2.2 doe_xstock':
        "builds a second environment from the package index (CityLearn's own pins); run by hand",
    "python benchmarks/env_throughput.py --citylearn-python /tmp/cl/bin/python": "needs that venv",
    "ray start --head --port=6379": "starts a Ray head node; tests/test_cluster.py starts a real one on loopback",
    "ray start --address=<head-ip>:6379": "joins a head node; tests/test_cluster.py starts a real one on loopback",
}
SETUP = ("python3 -m venv .venv",)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    """Shell commands of the README's bash blocks: continuation lines joined, comments dropped."""
    out = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                out.append(" ".join(command.split()))
    return out


def _budget(command: str) -> str | None:
    for prefix, extra in BUDGET.items():
        if command == prefix or command.startswith(prefix + " "):
            return extra
    return None


def _run(command: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if command.startswith("python "):
        command = f"{shlex.quote(sys.executable)} {command[len('python '):]}"
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


RUNNABLE = [c for c in readme_commands()
            if _budget(c) is not None and c not in NOT_RUN and not any(k in c for k in COMPOSED_ONLY)]


def test_every_readme_command_is_covered():
    for command in readme_commands():
        covered = (command in RUNNABLE or command in NOT_RUN or command.startswith(SETUP)
                   or any(key in command for key in COMPOSED_ONLY))
        assert covered, f"README command not run by any test: {command!r}"


def test_the_two_setup_commands_are_the_ones_ci_runs():
    setup = [c for c in readme_commands() if c.startswith(SETUP)]
    assert len(setup) == 2, setup
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in setup if "pytest" in c)
    assert test_command in ci  # CI runs the README's test command verbatim
    main_job = next(c for c in setup if "pytest" not in c)
    assert main_job in ci  # and the main job too, in full (here it runs below with a short budget)


@pytest.mark.slow
@pytest.mark.parametrize("command", RUNNABLE)
def test_readme_command_runs(command, tmp_path):
    if command.startswith("tensorboard"):
        _run(f"vpprl-train {TRAIN_BUDGET}", tmp_path)
    if command.startswith(("vpprl-export", "vpprl-dispatch", "python benchmarks/device_class_savings.py")):
        # a checkpoint first: the README's deployment path step by step, and the per-class diagnosis
        _run(f"vpprl-train hydra.run.dir=run {TRAIN_BUDGET}", tmp_path)
    if command.startswith("vpprl-dispatch"):
        _run("vpprl-export checkpoint=run/checkpoint out=export", tmp_path)
    budget = _budget(command).format(tmp=tmp_path)
    cwd = ROOT if command.startswith("python benchmarks/") else tmp_path
    proc = _run(f"{command} {budget}", cwd)
    assert proc.returncode == 0, f"{command} {budget}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    if command.startswith("vpprl-train") and " -m " not in f" {command} ":
        assert "checkpoint:" in proc.stdout and "tensorboard --logdir" in proc.stdout
        log = next(iter([*tmp_path.glob("outputs/*/*/train.log"), *tmp_path.glob("*/train.log")]))
        assert "[1/1] return" in log.read_text()  # the progress lines reach train.log, not only the console
    if command.startswith("tensorboard"):
        assert "charts/episode_return" in proc.stdout
    if command.startswith("vpprl-export"):
        assert (tmp_path / "export" / "policy.onnx").exists() and (tmp_path / "export" / "manifest.json").exists()
    if command.startswith("vpprl-dispatch"):
        assert "| energy_cost |" in proc.stdout and "same policy in the env" in proc.stdout


@pytest.mark.parametrize("key", sorted(COMPOSED_ONLY))
def test_cluster_commands_compose(key, tmp_path):
    """No SLURM or Ray cluster on a CI machine: the command's config is composed exactly as written and must
    select the cluster launcher and pass the training schema."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf, open_dict
    from vpprl.training import train  # noqa: F401 (registers the config schemas)
    from vpprl.training.config import TrainConfig

    command = next(c for c in readme_commands() if key in c)
    overrides = [t for t in shlex.split(command)[1:] if t != "-m"]
    overrides = [t if "," not in t or t.startswith("hydra.") else t.split("=")[0] + "=" + t.split("=")[1].split(",")[0]
                 for t in overrides]  # one point of a sweep
    with initialize_config_module(config_module="vpprl.configs.train", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == COMPOSED_ONLY[key]
    with open_dict(cfg):
        del cfg["hydra"]
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, TrainConfig)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A directory holding one short ``vpprl-train`` run, as a user has after the main job."""
    path = tmp_path_factory.mktemp("readme_run")
    proc = _run(f"vpprl-train {TRAIN_BUDGET} evaluate=false", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_snippet_runs(index, trained_dir):
    snippet = _blocks("python")[index]
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=trained_dir, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"snippet {index}:\n{snippet}\n--- stderr\n{proc.stderr[-3000:]}"
