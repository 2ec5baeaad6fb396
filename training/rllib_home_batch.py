"""Shared-parameter multi-agent PPO with the homes as a batch axis (RLlib new API stack).

RLlib's per-agent-dict path pays Python bookkeeping for every agent step (episodes, connectors,
dicts): ~4,000 home-steps/s. Here RLlib sees one env (``VppHomeBatchEnv``: observation (N, F),
action (N, D)) and a module that applies one per-home actor and critic over the home axis, so a
fleet step costs RLlib one env step. Two pieces keep it the *same* learning problem as one agent
per home with a shared policy:

* ``HomeBatchGae`` (replaces RLlib's GAE learner connector) computes values (T, N), per-home
  rewards (T, N, from ``info["reward_per_home"]``) and per-home GAE advantages and value targets,
  then flattens every per-home column to rows of home-steps (T * N, ...);
* the module's action distribution is per home (a diagonal Gaussian over the last axis), so the
  PPO ratio, clipping, entropy and value loss are per home-step, exactly as with per-agent episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ray
import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDeterministic,
    TorchDiagGaussian,
    TorchSquashedGaussian,
)
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.evaluation.postprocessing import Postprocessing
from scipy.signal import lfilter
from torch import nn

TESTED_RAY_VERSION = "2.60.0"  # the overrides below rely on RLlib internals of exactly this version
if ray.__version__ != TESTED_RAY_VERSION:
    raise ImportError(f"vpprl's home-batch learner overrides RLlib internals of ray {TESTED_RAY_VERSION} (the version "
                      f"its tests run), found ray {ray.__version__}: pip install 'ray[rllib]=={TESTED_RAY_VERSION}', "
                      f"or train with agent.home_batch=false (the plain per-agent path)")

REWARD_KEY = "reward_per_home"
MAX_SQUASHED_MEAN = 5.0  # tanh(5) = 0.99991: every action stays reachable
WEIGHT_KEY = "reward_weight"  # optional per-home scale of the learning signal (see VppHomeBatchEnv)


def _mlp(n_in: int, hidden: list[int], n_out: int, activation: type[nn.Module], out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        linear = nn.Linear(n_in, width)
        nn.init.orthogonal_(linear.weight, gain=float(np.sqrt(2.0)))
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        n_in = width
    head = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(head.weight, gain=out_gain)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)


class SquashedHomeGaussian(TorchSquashedGaussian):
    """A diagonal Gaussian squashed by tanh into [-1, 1] per home (no probability mass piled on the bounds, as a
    clipped Gaussian has), with what PPO needs beyond RLlib's version: the KL (tanh is a bijection, so the KL
    of the squashed distributions is the KL of the Gaussians under it), an entropy (the Gaussian's plus the
    expected log-Jacobian of tanh, estimated from one sample) and the deterministic action tanh(mean)."""

    def kl(self, other: TorchSquashedGaussian) -> torch.Tensor:
        return torch.distributions.kl.kl_divergence(self._dist, other._dist).sum(-1)

    def entropy(self) -> torch.Tensor:
        x = self._dist.rsample()
        log_jacobian = 2.0 * (np.log(2.0) - x - nn.functional.softplus(-2.0 * x))
        return (self._dist.entropy() + log_jacobian).sum(-1)

    def to_deterministic(self) -> TorchDeterministic:
        return TorchDeterministic(loc=torch.tanh(self.loc))


def initial_log_std(n_actions: int, default: float, by_class: dict[str, float]) -> torch.Tensor:
    """(n_actions,) starting log-stds: ``default`` for every device class but those ``by_class`` names."""
    from ..envs.devices import DEVICE_CLASSES

    if n_actions != len(DEVICE_CLASSES) and by_class:
        raise ValueError(f"initial_log_std_by_class needs one action per device class {list(DEVICE_CLASSES)}, "
                         f"the module has {n_actions}")
    init = torch.full((n_actions,), default)
    for name, value in by_class.items():
        init[DEVICE_CLASSES.index(name)] = float(value)
    return init


class SharedHomeModule(TorchRLModule, ValueFunctionAPI):
    """One actor and one critic applied to every home's row: input (..., F) -> output (..., *).

    Works on (B, N, F) fleet batches while sampling and on (B * N, F) home-step rows in the loss,
    and on any N (the policy transfers to bigger fleets). The Gaussian's log-std is a learned
    per-device-class parameter, independent of the state (steadier than a state-dependent one).
    ``model_config``: ``hidden`` (layer widths), ``activation`` ("tanh" or "relu"),
    ``initial_log_std``, ``initial_log_std_by_class`` ({device class: log-std}, overriding it for those classes),
    ``action_distribution`` ("gaussian": clipped to [-1, 1] by the env; or
    "squashed_gaussian": tanh-squashed, see :class:`SquashedHomeGaussian`).
    """

    def setup(self) -> None:
        cfg = self.model_config or {}
        hidden = list(cfg.get("hidden", [64, 64]))
        activation = {"tanh": nn.Tanh, "relu": nn.ReLU}[cfg.get("activation", "tanh")]
        n_features = int(self.observation_space.shape[-1])
        self.n_actions = int(self.action_space.shape[-1])
        self.pi = _mlp(n_features, hidden, self.n_actions, activation, out_gain=0.01)
        self.vf = _mlp(n_features, hidden, 1, activation, out_gain=1.0)
        self.log_std = nn.Parameter(initial_log_std(self.n_actions, float(cfg.get("initial_log_std", -0.5)),
                                                    dict(cfg.get("initial_log_std_by_class") or {})))
        self.squashed = cfg.get("action_distribution", "gaussian") == "squashed_gaussian"
        self.action_dist_cls = SquashedHomeGaussian if self.squashed else TorchDiagGaussian

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action a deployed policy takes on rows (..., F): the distribution's mean mapped into [-1, 1]
        (tanh for the squashed Gaussian, a clip for the plain one)."""
        mean = self._mean(obs)
        return torch.tanh(mean) if self.squashed else torch.clamp(mean, -1.0, 1.0)

    def _mean(self, obs: torch.Tensor) -> torch.Tensor:
        """The Gaussian's mean; squashed: bounded to +-MAX_SQUASHED_MEAN, so that samples stay where float32
        tanh/atanh invert each other (past |x| ~ 7 an action stored as exactly +-1 maps back to another x,
        and the log-density's gradient for saturated actions would point the wrong way)."""
        mean = self.pi(obs)
        return MAX_SQUASHED_MEAN * torch.tanh(mean / MAX_SQUASHED_MEAN) if self.squashed else mean

    def _dist_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        mean = self._mean(obs)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self._dist_inputs(batch[Columns.OBS])}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]).squeeze(-1)


def gae_per_home(values: np.ndarray, rewards: np.ndarray, terminateds: np.ndarray, truncateds: np.ndarray,
                 gamma: float, lambda_: float) -> np.ndarray:
    """Value targets (T, N) from values and rewards (T, N) and per-row episode flags (T,), with
    RLlib's convention (``AddOneTsToEpisodesAndTruncate``): each episode chunk ends with one phantom
    row holding the bootstrap observation; a truncated row bootstraps from the next row's value but
    stops the recursion, a terminated row does neither.

    The backward recursion A_t = delta_t + gamma * lambda * A_{t+1} is a first-order IIR filter run
    backwards in time, so each stretch between recursion stops is one ``scipy.signal.lfilter`` call over
    all homes at once: a Python loop over episode chunks (tens per batch), none over steps."""
    non_terminal = (1.0 - terminateds.astype(np.float64))[:, None]
    next_values = np.zeros_like(values, dtype=np.float64)
    next_values[:-1] = values[1:]
    delta = rewards + gamma * non_terminal * next_values - values
    advantages = np.empty_like(delta)
    stops = np.flatnonzero((np.asarray(terminateds) != 0) | (np.asarray(truncateds) != 0))  # the recursion restarts after each of these rows
    starts = np.concatenate([[0], stops + 1])
    ends = np.concatenate([stops + 1, [delta.shape[0]]])
    decay = gamma * lambda_
    for start, end in zip(starts, ends):
        if end > start:
            advantages[start:end] = lfilter([1.0], [1.0, -decay], delta[start:end][::-1], axis=0)[::-1]
    return (advantages + values).astype(np.float32)


class HomeBatchGae(ConnectorV2):
    """Learner connector: per-home GAE, then the fleet batch (T, N, ...) becomes home-step rows.

    Runs last in the learner pipeline (in place of RLlib's ``GeneralAdvantageEstimation``), when the
    batch holds tensors and every episode chunk carries one phantom bootstrap row."""

    def __init__(self, input_observation_space=None, input_action_space=None, *, gamma: float,
                 lambda_: float) -> None:
        super().__init__(input_observation_space, input_action_space)
        self.gamma = gamma
        self.lambda_ = lambda_

    def __call__(self, *, rl_module: Any, episodes: list, batch: dict[str, Any], **kwargs: Any) -> Any:
        module_batch = batch[DEFAULT_MODULE_ID]
        module = rl_module[DEFAULT_MODULE_ID]
        obs = module_batch[Columns.OBS]
        rows, n_homes = int(obs.shape[0]), int(obs.shape[1])
        with torch.no_grad():
            values = module.compute_values(module_batch).cpu().numpy().astype(np.float32)
        rewards, weights = self._per_home_rewards(episodes, rows, n_homes)
        fleet_rewards = module_batch[Columns.REWARDS].cpu().numpy()
        if not np.allclose(rewards.mean(axis=1), fleet_rewards, rtol=1e-4, atol=1e-5):
            raise RuntimeError("per-home rewards do not average to the env's fleet reward: the env must put "
                               f"info[{REWARD_KEY!r}] (N,) next to a reward equal to their mean")
        rewards *= weights
        targets = gae_per_home(values, rewards, module_batch[Columns.TERMINATEDS].cpu().numpy(),
                               module_batch[Columns.TRUNCATEDS].cpu().numpy(), self.gamma, self.lambda_)
        advantages = targets - values
        mask = module_batch[Columns.LOSS_MASK].cpu().numpy().astype(bool)
        valid = advantages[mask]
        advantages = (advantages - valid.mean()) / max(1e-4, float(valid.std()))
        module_batch[Columns.REWARDS] = rewards  # weighted: what the value function learns
        module_batch[Postprocessing.ADVANTAGES] = advantages
        module_batch[Postprocessing.VALUE_TARGETS] = targets
        device = obs.device  # the learner's (a GPU when it has one): the numpy columns join the tensors there
        batch[DEFAULT_MODULE_ID] = {key: self._rows(value, rows, n_homes, key).to(device)
                                    for key, value in module_batch.items()}
        return batch

    @staticmethod
    def _per_home_rewards(episodes: list, rows: int, n_homes: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, N) rewards and learning weights in batch order: each chunk's steps, then its phantom row
        (reward 0)."""
        out = np.zeros((rows, n_homes), dtype=np.float32)
        weights = np.ones((rows, n_homes), dtype=np.float32)
        i = 0
        for episode in episodes:
            infos = episode.get_infos()[1:len(episode)]  # the connector pipeline added one phantom step
            steps = len(infos)
            if steps:
                out[i:i + steps] = np.stack([info[REWARD_KEY] for info in infos])
                if WEIGHT_KEY in infos[0]:
                    weights[i:i + steps] = np.stack([info[WEIGHT_KEY] for info in infos])
            i += steps + 1
        if i != rows:
            raise RuntimeError(f"episodes hold {i} rows but the batch has {rows}")
        return out, weights

    @staticmethod
    def _rows(value: Any, rows: int, n_homes: int, key: str) -> torch.Tensor:
        tensor = torch.as_tensor(value)
        if tensor.ndim >= 2 and tensor.shape[0] == rows and tensor.shape[1] == n_homes:
            return tensor.reshape(rows * n_homes, *tensor.shape[2:])
        if tensor.ndim == 1 and tensor.shape[0] == rows:
            return tensor.repeat_interleave(n_homes)
        raise ValueError(f"batch column {key!r} of shape {tuple(tensor.shape)} is neither per fleet step "
                         f"({rows},) nor per home ({rows}, {n_homes}, ...)")


class HomeBatchPPOLearner(PPOTorchLearner):
    """PPO's torch learner with ``HomeBatchGae`` in place of the per-episode GAE.

    RLlib's ``minibatch_size`` counts fleet steps (it is validated against the sampled fleet steps);
    after the flattening a minibatch is that many fleet steps' worth of home-step rows."""

    def _create_iterator_if_necessary(self, *, minibatch_size: int | None = None, **kwargs: Any):
        if minibatch_size:
            minibatch_size *= int(self.module[DEFAULT_MODULE_ID].observation_space.shape[0])
        return super()._create_iterator_if_necessary(minibatch_size=minibatch_size, **kwargs)

    def build(self) -> None:
        super().build()
        if self._learner_connector is not None:
            self._learner_connector.remove("GeneralAdvantageEstimation")
            self._learner_connector.append(HomeBatchGae(gamma=self.config.gamma, lambda_=self.config.lambda_))
