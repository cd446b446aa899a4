"""toymodels.models.gridworld: levels, exact regret against value iteration and BFS written here,
gradients, the level mixture, the gymnasium environment, training, and the LLC path."""

from collections import deque

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from toymodels import estimate_llc
from toymodels.models.gridworld import (
    ENV_ID,
    GridworldEnv,
    Levels,
    MLPPolicy,
    SimplexPolicy,
    check_actions,
    dfs_maze,
    flat_parameters,
    level_regrets,
    load_flat_parameters,
    module_level_regrets,
    open_maze,
    optimal_policy,
    optimal_values,
    policy_probabilities,
    policy_values,
    regret,
    regret_potential,
    rollout,
    sample_levels,
    train_exact,
    train_reinforce,
)
from toymodels.models.gridworld.training import _reinforce_loss

GAMMA = 0.9
MOVES = {0: (-1, 0), 1: (0, -1), 2: (1, 0), 3: (0, 1)}  # up, left, down, right

HAND = ["#####",
        "#C..#",
        "#.#.#",
        "#..M#",
        "#####"]


def _levels(seed=0, num=6, size=7, maze="dfs", **options):
    return sample_levels(num, torch.Generator().manual_seed(seed), alpha=0.5, height=size,
                         width=size, maze=maze, **options)


def _random_policy(levels, seed, batch=()):
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(batch + (len(levels), levels.num_cells, 4), generator=g, dtype=torch.float64)
    return torch.softmax(logits, -1)


def _move(walls, cell, action):
    h, w = walls.shape
    r, c = divmod(cell, w)
    nr, nc = r + MOVES[action][0], c + MOVES[action][1]
    return nr * w + nc if 0 <= nr < h and 0 <= nc < w and not walls[nr, nc] else cell


def _value_iteration(walls, cheese, pi, gamma):
    """V^π of one level by iterating the Bellman operator (written independently of the library)."""
    walls = np.asarray(walls)
    n = walls.size
    deciding = [s for s in range(n) if not walls.flat[s] and s != cheese]
    nxt = {s: [_move(walls, s, a) for a in range(4)] for s in deciding}
    v = np.zeros(n)
    for _ in range(5000):
        new = np.zeros(n)
        for s in deciding:
            new[s] = sum(pi[s, a] * (1.0 if nxt[s][a] == cheese else gamma * v[nxt[s][a]])
                         for a in range(4))
        if np.max(np.abs(new - v)) < 1e-16:
            return new
        v = new
    return v


def _bfs(walls, cheese):
    walls = np.asarray(walls)
    dist = {cheese: 0}
    queue = deque([cheese])
    while queue:
        s = queue.popleft()
        for a in range(4):
            t = _move(walls, s, a)
            if t not in dist:
                dist[t] = dist[s] + 1
                queue.append(t)
    return dist


# -- exact values and regret ---------------------------------------------------------------------
@pytest.mark.parametrize("maze,size,seed", [("dfs", 7, 0), ("dfs", 5, 1), ("open", 6, 2)])
def test_values_and_regret_equal_value_iteration(maze, size, seed):
    levels = _levels(seed, num=5, size=size, maze=maze)
    pi = _random_policy(levels, seed)
    values = policy_values(levels, pi, GAMMA)
    star = optimal_values(levels, GAMMA)
    per_level = []
    for i in range(len(levels)):
        vi = _value_iteration(levels.walls[i].numpy(), int(levels.cheese[i]), pi[i].numpy(), GAMMA)
        free = levels.free[i].numpy()
        np.testing.assert_allclose(values[i].numpy()[free], vi[free], rtol=0, atol=1e-10)
        s0 = int(levels.start[i])
        per_level.append(float(star[i, s0]) - vi[s0])
    assert abs(float(regret(levels, pi, GAMMA)) - np.mean(per_level)) < 1e-10


def test_values_of_many_policies_at_once():
    levels = _levels(3, num=4)
    pis = _random_policy(levels, 3, batch=(3,))
    batched = regret(levels, pis, GAMMA)
    assert batched.shape == (3,)
    for k in range(3):
        assert float(batched[k]) == pytest.approx(float(regret(levels, pis[k], GAMMA)), abs=1e-14)


def test_optimal_values_are_gamma_to_distance_minus_one():
    levels = Levels.concat([_levels(4, num=4), _levels(5, num=3, size=7, maze="open")])
    star = optimal_values(levels, GAMMA)
    for i in range(len(levels)):
        walls, cheese = levels.walls[i].numpy(), int(levels.cheese[i])
        dist = _bfs(walls, cheese)
        for s in range(levels.num_cells):
            expected = GAMMA ** (dist[s] - 1) if s in dist and s != cheese and not walls.flat[s] else 0.0
            assert float(star[i, s]) == pytest.approx(expected, abs=1e-15)
    # V* is also V^π of the optimal deterministic policy: the regret there is 0
    best = optimal_policy(levels)
    assert torch.allclose(policy_values(levels, best, GAMMA), star, atol=1e-14)
    assert abs(float(regret(levels, best, GAMMA))) < 1e-14


def test_hand_level():
    """Cheese at (1, 1), mouse at (3, 3): d = 4 along either side of the pillar."""
    levels = Levels.from_strings(HAND)
    assert levels.to_strings(0) == HAND
    assert float(levels.distances[0, levels.start[0]]) == 4
    assert float(optimal_values(levels, 0.5)[0, levels.start[0]]) == 0.125
    # always "up": (3,3) -> (1,3), then stuck: V = 0, regret = V* = γ³
    up = torch.zeros(1, 25, 4, dtype=torch.float64)
    up[..., 0] = 1
    assert float(regret(levels, up, 0.5)) == pytest.approx(0.125, abs=1e-15)
    assert bool(levels.cheese_in_corner[0])


def test_regret_is_zero_at_the_optimal_tabular_policy_and_positive_elsewhere():
    levels = _levels(6, num=5)
    tab = SimplexPolicy(levels, GAMMA)
    vertex = tab.coordinates_of(optimal_policy(levels))
    assert abs(float(tab(vertex))) < 1e-12
    assert torch.allclose(tab.probabilities(vertex)[..., tab.states[:, 0], tab.states[:, 1], :],
                          optimal_policy(levels)[tab.states[:, 0], tab.states[:, 1]], atol=1e-25)
    draws = tab.sample_prior(16, 0)
    assert (tab(draws) > 1e-6).all()
    assert (tab.level_regrets(draws) >= -1e-14).all()
    assert torch.isfinite(tab.log_prior(draws)).all()


def test_tabular_states_are_shared_by_levels_that_differ_only_in_the_start():
    other = [r.replace("M", ".") for r in HAND]
    other[1] = "#CM.#"
    levels = Levels.from_strings(HAND, other, HAND)
    tab = SimplexPolicy(levels, GAMMA)
    assert tab.num_states == 7 and tab.dim == 28  # 8 free cells, the cheese excepted
    assert tab.states[:, 0].tolist() == [0] * 7 and tab.states[:, 1].tolist() == [7, 8, 11, 13, 16, 17, 18]
    s = tab.sample_prior(2, 0)
    probs = tab.probabilities(s)
    assert torch.equal(probs[:, 0], probs[:, 1]) and torch.equal(probs[:, 0], probs[:, 2])
    moved = Levels.from_strings(HAND, [r.replace("C", "x").replace("M", "C").replace("x", "M") for r in HAND])
    assert SimplexPolicy(moved, GAMMA).num_states == 14  # another cheese: other states


def test_gradient_of_the_regret_matches_finite_differences():
    levels = _levels(7, num=3, size=5)
    tab = SimplexPolicy(levels, GAMMA)
    s = tab.sample_prior(1, 1)[0].requires_grad_(True)
    assert torch.autograd.gradcheck(tab, (s,), eps=1e-6, atol=1e-7)
    policy = MLPPolicy(5, 5, (6,), activation="tanh", generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    pot = regret_potential(levels, policy, GAMMA)
    w = pot.init.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(pot, (w,), eps=1e-6, atol=1e-7)
    with torch.no_grad():
        # the potential of the flat vector is the regret of the module's own probabilities
        assert float(pot(pot.init)) == pytest.approx(
            float(regret(levels, policy_probabilities(policy, levels), GAMMA)), abs=1e-14)
        batch = torch.stack([pot.init, pot.init + 0.1])
        assert torch.allclose(pot(batch), torch.stack([pot(batch[0]), pot(batch[1])]), atol=1e-14)


def test_flat_parameters_round_trip():
    policy = MLPPolicy(5, 5, (4, 3), generator=torch.Generator().manual_seed(0))
    w = flat_parameters(policy)
    assert w.numel() == sum(p.numel() for p in policy.parameters())
    load_flat_parameters(policy, w + 1)
    assert torch.equal(flat_parameters(policy), w + 1)
    again = MLPPolicy(5, 5, (4, 3), generator=torch.Generator().manual_seed(0))
    assert torch.equal(flat_parameters(again), w)


# -- levels ----------------------------------------------------------------------------------------
def test_cheese_in_the_corner_with_frequency_one_minus_alpha():
    alpha, num = 0.3, 400
    levels = sample_levels(num, torch.Generator().manual_seed(11), alpha=alpha, height=5, width=5)
    freq = float(levels.cheese_in_corner.double().mean())
    assert abs(freq - (1 - alpha)) < 4 * np.sqrt(alpha * (1 - alpha) / num)
    assert (levels.start != levels.corner).all()
    assert (levels.corner == 6).all()  # (1, 1) in a bordered 5×5 maze
    assert sample_levels(20, torch.Generator().manual_seed(0), alpha=0.0).cheese_in_corner.all()
    assert not sample_levels(20, torch.Generator().manual_seed(0), alpha=1.0).cheese_in_corner.any()


def test_mazes_are_connected_and_seeded():
    g = torch.Generator().manual_seed(0)
    for walls in (dfs_maze(7, 9, g), dfs_maze(9, 7, g, extra_openings=3), open_maze(6, 6, g)):
        free = np.flatnonzero(~walls.numpy().reshape(-1))
        assert set(_bfs(walls.numpy(), int(free[0]))) >= set(free.tolist())
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    assert torch.equal(dfs_maze(7, 7, torch.Generator().manual_seed(3)),
                       dfs_maze(7, 7, torch.Generator().manual_seed(3)))


def test_observations_and_steps():
    levels = Levels.from_strings(HAND)
    obs = levels.observations()
    assert obs.shape == (1, 25, 75)
    s0 = int(levels.start[0])
    one = levels.observation([0], [s0])[0]
    assert torch.equal(one, obs[0, s0])
    assert torch.equal(one[:25].bool(), levels.walls[0].reshape(-1))
    assert one[25 + s0] == 1 and one[25:50].sum() == 1 and one[50 + 6] == 1 and one[50:].sum() == 1
    nxt, reward = levels.step([0, 0, 0], [s0, s0, 7], [3, 0, 1])  # right: wall; up; left: cheese
    assert nxt.tolist() == [s0, s0 - 5, 6] and reward.tolist() == [0, 0, 1]
    assert len(levels[[0, 0]]) == 2 and len(Levels.concat([levels, levels])) == 2


@pytest.mark.parametrize("rows,message", [
    (["#####", "#C.##", "#.#M#", "#####"], "walls enclose"),
    (["####", "#C.#", "#..#", "####"], "exactly one 'M'"),
])
def test_bad_levels_from_strings(rows, message):
    with pytest.raises(ValueError, match=message):
        Levels.from_strings(rows)


def test_bad_levels_are_refused_with_clear_errors():
    walls = torch.tensor([[c == "#" for c in r] for r in HAND])
    with pytest.raises(ValueError, match="the start .* is on a wall"):
        Levels(walls, [0], [6])
    with pytest.raises(ValueError, match="the cheese .* is on a wall"):
        Levels(walls, [6], [12])
    with pytest.raises(ValueError, match="start and the cheese are the same cell"):
        Levels(walls, [6], [6])
    with pytest.raises(ValueError, match="must lie in 0..24"):
        Levels(walls, [25], [6])
    with pytest.raises(ValueError, match="unknown action 4"):
        check_actions(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="unknown action -1"):
        Levels.from_strings(HAND).step([0], [18], [-1])
    with pytest.raises(ValueError, match="integers"):
        check_actions(torch.tensor([0.5]))
    levels = Levels.from_strings(HAND)
    with pytest.raises(ValueError, match="gamma must lie in"):
        regret(levels, torch.full((1, 25, 4), 0.25), 1.0)
    with pytest.raises(ValueError, match=r"\(..., 1, 25, 4\)"):
        regret(levels, torch.full((25, 4), 0.25), 0.9)
    with pytest.raises(ValueError, match="odd height and width"):
        dfs_maze(6, 7, torch.Generator())
    with pytest.raises(ValueError, match="weights must be"):
        regret(levels, torch.full((1, 25, 4), 0.25), 0.9, weights=[-1.0])


# -- the gymnasium environment ---------------------------------------------------------------------
def test_gymnasium_env_passes_the_checker():
    env = gymnasium.make(ENV_ID)
    check_env(env.unwrapped)
    plain = GridworldEnv()
    assert isinstance(plain, gymnasium.Env) and plain.observation_space.shape == (147,)
    check_env(gymnasium.make(ENV_ID, render_mode="rgb_array").unwrapped)
    import toymodels

    assert toymodels.GridworldEnv is GridworldEnv and "GridworldEnv" in toymodels.__all__


def test_env_steps_follow_the_conventions():
    env = GridworldEnv(Levels.from_strings(HAND), max_episode_steps=4, render_mode="rgb_array")
    obs, info = env.reset(seed=0)
    assert info["level"] == 0 and obs.dtype == np.float32 and obs[25 + 18] == 1
    assert env.render().shape == (40, 40, 3)
    obs, reward, terminated, truncated, _ = env.step(3)  # into the wall: stays
    assert obs[25 + 18] == 1 and (reward, terminated, truncated) == (0.0, False, False)
    for action in (0, 0, 0):  # up to (1, 3), then into the border: the fourth step truncates
        obs, reward, terminated, truncated, _ = env.step(action)
    assert obs[25 + 8] == 1 and (reward, terminated, truncated) == (0.0, False, True)
    env.reset(options={"level": 0})
    for action in (1, 1, 0, 0):  # left, left, up, up: the cheese at the fourth step
        obs, reward, terminated, truncated, _ = env.step(np.int64(action))
    assert (reward, terminated, truncated) == (1.0, True, False) and obs[25 + 6] == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValueError, match="unknown action 7"):
        env.step(7)


# -- training and the LLC path -------------------------------------------------------------------
def test_gradient_descent_lowers_the_exact_regret():
    levels = _levels(8, num=8, size=5)
    policy = MLPPolicy(5, 5, (16,), activation="tanh", generator=torch.Generator().manual_seed(0))
    run = train_exact(policy, levels, GAMMA, steps=60, lr=0.05, optimizer="adam", record_every=20)
    assert run.steps == [0, 20, 40, 60] and len(run.checkpoints) == 4
    assert run.regrets[-1] < 0.7 * run.regrets[0]
    load_flat_parameters(policy, run.checkpoints[0])
    with torch.no_grad():
        first = float(regret(levels, policy_probabilities(policy, levels), GAMMA))
    assert first == pytest.approx(run.regrets[0])


@pytest.mark.parametrize("baseline", ["none", "mean", "learned"])
def test_reinforce_runs(baseline):
    levels = _levels(9, num=6, size=5)
    policy = MLPPolicy(5, 5, (8,), generator=torch.Generator().manual_seed(0))
    run = train_reinforce(policy, levels, GAMMA, torch.Generator().manual_seed(1), steps=30, lr=0.03,
                          num_episodes=32, baseline=baseline, record_every=10)
    assert run.steps == [0, 10, 20, 30] and len(run.returns) == 3
    assert all(np.isfinite(run.regrets)) and run.regrets[-1] < run.regrets[0]


def test_reinforce_estimates_the_exact_gradient():
    """The mean REINFORCE gradient over many episodes matches -∇(mean V^π(s₀)) = ∇R, projected on
    ∇R, within 4 standard errors (20 batches)."""
    levels = _levels(10, num=3, size=5)
    policy = MLPPolicy(5, 5, (4,), activation="tanh", generator=torch.Generator().manual_seed(2),
                       dtype=torch.float64)
    exact = torch.autograd.grad(regret(levels, policy_probabilities(policy, levels), GAMMA),
                                list(policy.parameters()))
    direction = torch.cat([g.reshape(-1) for g in exact])
    g = torch.Generator().manual_seed(3)
    projections = []
    for _ in range(20):
        batch = rollout(policy, levels, g, num_episodes=400, max_steps=150)
        loss, _, _ = _reinforce_loss(batch, GAMMA, "mean", None)
        grads = torch.autograd.grad(loss, list(policy.parameters()))
        projections.append(float(torch.cat([x.reshape(-1) for x in grads]) @ direction))
    mean, se = np.mean(projections), np.std(projections, ddof=1) / np.sqrt(len(projections))
    target = float(direction @ direction)
    assert abs(mean - target) < 4 * se, (mean, target, se)


def test_smoke_estimate_llc_on_mlp_regret():
    levels = _levels(12, num=4, size=5)
    policy = MLPPolicy(5, 5, (4,), generator=torch.Generator().manual_seed(0))
    pot = regret_potential(levels, policy, GAMMA)
    res = estimate_llc(pot, init=pot.init, nbeta=50.0, localization=1.0, step_size=1e-4,
                       num_chains=2, num_draws=10, num_burnin_steps=5, num_steps_bw_draws=1,
                       progress=False)
    assert np.isfinite(res.llc_mean)
    tab = SimplexPolicy(levels, GAMMA)
    res = estimate_llc(tab, init=tab.coordinates_of(optimal_policy(levels), floor=1e-8), nbeta=50.0,
                       log_prior=tab.log_prior, step_size=1e-3, num_chains=2, num_draws=10,
                       num_burnin_steps=5, num_steps_bw_draws=1, progress=False)
    assert np.isfinite(res.llc_mean)


def test_levels_sharing_maze_and_cheese_share_one_bellman_system_with_the_same_regrets():
    """RegretPotential and training solve one system per distinct (maze, cheese); the per-level
    regrets equal those of a solve per level."""
    g = torch.Generator().manual_seed(3)
    levels = Levels.concat([sample_levels(40, g, alpha=0.3, maze=dfs_maze(7, 7, g)),
                            sample_levels(10, g, alpha=0.5)])
    tasks, task_of_level = levels.tasks
    keys = {(levels.walls[i].numpy().tobytes(), int(levels.cheese[i])) for i in range(len(levels))}
    assert len(tasks) == len(keys) < len(levels)
    assert torch.equal(tasks.cheese[task_of_level], levels.cheese)
    assert torch.equal(tasks.walls[task_of_level], levels.walls)
    policy = MLPPolicy(7, 7, hidden=(8,), generator=g, dtype=torch.float64)
    potential = regret_potential(levels, policy, 0.9)
    w = potential.init + 0.3 * torch.randn(2, potential.dim, generator=g, dtype=torch.float64)
    per_level = level_regrets(levels, potential.probabilities(w), 0.9)
    assert torch.allclose(potential.level_regrets(w), per_level, rtol=0, atol=1e-13)
    direct = level_regrets(levels, policy_probabilities(policy, levels), 0.9)
    assert torch.allclose(module_level_regrets(policy, levels, 0.9), direct, rtol=0, atol=1e-13)
