"""Training scales out: a real multi-node Ray cluster on loopback, and Hydra sweeps through submitit.

* ``launcher=ray_cluster``: a head node (``ray start --head`` on 127.0.0.1) and a second node (another
  ``ray start`` process joining it), one CPU each, so RLlib's two env runners can only fit one per node;
  ``vpprl-train`` joins the cluster and reports where its env runners run.
* ``launcher=submitit_local``: a two-point sweep through submitit's local executor (the SLURM launcher's
  code path, with processes instead of SLURM jobs).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
QUICK = ["training=quick", "evaluate=false", "tensorboard=false", "agent.train_batch_size=3840",
         "agent.minibatch_size=1920", "agent.num_envs_per_env_runner=2", "agent.hidden=[16]"]


# a throw-away cluster on this machine: no usage stats, no token (Ray's token authentication is for real
# clusters; the driver would have to find the head's token)
CLUSTER_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "VPPRL_PROGRESS": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive_nodes(address: str) -> int:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=CLUSTER_ENV)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


@pytest.fixture
def loopback_cluster():
    """(address, processes): a head and a worker node on 127.0.0.1, stopped afterwards."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    ray = str(BIN / "ray")
    common = ["--block", "--num-cpus=1", "--num-gpus=0"]
    procs = [subprocess.Popen([ray, "start", "--head", f"--port={port}", "--include-dashboard=false",
                               f"--temp-dir={temp}", *common], env=CLUSTER_ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 1:
            assert time.monotonic() < deadline and procs[0].poll() is None, "the Ray head node did not start"
            time.sleep(1.0)
        procs.append(subprocess.Popen([ray, "start", f"--address={address}", *common], env=CLUSTER_ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while _alive_nodes(address) < 2:
            assert time.monotonic() < deadline and procs[1].poll() is None, "the second Ray node did not join"
            time.sleep(1.0)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_cluster_launcher_places_env_runners_on_both_nodes(loopback_cluster, tmp_path):
    run_dir = tmp_path / "run"
    out = subprocess.run([str(BIN / "vpprl-train"), "launcher=ray_cluster", f"ray_address={loopback_cluster}",
                          "agent.num_env_runners=2", *QUICK, f"hydra.run.dir={run_dir}"],
                         capture_output=True, text=True, timeout=600, env=CLUSTER_ENV)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    placed = re.search(r"(\d+) env runners on (\d+) Ray node\(s\)", out.stdout)
    assert placed and placed.groups() == ("2", "2"), out.stdout[-3000:]
    assert re.search(r"\[2/2\] return", out.stdout)
    assert (run_dir / "checkpoint").is_dir()


def test_submitit_local_sweep_runs_every_point(tmp_path):
    sweep = tmp_path / "sweep"
    out = subprocess.run([str(BIN / "vpprl-train"), "-m", "launcher=submitit_local", "seed=0,1", *QUICK,
                          f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "VPPRL_PROGRESS": "0"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoint").is_dir(), sorted(p.name for p in sweep.iterdir())
    # each point ran as its own submitit job (its own process), with submitit's logs beside it
    logs = sorted((sweep / ".submitit").glob("*/*_result.pkl"))
    assert len(logs) == 2, sorted(str(p) for p in (sweep / ".submitit").rglob("*"))
