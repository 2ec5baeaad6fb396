"""``VppParallelEnv``: a PettingZoo ParallelEnv view of the fleet (one agent per home).

Same observations, actions and rewards as :class:`VppMultiAgentEnv`; ``state()`` returns the
centralized observation for centralized critics. Spaces are cached: the same object every call.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from .agent_actions import stack_agent_actions
from .fleet import NUM_DEVICE_CLASSES
from .tasks.base import check_ranges
from .vpp_env import VppEnv


class VppParallelEnv(ParallelEnv):
    metadata = {"name": "vpprl_fleet_v0", "render_modes": []}

    def __init__(self, config: Any = None, shield: Any = None, shield_penalty_per_kwh: float = 0.0,
                 **kwargs: Any) -> None:
        """``shield``: a ``vpprl.deployment.Shield`` every action passes through, with ``shield_penalty_per_kwh``
        $ per kWh it moves subtracted from the home's reward."""
        self.shield = shield
        self.penalty_per_kwh = float(shield_penalty_per_kwh)
        check_ranges("VppParallelEnv", shield_penalty_per_kwh=(self.penalty_per_kwh, 0.0, 1e4))
        if self.penalty_per_kwh and shield is None:
            raise ValueError("VppParallelEnv: shield_penalty_per_kwh needs a shield (shield=...)")
        self.env = VppEnv(config, **kwargs)
        self.possible_agents = [f"home_{i}" for i in range(self.env.n)]
        self._index = {aid: i for i, aid in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        n_obs = len(self.env.home_features) + len(self.env.global_features)
        self._obs_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self._act_space = gym.spaces.Box(-1.0, 1.0, (NUM_DEVICE_CLASSES,), np.float32)
        self.state_space = self.env.observation_space
        self.render_mode = None

    def observation_space(self, agent: str) -> gym.Space:
        return self._obs_space  # the same object for every agent and call

    def action_space(self, agent: str) -> gym.Space:
        return self._act_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        info = self.env.reset_fleet(seed=seed)
        self.agents = list(self.possible_agents)
        return dict(zip(self.agents, self.env.agent_observations())), {a: dict(info) for a in self.agents}

    def step(self, actions: dict[str, np.ndarray]):
        action = stack_agent_actions(actions, self._index, self.env.n)
        reward, done, info = self.env.advance_action(action, self.shield, self.penalty_per_kwh)
        agents = self.agents
        obs = dict(zip(agents, self.env.agent_observations()))
        rewards = dict(zip(agents, reward.tolist()))
        terminated, truncated = self.env.end_flags(done)
        terminations = dict.fromkeys(agents, terminated)
        truncations = dict.fromkeys(agents, truncated)
        costs = info["costs"]
        infos = {a: {k: float(v[i]) for k, v in costs.items()} for i, a in enumerate(agents)}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return self.env._observe()

    def close(self) -> None:
        self.env.close()
