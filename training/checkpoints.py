"""A trained policy from its checkpoint directory, as the run that wrote it used it.

Every checkpoint carries the run's settings (``vpprl_config.yaml``, written by ``vpprl-train``): the agent
tells how to load the weights, the shield settings how the policy was deployed in training. The policy acts on
observations alone (``RllibPolicy`` on each home's row, ``Sb3Policy`` on the flat observation).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf, open_dict

from ..agents.policy import Policy
from ..deployment.shield import Shield, ShieldConfig
from ..deployment.shielded_policy import ShieldedPolicy
from ..envs import observation
from .config import CHECKPOINT_MARKERS, TrainConfig

RUN_CONFIG = "vpprl_config.yaml"
#: the run settings' key for the observation schema the weights were trained on
SCHEMA_KEY = "observation_schema_version"
UNRECORDED_SCHEMA = 3  # settings written before the key: schema 3 or older


def write_run_config(cfg: TrainConfig, checkpoint: Path) -> Path:
    """The run's settings beside its weights, with the observation schema they were trained on."""
    settings = OmegaConf.structured(cfg)
    with open_dict(settings):
        settings[SCHEMA_KEY] = observation.OBSERVATION_SCHEMA_VERSION
    OmegaConf.save(settings, Path(checkpoint) / RUN_CONFIG)
    return Path(checkpoint) / RUN_CONFIG


def check_observation_schema(field_name: str, run: dict, path: str) -> None:
    """ValueError unless the checkpoint's weights were trained on this vpprl's observation schema (another
    schema's rows have other features, or the same features in other units). Settings without the key were
    written before it was recorded, by schema 3 or older: read as 3."""
    schema = run.get(SCHEMA_KEY, UNRECORDED_SCHEMA)
    if schema != observation.OBSERVATION_SCHEMA_VERSION:
        was = f"schema {schema}" + ("" if SCHEMA_KEY in run else f" or older (no {SCHEMA_KEY} in {RUN_CONFIG})")
        raise ValueError(f"{field_name}: {path} was trained on observation {was}, this vpprl builds observation "
                         f"schema {observation.OBSERVATION_SCHEMA_VERSION} (docs/architecture.md, Observation): "
                         f"its weights would read other features; train it again with this version")


def check_policy_checkpoint(field_name: str, path: str) -> dict:
    """The run settings saved beside ``path``; FileNotFoundError/ValueError naming the field otherwise."""
    p = Path(path).expanduser()
    settings = p / RUN_CONFIG
    if not settings.is_file():
        raise FileNotFoundError(f"{field_name}: {p.resolve()} is not a vpprl-train checkpoint (no {RUN_CONFIG} in it); "
                                f"give the checkpoint/ directory a training run wrote")
    run = OmegaConf.to_container(OmegaConf.load(settings))
    agent = run.get("agent", {}).get("name")
    marker = CHECKPOINT_MARKERS.get(agent)
    if marker is None:
        raise ValueError(f"{field_name}: {p} was written by agent {agent!r}, which has no weights to evaluate "
                         f"(learned agents: {sorted(CHECKPOINT_MARKERS)})")
    if not (p / marker).is_file():
        raise FileNotFoundError(f"{field_name}: {p} has {RUN_CONFIG} but no {marker}: is the checkpoint complete?")
    check_observation_schema(field_name, run, str(p))
    return run


def check_scenario(field_name: str, run: dict, task: str, dt_s: int, num_homes: int) -> list[str]:
    """Errors for a scenario the checkpoint cannot act in (an SB3 policy is sized to its training fleet);
    warnings (returned) where it differs from the training scenario (task, step length)."""
    agent = run["agent"]["name"]
    trained_homes = int(run.get("fleet", {}).get("num_homes", num_homes))
    if agent.startswith("sb3") and trained_homes != num_homes:
        raise ValueError(f"{field_name}: an {agent} policy acts on a fleet of exactly {trained_homes} homes (it was "
                         f"trained on them), got num_homes={num_homes}; the RLlib home-batch policy transfers")
    notes = []
    for key, value in (("task", task), ("dt_s", dt_s)):
        if key in run and run[key] != value:
            notes.append(f"{field_name}: trained with {key}={run[key]!r}, evaluated with {key}={value!r}")
    return notes


def load_policy(path: str, field_name: str = "checkpoint") -> tuple[str, Policy]:
    """(agent name, policy) of a checkpoint, behind the shield when the run trained behind it."""
    run = check_policy_checkpoint(field_name, path)
    agent = run["agent"]["name"]
    if agent == "rllib_ppo":
        from .rllib_adapter import RllibPolicy

        policy: Policy = RllibPolicy(checkpoint=path)
    else:
        from .sb3_adapter import Sb3Policy

        policy = Sb3Policy(checkpoint=path, algorithm=agent)
    shield = run.get("shield") or {}
    if shield.get("enabled", False):
        policy = ShieldedPolicy(policy, Shield(ShieldConfig(feeder_limit_kw=shield.get("feeder_limit_kw"))))
    return agent, policy
