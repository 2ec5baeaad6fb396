"""The home-batch RLlib path is the same shared-parameter multi-agent problem as one agent per home:
the env's rows match the multi-agent env, the per-home GAE matches RLlib's per-episode GAE, and the
learner's batch holds one row per home-step with that home's reward and advantage."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from vpprl.envs import VppHomeBatchEnv
from vpprl.envs.fleet import NUM_DEVICE_CLASSES


def test_home_batch_env_matches_the_multi_agent_env():
    from vpprl.deployment import Shield
    from vpprl.envs import VppMultiAgentEnv

    kwargs = {"task": {"price_arbitrage": {}, "peak_shaving": {}}, "num_homes": 6, "seed": 2, "episode_hours": 3.0}
    batch = VppHomeBatchEnv({**kwargs, "shield": Shield()})
    ma = VppMultiAgentEnv({**kwargs, "shield": Shield()})
    obs_b, _ = batch.reset(seed=4)
    obs_m, _ = ma.reset(seed=4)
    assert obs_b.shape == batch.observation_space.shape == (6, ma.observation_spaces["home_0"].shape[0])
    rng = np.random.default_rng(0)
    done = False
    while not done:
        np.testing.assert_array_equal(obs_b, np.stack([obs_m[f"home_{i}"] for i in range(6)]))
        act = rng.uniform(-1.5, 1.5, (6, NUM_DEVICE_CLASSES)).astype(np.float32)
        obs_b, r_b, term, done, info = batch.step(act)
        obs_m, r_m, _, trunc_m, _ = ma.step({f"home_{i}": act[i] for i in range(6)})
        np.testing.assert_allclose(info["reward_per_home"], [r_m[f"home_{i}"] for i in range(6)], rtol=1e-5,
                                   atol=1e-6)
        assert r_b == pytest.approx(float(np.mean(info["reward_per_home"])), rel=1e-5, abs=1e-7)
        assert not term and done == trunc_m["__all__"] and "shield/battery/interventions" in info["shield"]
    assert "kpis" in info


def test_reward_weights_put_c_and_i_sites_on_the_scale_of_a_home():
    from vpprl.envs import FleetConfig, Ownership

    own = Ownership(battery=0.5, ev=0.5, pv=0.5, water_heater=0.5, thermostat=0.5, flex_load=0.5)
    env = VppHomeBatchEnv(task="price_arbitrage", fleet=FleetConfig(num_homes=12, seed=0, ownership=own))
    env.reset(seed=0)
    flex_kw = env.env.fleet.layout.flex_load.scale_kw
    assert (flex_kw > 0).any() and (flex_kw == 0).any()
    raw, weighted = [], []
    for _ in range(8):
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        np.testing.assert_allclose(info["reward_weight"], 1.0 / (1.0 + flex_kw), rtol=1e-6)
        raw.append(np.abs(info["reward_per_home"]))
        weighted.append(np.abs(info["reward_per_home"] * info["reward_weight"]))
    raw, weighted = np.median(raw, axis=0), np.median(weighted, axis=0)
    ci, home = flex_kw > 0, flex_kw == 0
    assert np.median(raw[ci]) > 10 * np.median(raw[home])  # dollars differ by orders of magnitude ...
    assert np.median(weighted[ci]) < 3 * np.median(raw[home])  # ... the learning signal does not


def test_home_batch_env_checks_and_rejects_wrong_action_shape():
    env = VppHomeBatchEnv(task="peak_shaving", num_homes=3, episode_hours=1.0)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(3, 6\)"):
        env.step(np.zeros(18, dtype=np.float32))


def test_resampled_fleets_differ_per_episode_and_replay_from_the_seed():
    env = VppHomeBatchEnv(task="price_arbitrage", num_homes=8, resample_fleet=True)
    capacities = []
    for _ in range(3):
        env.reset()
        capacities.append(env.env.fleet.layout.battery.capacity_kwh.copy())
    assert not np.array_equal(capacities[0], capacities[1]) and not np.array_equal(capacities[1], capacities[2])
    again = VppHomeBatchEnv(task="price_arbitrage", num_homes=8, resample_fleet=True)
    env.reset(seed=7)
    again.reset(seed=7)
    np.testing.assert_array_equal(env.env.fleet.layout.battery.capacity_kwh, again.env.fleet.layout.battery.capacity_kwh)


def test_per_home_gae_equals_rllib_gae_on_every_home():
    from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets
    from vpprl.training.rllib_home_batch import gae_per_home

    rng = np.random.default_rng(1)
    # two chunks of 5 and 3 steps, each with its phantom bootstrap row: one truncated, one terminated
    rows, homes = 10, 4
    values = rng.normal(size=(rows, homes)).astype(np.float32)
    rewards = rng.normal(size=(rows, homes)).astype(np.float32)
    rewards[[5, 9]] = 0.0
    terminateds = np.zeros(rows, bool)
    truncateds = np.zeros(rows, bool)
    truncateds[4] = True
    terminateds[8] = True
    mine = gae_per_home(values, rewards, terminateds, truncateds, gamma=0.97, lambda_=0.9)
    for i in range(homes):
        ref = compute_value_targets(values[:, i], rewards[:, i], terminateds.astype(np.float32),
                                    truncateds.astype(np.float32), gamma=0.97, lambda_=0.9)
        np.testing.assert_allclose(mine[:, i], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_per_home_gae_equals_rllib_gae_for_random_chunk_boundaries(seed):
    """Chunks of random lengths (1 row included) ending truncated, terminated or neither (the batch's last)."""
    from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets
    from vpprl.training.rllib_home_batch import gae_per_home

    rng = np.random.default_rng(seed)
    rows, homes = 200, 3
    values = rng.normal(size=(rows, homes)).astype(np.float32)
    rewards = rng.normal(size=(rows, homes)).astype(np.float32)
    terminateds = np.zeros(rows, bool)
    truncateds = np.zeros(rows, bool)
    ends = np.sort(rng.choice(rows - 1, size=12, replace=False))
    kinds = rng.integers(0, 2, size=ends.size)
    terminateds[ends[kinds == 0]] = True
    truncateds[ends[kinds == 1]] = True
    mine = gae_per_home(values, rewards, terminateds, truncateds, gamma=0.99, lambda_=0.95)
    for i in range(homes):
        ref = compute_value_targets(values[:, i], rewards[:, i], terminateds.astype(np.float32),
                                    truncateds.astype(np.float32), gamma=0.99, lambda_=0.95)
        np.testing.assert_allclose(mine[:, i], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("one_pass", ["off", "on"])
def test_learner_batch_has_one_row_per_home_step_with_its_own_reward(one_pass, tmp_path):
    import torch
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns
    from ray.rllib.evaluation.postprocessing import Postprocessing
    from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets
    from vpprl.envs import FleetConfig
    from vpprl.training.config import AgentConfig, TrainConfig
    from vpprl.training.rllib_adapter import build_algorithm

    homes = 5
    cfg = TrainConfig(fleet=FleetConfig(num_homes=homes, seed=0), episode_hours=3.0, output_dir=str(tmp_path),
                      agent=AgentConfig(train_batch_size=homes * 40, minibatch_size=homes * 8, num_envs_per_env_runner=2,
                                        hidden=[16], fleets_in_one_pass=one_pass))
    n = homes * cfg.fleets_per_env  # rows per env step: both fleets in one env, or one fleet per env
    assert n == (2 * homes if one_pass == "on" else homes)
    algo = build_algorithm(cfg)
    try:
        episodes = algo.env_runner.sample(num_timesteps=20, random_actions=False)
        learner = algo.learner_group._learner
        per_home = [np.stack([info["reward_per_home"] * info["reward_weight"] for info in e.get_infos()[1:]])
                    for e in episodes]
        steps = sum(len(e) for e in episodes)
        batch = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes, shared_data={},
                                           metrics=learner.metrics)[DEFAULT_MODULE_ID]
        rows = steps + len(episodes)  # one phantom bootstrap row per episode chunk
        width = VppHomeBatchEnv(**cfg.env_kwargs(), fleets=cfg.fleets_per_env).observation_space.shape[1]
        assert batch[Columns.OBS].shape == (rows * n, width)
        assert batch[Columns.ACTIONS].shape == (rows * n, NUM_DEVICE_CLASSES)
        mask = batch[Columns.LOSS_MASK].numpy().astype(bool)
        assert mask.sum() == steps * n
        expected = np.concatenate([np.vstack([r, np.zeros((1, n), np.float32)]) for r in per_home]).ravel()
        np.testing.assert_allclose(batch[Columns.REWARDS].numpy(), expected, rtol=1e-6)
        # value targets are each home's own GAE over its own rewards, as RLlib's own GAE computes it for
        # one agent (the reference: RLlib's compute_value_targets, home by home)
        module = learner.module[DEFAULT_MODULE_ID]
        with torch.no_grad():
            values = module.compute_values({Columns.OBS: batch[Columns.OBS]}).numpy().reshape(rows, n)
        flags = {k: batch[k].numpy().reshape(rows, n)[:, 0].astype(np.float32)
                 for k in (Columns.TERMINATEDS, Columns.TRUNCATEDS)}
        rewards = expected.reshape(rows, n)
        targets = np.stack([compute_value_targets(values[:, i], rewards[:, i], flags[Columns.TERMINATEDS],
                                                  flags[Columns.TRUNCATEDS], gamma=cfg.agent.gamma,
                                                  lambda_=cfg.agent.gae_lambda) for i in range(n)], axis=1)
        np.testing.assert_allclose(batch[Postprocessing.VALUE_TARGETS].numpy(), targets.ravel(), rtol=1e-4,
                                   atol=1e-5)
        adv = batch[Postprocessing.ADVANTAGES].numpy()[mask]
        assert abs(adv.mean()) < 1e-4 and adv.std() == pytest.approx(1.0, rel=1e-3)
    finally:
        algo.stop()


def test_resampled_citylearn_fleets_keep_their_buildings_devices():
    """A fresh fleet every episode on CityLearn data still has the buildings' own batteries and PV from
    schema.json (read here directly), not the default scenario's sampled sizes."""
    import json

    from vpprl.data.bundled import bundled_dataset_path

    schema = json.loads((bundled_dataset_path("citylearn_2022") / "schema.json").read_text())
    capacities = {b["electrical_storage"]["attributes"]["capacity"] for b in schema["buildings"].values()}
    env = VppHomeBatchEnv(task="price_arbitrage", dataset="citylearn_2022", citylearn_replicate=True,
                          num_homes=30, dt_s=3600, resample_fleet=True)
    seen = set()
    for seed in range(3):
        env.reset(seed=seed)
        seen |= {round(float(c), 3) for c in env.env.fleet.layout.battery.capacity_kwh}
    assert seen <= {round(c, 3) for c in capacities}


def test_squashed_gaussian_logp_kl_entropy_match_sampling_references():
    """The tanh-squashed Gaussian PPO trains with: log-density by the change of variables, KL and entropy
    against Monte-Carlo estimates from samples (references computed here, not by the class)."""
    import torch
    from vpprl.training.rllib_home_batch import SquashedHomeGaussian

    torch.manual_seed(0)
    loc_p, loc_q = torch.tensor([[0.3, -1.2]]), torch.tensor([[0.1, -0.8]])
    log_std_p, log_std_q = torch.tensor([[-0.5, 0.2]]), torch.tensor([[-0.3, 0.0]])
    p = SquashedHomeGaussian.from_logits(torch.cat([loc_p, log_std_p], -1))
    q = SquashedHomeGaussian.from_logits(torch.cat([loc_q, log_std_q], -1))
    x = torch.distributions.Normal(loc_p, log_std_p.exp()).sample((200_000,))  # pre-squash samples of p
    a = torch.tanh(x)
    log_jacobian = torch.log1p(-torch.tanh(x.double()) ** 2).float()

    def density(loc, log_std):  # log-density of a = tanh(x) by the change of variables, from x itself
        return (torch.distributions.Normal(loc, log_std.exp()).log_prob(x) - log_jacobian).sum(-1)

    by_hand = density(loc_p, log_std_p)
    inner = (a.abs() < 0.999).all(-1)  # away from the bounds, where float32 atanh(a) is exact enough
    np.testing.assert_allclose(p.logp(a)[inner].numpy(), by_hand[inner].numpy(), atol=2e-3)
    kl_mc = float((by_hand - density(loc_q, log_std_q)).mean())
    assert float(p.kl(q).squeeze()) == pytest.approx(kl_mc, abs=0.01)
    entropy_mc = float(-by_hand.mean())
    entropy = float(torch.stack([p.entropy() for _ in range(4000)]).mean())
    assert entropy == pytest.approx(entropy_mc, abs=0.02)
    np.testing.assert_allclose(p.to_deterministic().sample().numpy(), np.tanh(loc_p.numpy()), atol=1e-7)
    assert float(a.abs().max()) <= 1.0


def test_squashed_policy_gradient_is_unbiased_up_to_the_bounded_mean():
    """Score-function identity E[d log p(a) / d loc] = 0, from the stored (squashed) actions as PPO sees them:
    holds at the module's bound on the mean (|loc| <= 5); past |loc| ~ 7 float32 actions saturate at exactly
    +-1 and the gradient is biased, which is why the module bounds the mean. The module's outputs stay bounded
    however large its raw output."""
    import torch
    from vpprl.training.rllib_home_batch import MAX_SQUASHED_MEAN, SharedHomeModule, SquashedHomeGaussian

    torch.manual_seed(0)
    for loc_value, biased in ((MAX_SQUASHED_MEAN, False), (8.0, True)):
        loc = torch.full((1, NUM_DEVICE_CLASSES), loc_value, requires_grad=True)
        dist = SquashedHomeGaussian.from_logits(torch.cat([loc, torch.full_like(loc, -1.0)], -1))
        actions = dist.sample(sample_shape=torch.Size([100_000])).detach()
        grad, = torch.autograd.grad(dist.logp(actions).mean(), loc)
        assert (float(grad.abs().max()) > 1.0) is biased
    env = VppHomeBatchEnv(task="price_arbitrage", num_homes=3)
    module = SharedHomeModule(observation_space=env.observation_space, action_space=env.action_space,
                              model_config={"hidden": [8], "action_distribution": "squashed_gaussian"})
    with torch.no_grad():
        module.pi[-1].bias.fill_(50.0)
        obs = torch.as_tensor(env.reset(seed=0)[0])
        mean = module._forward({"obs": obs})["action_dist_inputs"][..., :NUM_DEVICE_CLASSES]
        action = module.deterministic_action(obs)
    assert float(mean.max()) <= MAX_SQUASHED_MEAN
    np.testing.assert_allclose(action.numpy(), np.tanh(mean.numpy()), atol=1e-6)


def test_initial_log_std_by_class_sets_each_class_exploration_noise():
    """A fresh module's sampled actions spread by exp(log-std) of their class: with {battery: -1, ev: -1} 0.37
    (e^-1) for those two, 0.61 (e^-0.5, ``initial_log_std``) for the rest, measured from 20,000 samples around the
    mean; a class name that is not a device class, or a log-std outside [-10, 2], stops at start-up naming the
    field."""
    import torch
    from vpprl.envs.devices import DEVICE_CLASSES
    from vpprl.training.config import AgentConfig
    from vpprl.training.rllib_home_batch import SharedHomeModule

    torch.manual_seed(0)
    agent = AgentConfig(initial_log_std_by_class={"battery": -1.0, "ev": -1.0})
    assert AgentConfig().initial_log_std_by_class == {}  # the default: initial_log_std for every class
    env = VppHomeBatchEnv(task="price_arbitrage", num_homes=2)
    module = SharedHomeModule(observation_space=env.observation_space, action_space=env.action_space,
                              model_config={"hidden": [8], "initial_log_std": agent.initial_log_std,
                                            "initial_log_std_by_class": dict(agent.initial_log_std_by_class)})
    with torch.no_grad():
        obs = torch.as_tensor(env.reset(seed=0)[0][:1])
        inputs = module._forward({"obs": obs})["action_dist_inputs"]
        samples = module.action_dist_cls.from_logits(inputs).sample(sample_shape=torch.Size([20_000]))
    spread = samples.reshape(20_000, -1).std(dim=0).numpy()
    want = [0.368 if name in ("battery", "ev") else 0.607 for name in DEVICE_CLASSES]
    np.testing.assert_allclose(spread, want, rtol=0.03)
    with pytest.raises(ValueError, match=r"initial_log_std_by_class: unknown device class\(es\) \['batery'\]; "
                                         r"allowed: \['battery', 'ev'"):
        AgentConfig(initial_log_std_by_class={"batery": -1.0})
    with pytest.raises(ValueError, match=r"initial_log_std_by_class.ev must be in \[-10, 2\]"):
        AgentConfig(initial_log_std_by_class={"ev": 3.0})
