"""Deterministic actors as plain torch modules: observation in, action in [-1, 1] out, every step the
framework's own ``act`` takes (squashing, clipping) inside ``forward``, so the traced ONNX graph is the
whole policy. Neither RLlib's ONNX export (old API stack only) nor SB3's ``predict`` (numpy post-processing
outside the network) gives that.

No observation normalisation is part of any of them: vpprl trains on the env's observation as is (its
features are O(1)-scaled by ``envs.observation``; no VecNormalize, no RLlib mean-std filter). An actor built
from a model that does normalise would have to carry it here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class RllibActor(nn.Module):
    """An RLlib RLModule's deterministic action on per-home rows (N, F + G) -> (N, D): the mean of its
    diagonal Gaussian (the first half of the distribution inputs), clipped to [-1, 1] (squashed by tanh for a
    module trained with ``action_distribution=squashed_gaussian``), as ``RllibPolicy``."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module
        self.n_actions = int(module.action_space.shape[-1])
        squashed = getattr(module, "squashed", False)
        self.normalisation = {"observation": "none",
                              "action": "tanh(mean of the Gaussian)" if squashed else "clip(mean of the Gaussian, -1, 1)"}

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if hasattr(self.module, "deterministic_action"):  # the home-batch module: clip or tanh, as it trained
            return self.module.deterministic_action(rows)
        logits = self.module.forward_inference({"obs": rows})["action_dist_inputs"]
        return torch.clamp(logits[..., : self.n_actions], -1.0, 1.0)


class Sb3Actor(nn.Module):
    """An SB3 PPO or SAC policy's deterministic action on the centralized observation (B, N * F + G) ->
    (B, N * D), as ``policy.predict(obs, deterministic=True)`` computes it: PPO's Gaussian mean clipped to
    the action space; SAC's tanh-squashed mean rescaled from [-1, 1] to the action space."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
        from stable_baselines3.sac.policies import SACPolicy

        if getattr(policy, "use_sde", False):
            raise ValueError("SB3 policies with state-dependent exploration (use_sde) are not exportable")
        self.policy = policy
        self._features = BasePolicy.extract_features  # the actor's extractor, shared with the critic or not
        self.is_sac = isinstance(policy, SACPolicy)
        if not self.is_sac and not isinstance(policy, ActorCriticPolicy):
            raise ValueError(f"unsupported SB3 policy {type(policy).__name__}: export handles PPO and SAC")
        space = policy.action_space
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))
        self.squash = bool(policy.squash_output)
        self.normalisation = {
            "observation": "none",
            "action": ("tanh(mean), rescaled from [-1, 1] to the action space" if self.squash
                       else "clip(mean of the Gaussian, action space low, high)"),
        }

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        p = self.policy
        if self.is_sac:
            mean, _, _ = p.actor.get_action_dist_params(obs)
            action = torch.tanh(mean)
        else:
            features = self._features(p, obs, p.pi_features_extractor)
            action = p.action_net(p.mlp_extractor.forward_actor(features))
        if self.squash:
            return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        return torch.maximum(torch.minimum(action, self.high), self.low)
