"""``VppMultiAgentEnv``: one RLlib agent per home, all sharing one policy.

The reference implementation of the multi-agent problem: each agent sees its home's features
followed by the global ones (time, weather, prices, aggregate load, task signals) and gets its
home's reward. Fleet-level info goes under ``"__common__"``. The physics is the same ``VppEnv``
underneath, so both views optimise the same objective. Imports ray: load it lazily through
``vpprl.envs.VppMultiAgentEnv``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from .agent_actions import stack_agent_actions
from .fleet import NUM_DEVICE_CLASSES
from .tasks.base import check_ranges
from .vpp_env import VppEnv, unpack_env_config


class VppMultiAgentEnv(MultiAgentEnv):
    """Accepts the same arguments as :class:`VppEnv` (a ScenarioConfig or keyword shortcuts),
    or an RLlib ``EnvContext``/dict of them as its only positional argument. ``shield``: a
    ``vpprl.deployment.Shield`` every action passes through (the same object the dispatch loop runs)."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        config, kwargs = unpack_env_config(config, kwargs)
        self.shield = kwargs.pop("shield", None)
        self.penalty_per_kwh = float(kwargs.pop("shield_penalty_per_kwh", 0.0))
        check_ranges(type(self).__name__, shield_penalty_per_kwh=(self.penalty_per_kwh, 0.0, 1e4))
        if self.penalty_per_kwh and self.shield is None:
            raise ValueError(f"{type(self).__name__}: shield_penalty_per_kwh needs a shield (shield=...)")
        self.env = VppEnv(config, **kwargs)
        n = self.env.n
        self.possible_agents = [f"home_{i}" for i in range(n)]
        self.agents = list(self.possible_agents)
        n_obs = len(self.env.home_features) + len(self.env.global_features)
        obs_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, (NUM_DEVICE_CLASSES,), np.float32)
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = dict.fromkeys(self.possible_agents, act_space)
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)
        self._index = {aid: i for i, aid in enumerate(self.possible_agents)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        info = self.env.reset_fleet(seed=seed)
        self.agents = list(self.possible_agents)
        return dict(zip(self.agents, self.env.agent_observations())), {"__common__": info}

    def step(self, action_dict: dict[str, np.ndarray]):
        action = stack_agent_actions(action_dict, self._index, self.env.n)  # missing agents: the default
        reward, done, info = self.env.advance_action(action, self.shield, self.penalty_per_kwh)
        obs = dict(zip(self.agents, self.env.agent_observations()))
        rewards = dict(zip(self.agents, reward.tolist()))
        terminated, truncated = self.env.end_flags(done)
        terminateds = {"__all__": terminated}
        truncateds = {"__all__": truncated}
        common = {k: v for k, v in info.items() if k not in ("costs", "reward_per_home")}
        if done:
            self.agents = []
        return obs, rewards, terminateds, truncateds, {"__common__": common}
