"""Stable-Baselines3 baselines (PPO, SAC) on the centralized env, and a :class:`Policy` serving them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..agents.policy import Policy
from ..envs.vpp_env import VppEnv
from .config import TrainConfig


def make_training_env(cfg: TrainConfig, shield=None):
    from stable_baselines3.common.monitor import Monitor

    from ..deployment.wrappers import ShieldWrapper

    env = VppEnv(**cfg.env_kwargs())
    if shield is not None:
        env = ShieldWrapper(env, shield, penalty_per_kwh=cfg.shield.penalty_per_kwh)
    return Monitor(env)


def build_model(cfg: TrainConfig, env):
    from stable_baselines3 import PPO, SAC

    a = cfg.agent
    policy_kwargs = {"net_arch": list(a.hidden)}
    if cfg.resume_from:
        cls = PPO if a.name == "sb3_ppo" else SAC
        return cls.load(str(Path(cfg.resume_from) / "model.zip"), env=env)
    if a.name == "sb3_ppo":
        return PPO("MlpPolicy", env, learning_rate=a.lr, gamma=a.gamma, n_steps=a.train_batch_size,
                   batch_size=a.minibatch_size, n_epochs=a.num_epochs, ent_coef=a.entropy_coeff,
                   policy_kwargs=policy_kwargs, seed=cfg.seed, verbose=0, device="cpu")
    return SAC("MlpPolicy", env, learning_rate=a.lr, gamma=a.gamma, batch_size=a.minibatch_size,
               policy_kwargs=policy_kwargs, seed=cfg.seed, verbose=0, device="cpu", learning_starts=100)


def learning_rate_at(cfg: TrainConfig, iteration: int) -> float:
    """The rate of iteration ``iteration`` (0-based): ``agent.lr``, or with ``agent.lr_final`` the straight line
    from ``lr`` in the first iteration to ``lr_final`` in the last (one rate per iteration: SB3's own schedules
    follow the progress of one ``learn`` call, and training calls it once per iteration)."""
    a, n = cfg.agent, cfg.training.iterations
    if a.lr_final is None or n <= 1:
        return a.lr
    return a.lr + (a.lr_final - a.lr) * min(iteration, n - 1) / (n - 1)


def train_iteration(model, cfg: TrainConfig) -> dict[str, float]:
    """One rollout of ``agent.train_batch_size`` env steps and its updates, at this iteration's rate."""
    from stable_baselines3.common.utils import ConstantSchedule

    steps = cfg.agent.train_batch_size
    model.lr_schedule = ConstantSchedule(learning_rate_at(cfg, int(model.num_timesteps) // steps))
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    returns = [ep["r"] for ep in model.ep_info_buffer]
    optimizer = model.actor.optimizer if hasattr(model, "actor") else model.policy.optimizer  # SAC / PPO
    return {"episode_return": float(np.mean(returns)) if returns else float("nan"),
            "learning_rate": float(optimizer.param_groups[0]["lr"]),
            "home_steps": float(model.num_timesteps) * cfg.fleet.num_homes}


def save(model, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save(str(path / "model.zip"))
    return path


class Sb3Policy(Policy):
    """A trained SB3 model acting deterministically on the centralized observation (fixed fleet size)."""

    def __init__(self, model=None, checkpoint: str | Path | None = None, algorithm: str = "sb3_ppo") -> None:
        if model is None:
            from stable_baselines3 import PPO, SAC

            model = (PPO if algorithm == "sb3_ppo" else SAC).load(str(Path(checkpoint) / "model.zip"), device="cpu")
        self.model = model
        self.name = algorithm

    def act(self, obs: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32)
