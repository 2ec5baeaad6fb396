"""All RLlib glue in one place: multi-agent PPO with one policy shared by every home (new API stack),
checkpoints, and a :class:`Policy` that serves a checkpoint's module on any fleet size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..agents.policy import Policy
from .config import TrainConfig

MODULE_ID = "shared"


def _policy_mapping(agent_id: str, *args: Any, **kwargs: Any) -> str:
    return MODULE_ID


def build_algorithm(cfg: TrainConfig, shield: Any = None):
    """A PPO Algorithm on ``VppMultiAgentEnv`` (one agent per home, all mapped to one module)."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from ..envs.multi_agent import VppMultiAgentEnv

    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 **({} if cfg.ray_address else {"num_cpus": max(2, cfg.agent.num_env_runners + 1)}))
    a = cfg.agent
    env_config = {**cfg.env_kwargs(), "shield": shield}
    config = (
        PPOConfig()
        .environment(VppMultiAgentEnv, env_config=env_config)
        .env_runners(num_env_runners=a.num_env_runners)
        .multi_agent(policies={MODULE_ID}, policy_mapping_fn=_policy_mapping)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(a.hidden), fcnet_activation="tanh"))
        .training(train_batch_size_per_learner=a.train_batch_size, minibatch_size=a.minibatch_size,
                  num_epochs=a.num_epochs, lr=a.lr, gamma=a.gamma, entropy_coeff=a.entropy_coeff)
        .debugging(seed=cfg.seed)
    )
    algo = config.build_algo()
    if cfg.resume_from:
        algo.restore_from_path(str(Path(cfg.resume_from).resolve()))
    return algo


def train_iteration(algo) -> dict[str, float]:
    result = algo.train()
    runners = result.get("env_runners", {})
    steps = runners.get("num_agent_steps_sampled_lifetime", {})
    agent_steps = float(sum(steps.values())) if isinstance(steps, dict) else float(steps or 0)
    metrics = {"episode_return": float(runners.get("episode_return_mean", np.nan)), "agent_steps": agent_steps}
    learner = result.get("learners", {}).get(MODULE_ID, {})
    for key, value in learner.items():  # entropy, learning rate, losses, KL for TensorBoard
        if isinstance(value, (int, float, np.floating)) and any(
                s in key for s in ("entropy", "learning_rate", "policy_loss", "vf_loss", "mean_kl")):
            metrics[f"losses/{key}"] = float(value)
    return metrics


def save(algo, path: Path) -> Path:
    return Path(algo.save(str(path.resolve())).checkpoint.path)


class RllibPolicy(Policy):
    """The shared module of a checkpoint, acting deterministically (the Gaussian's mean) on every
    home's observation row at once; works on any fleet size (a per-home policy with global context)."""

    name = "rllib_ppo"

    def __init__(self, checkpoint: str | Path | None = None, module: Any = None) -> None:
        import torch

        self._torch = torch
        if module is None:
            from ray.rllib.core.rl_module.rl_module import RLModule

            path = Path(checkpoint) / "learner_group" / "learner" / "rl_module" / MODULE_ID
            module = RLModule.from_checkpoint(str(path.resolve()))
        self.module = module

    def act(self, obs: np.ndarray) -> np.ndarray:
        rows = self.env.agent_observations()
        with self._torch.no_grad():
            out = self.module.forward_inference({"obs": self._torch.as_tensor(rows)})
        logits = out["action_dist_inputs"].numpy()
        mean = logits[:, : logits.shape[1] // 2]
        return np.clip(mean, -1.0, 1.0).astype(np.float32).ravel()
