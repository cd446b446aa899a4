"""The cheese-in-the-corner gridworld as a ``gymnasium.Env``, for standard RL tools.

The same levels and conventions as the batched torch code (:mod:`toymodels.models.gridworld.levels`):
actions ``Discrete(4)`` (0 = up, 1 = left, 2 = down, 3 = right), blocked moves stay, reward 1 on
entering the cheese and the episode *terminates*; it is *truncated* after ``max_episode_steps``
steps. The observation is the one-hot ``(wall, mouse, cheese)`` vector of ``3·H·W`` float32 numbers
(a ``Box(0, 1)``). ``reset`` draws a level uniformly from the level set with the env's
``np_random`` (``options={"level": i}`` picks level ``i``); ``info["level"]`` says which.

``GridworldEnv()`` without arguments uses :func:`~toymodels.models.gridworld.levels.default_levels`
(256 7×7 DFS mazes, ``α = 0.1``). The environment is also registered with gymnasium as
``toymodels/CheeseInTheCorner-v0`` (``gymnasium.make``).
"""

from __future__ import annotations

import gymnasium
import numpy as np

from toymodels.checks import as_int
from toymodels.models.gridworld.levels import Levels, default_levels

__all__ = ["GridworldEnv", "ENV_ID"]

ENV_ID = "toymodels/CheeseInTheCorner-v0"

_COLOURS = {"free": (235, 235, 235), "wall": (60, 60, 60), "mouse": (150, 90, 40),
            "cheese": (250, 200, 30)}


class GridworldEnv(gymnasium.Env):
    """A cheese-in-the-corner maze (module docstring).

    Args:
        levels: the level set (default: :func:`default_levels`).
        max_episode_steps: steps after which an episode is truncated (default ``4·H·W``).
        render_mode: ``None`` or ``"rgb_array"`` (an ``(8H, 8W, 3)`` uint8 picture).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, levels: Levels | None = None, max_episode_steps: int | None = None,
                 render_mode: str | None = None):
        if levels is None:
            levels = default_levels()
        if not isinstance(levels, Levels):
            raise TypeError(f"levels must be a Levels batch, got {type(levels).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.levels = levels
        self.render_mode = render_mode
        self.max_episode_steps = as_int("max_episode_steps", max_episode_steps, 1) \
            if max_episode_steps is not None else 4 * levels.num_cells
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (levels.observation_size,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(4)
        self._walls = levels.walls.reshape(len(levels), -1).numpy()
        self._transitions = levels.transitions.numpy()
        self._level = 0
        self._cell = int(levels.start[0])
        self._steps = 0
        self._done = False

    def _observation(self) -> np.ndarray:
        n = self.levels.num_cells
        obs = np.zeros(3 * n, dtype=np.float32)
        obs[:n] = self._walls[self._level]
        obs[n + self._cell] = 1.0
        obs[2 * n + int(self.levels.cheese[self._level])] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "level" in options:
            level = as_int("options['level']", options["level"], 0)
            if level >= len(self.levels):
                raise ValueError(f"options['level'] must lie in 0..{len(self.levels) - 1}, got {level}")
        else:
            level = int(self.np_random.integers(len(self.levels)))
        self._level, self._cell = level, int(self.levels.start[level])
        self._steps, self._done = 0, False
        return self._observation(), {"level": level}

    def step(self, action):
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) \
                or not 0 <= int(action) <= 3:
            raise ValueError(f"unknown action {action!r}: actions are 0=up, 1=left, 2=down, 3=right")
        if self._done:
            raise RuntimeError("the episode has ended: call reset() before step()")
        self._cell = int(self._transitions[self._level, self._cell, int(action)])
        self._steps += 1
        terminated = self._cell == int(self.levels.cheese[self._level])
        truncated = not terminated and self._steps >= self.max_episode_steps
        self._done = terminated or truncated
        reward = 1.0 if terminated else 0.0
        return self._observation(), reward, terminated, truncated, {"level": self._level}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        h, w = self.levels.height, self.levels.width
        grid = np.empty((h * w, 3), dtype=np.uint8)
        grid[:] = _COLOURS["free"]
        grid[self._walls[self._level]] = _COLOURS["wall"]
        grid[int(self.levels.cheese[self._level])] = _COLOURS["cheese"]
        grid[self._cell] = _COLOURS["mouse"]
        return np.repeat(np.repeat(grid.reshape(h, w, 3), 8, 0), 8, 1)


def _register() -> None:
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point=GridworldEnv)


_register()