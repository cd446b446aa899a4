"""Cheese-in-the-corner levels: mazes, the level mixture, validation, and the batched representation.

Conventions (shared with ``theory.gridworld``):

* a maze is ``H×W`` cells, each a wall or free; cell ``(row, col)`` has the flat index
  ``row·W + col``, the row index growing downwards;
* a level is (maze, start cell, cheese cell); actions are ``0 = up`` (row − 1), ``1 = left``
  (col − 1), ``2 = down`` (row + 1), ``3 = right`` (col + 1);
* moving into a wall or off the grid leaves the mouse in place;
* entering the cheese gives reward 1 and ends the episode: the cheese cell is absorbing with value
  0; there is no other reward, and the discount is ``γ ∈ (0, 1)``. Hence ``V*(s) = γ^(d(s) − 1)``
  with ``d`` the shortest-path (BFS) distance to the cheese;
* training levels (Langosco et al. 2022, "Goal misgeneralization in deep RL"; the ``jaxgmg``
  cheese-in-the-corner environments): the start is uniform over the free cells connected to the
  corner other than the corner, and the cheese is in the corner with probability ``1 − α``,
  otherwise uniform over those cells other than the start (reachable, free, neither the start
  nor the corner): the cheese is in the corner with frequency exactly ``1 − α``. The *corner* is
  the free cell nearest the top-left (smallest ``row + col``, then smallest row): ``(1, 1)`` in a
  maze with a border of walls.

The observation of a state (a level with the mouse at a cell) is three one-hot channels
``(wall, mouse, cheese)``, each ``H×W`` flattened row-major, concatenated: ``3·H·W`` numbers.
A batch of levels is a :class:`Levels`: ``walls (L, H, W)`` bool, ``start (L,)`` and
``cheese (L,)`` flat cell indices. Randomness always comes from a ``torch.Generator`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import torch

from toymodels.checks import as_float, as_int

__all__ = ["ACTIONS", "MOVES", "Levels", "dfs_maze", "open_maze", "corner_cell", "sample_levels",
           "default_levels", "check_actions"]

#: action names, in action order
ACTIONS = ("up", "left", "down", "right")
#: (row, col) displacement of each action
MOVES = ((-1, 0), (0, -1), (1, 0), (0, 1))


def check_actions(actions: torch.Tensor) -> torch.Tensor:
    """``actions`` as a long tensor, refused unless every entry is 0, 1, 2 or 3."""
    actions = torch.as_tensor(actions)
    if actions.is_floating_point() or actions.is_complex() or actions.dtype == torch.bool:
        raise ValueError(f"actions must be integers 0=up, 1=left, 2=down, 3=right, got {actions.dtype}")
    actions = actions.long()
    bad = (actions < 0) | (actions > 3)
    if bad.any():
        raise ValueError(f"unknown action {int(actions[bad][0])}: actions are 0=up, 1=left, 2=down, "
                         "3=right")
    return actions


def _cell(index: int, width: int) -> tuple[int, int]:
    return (int(index) // width, int(index) % width)


def _transitions(walls: torch.Tensor) -> torch.Tensor:
    """``(L, H, W)`` walls -> ``(L, N, 4)`` the cell each action leads to (itself when blocked)."""
    num_levels, height, width = walls.shape
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    moves = torch.tensor(MOVES)
    to_rows, to_cols = rows[:, None] + moves[:, 0], cols[:, None] + moves[:, 1]  # (N, 4)
    inside = (to_rows >= 0) & (to_rows < height) & (to_cols >= 0) & (to_cols < width)
    target = torch.where(inside, to_rows.clamp(0, height - 1) * width + to_cols.clamp(0, width - 1),
                         torch.arange(height * width)[:, None])
    free = ~walls.reshape(num_levels, -1)
    open_target = free.gather(1, target.reshape(1, -1).expand(num_levels, -1)).reshape(num_levels, -1, 4)
    own = torch.arange(height * width)[None, :, None].expand(num_levels, -1, 4)
    return torch.where(open_target & inside, target.expand(num_levels, -1, -1), own)


def _distances(transitions: torch.Tensor, walls: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """``(L, N)`` BFS distances to ``goal`` (``inf`` on walls and cells that cannot reach it).

    Moves between free cells are reversible, so relaxing ``d(s) ← 1 + min_a d(next(s, a))`` until
    nothing changes gives the distance from ``s`` to the goal.
    """
    num_levels, num_cells, _ = transitions.shape
    free = ~walls.reshape(num_levels, -1)
    dist = torch.full((num_levels, num_cells), float("inf"), dtype=torch.float64)
    dist[torch.arange(num_levels), goal] = 0.0
    flat = transitions.reshape(num_levels, -1)
    for _ in range(num_cells):
        step = dist.gather(1, flat).reshape(num_levels, num_cells, 4).amin(-1) + 1.0
        new = torch.where(free, torch.minimum(dist, step), dist)
        if torch.equal(new, dist):
            break
        dist = new
    return dist


def corner_cell(walls: torch.Tensor) -> int:
    """The flat index of the free cell nearest the top-left of an ``(H, W)`` maze."""
    height, width = walls.shape
    free = torch.nonzero(~walls.bool())
    if free.numel() == 0:
        raise ValueError("the maze has no free cell")
    key = (free[:, 0] + free[:, 1]) * height + free[:, 0]
    row, col = free[int(torch.argmin(key))].tolist()
    return row * width + col


class Levels:
    """A batch of ``L`` levels on ``H×W`` grids, validated (module docstring for the conventions).

    Args:
        walls: ``(L, H, W)`` (or one ``(H, W)`` maze for every level), true on walls.
        start, cheese: ``(L,)`` flat cell indices ``row·W + col``.

    Derived tensors (computed once): :attr:`transitions` ``(L, N, 4)``, :attr:`distances`
    ``(L, N)`` to the cheese, :attr:`free`, :attr:`corner`, :attr:`cheese_in_corner`.
    """

    def __init__(self, walls, start, cheese):
        walls = torch.as_tensor(walls)
        start, cheese = torch.as_tensor(start).reshape(-1), torch.as_tensor(cheese).reshape(-1)
        if walls.dim() == 2:
            walls = walls.expand(start.numel(), -1, -1)
        if walls.dim() != 3 or walls.shape[0] == 0 or min(walls.shape[1:]) < 1:
            raise ValueError(f"walls must be an (L, H, W) tensor of L ≥ 1 mazes, got shape "
                             f"{tuple(walls.shape)}")
        if walls.dtype != torch.bool and not torch.all((walls == 0) | (walls == 1)):
            raise ValueError("walls must be true/false (or 0/1) per cell")
        self.walls = walls.bool().clone()
        num_levels, height, width = self.walls.shape
        for name, cells in (("start", start), ("cheese", cheese)):
            if cells.shape != (num_levels,) or cells.is_floating_point() or cells.dtype == torch.bool:
                raise ValueError(f"{name} must hold one integer cell index per level ({num_levels}), "
                                 f"got {cells.dtype} of shape {tuple(cells.shape)}")
            if (cells < 0).any() or (cells >= height * width).any():
                raise ValueError(f"{name} indices must lie in 0..{height * width - 1} (row·{width} + col)")
        self.start, self.cheese = start.long().clone(), cheese.long().clone()
        self._validate()

    def _validate(self) -> None:
        flat = self.walls.reshape(len(self), -1)
        rows = torch.arange(len(self))
        for name, cells in (("start", self.start), ("cheese", self.cheese)):
            on_wall = flat[rows, cells]
            if on_wall.any():
                i = int(torch.nonzero(on_wall)[0])
                raise ValueError(f"level {i}: the {name} {self.cell(cells[i])} is on a wall")
        same = self.start == self.cheese
        if same.any():
            i = int(torch.nonzero(same)[0])
            raise ValueError(f"level {i}: the start and the cheese are the same cell "
                             f"{self.cell(self.start[i])}; the start must differ from the cheese")
        unreachable = ~torch.isfinite(self.distances[rows, self.start])
        if unreachable.any():
            i = int(torch.nonzero(unreachable)[0])
            raise ValueError(f"level {i}: the cheese {self.cell(self.cheese[i])} cannot be reached "
                             f"from the start {self.cell(self.start[i])} (walls enclose one of them)")

    # -- shapes and indexing -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.walls.shape[0]

    @property
    def height(self) -> int:
        return self.walls.shape[1]

    @property
    def width(self) -> int:
        return self.walls.shape[2]

    @property
    def num_cells(self) -> int:
        return self.height * self.width

    @property
    def observation_size(self) -> int:
        return 3 * self.num_cells

    def cell(self, index) -> tuple[int, int]:
        """``(row, col)`` of a flat cell index."""
        return _cell(int(index), self.width)

    def __getitem__(self, index) -> Levels:
        """The levels selected by an integer, slice, index tensor or boolean mask."""
        if isinstance(index, int):
            index = [index]
        index = torch.arange(len(self))[index]
        if index.numel() == 0:
            raise ValueError("the selection holds no level")
        return Levels(self.walls[index], self.start[index], self.cheese[index])

    @staticmethod
    def concat(parts: Sequence[Levels]) -> Levels:
        return Levels(torch.cat([p.walls for p in parts]), torch.cat([p.start for p in parts]),
                      torch.cat([p.cheese for p in parts]))

    @classmethod
    def from_strings(cls, *mazes: Sequence[str]) -> Levels:
        """Levels drawn as text, one list of row strings per level: ``#`` wall, ``.`` free,
        ``M`` the mouse's start, ``C`` the cheese (each exactly once)."""
        walls, starts, cheeses = [], [], []
        for k, rows in enumerate(mazes):
            if isinstance(rows, str):
                rows = rows.split()
            if len({len(r) for r in rows}) != 1 or any(set(r) - set("#.MC") for r in rows):
                raise ValueError(f"maze {k}: rows must have equal lengths and use only '#.MC'")
            text = "".join(rows)
            if text.count("M") != 1 or text.count("C") != 1:
                raise ValueError(f"maze {k}: draw exactly one 'M' (start) and one 'C' (cheese)")
            walls.append(torch.tensor([[ch == "#" for ch in r] for r in rows]))
            starts.append(text.index("M"))
            cheeses.append(text.index("C"))
        if len({w.shape for w in walls}) != 1:
            raise ValueError("all mazes of a Levels batch must have the same size")
        return cls(torch.stack(walls), torch.tensor(starts), torch.tensor(cheeses))

    def to_strings(self, i: int) -> list[str]:
        """Level ``i`` drawn as in :meth:`from_strings`."""
        chars = [["#" if w else "." for w in row] for row in self.walls[i].tolist()]
        for ch, cell in (("M", self.start[i]), ("C", self.cheese[i])):
            r, c = self.cell(cell)
            chars[r][c] = ch
        return ["".join(row) for row in chars]

    def __repr__(self) -> str:
        return f"Levels({len(self)} levels, {self.height}×{self.width})"

    # -- derived tensors -----------------------------------------------------------------------
    @cached_property
    def free(self) -> torch.Tensor:
        """``(L, N)`` true on free cells."""
        return ~self.walls.reshape(len(self), -1)

    @cached_property
    def transitions(self) -> torch.Tensor:
        """``(L, N, 4)`` the cell each action leads to (moves into walls or off the grid stay)."""
        return _transitions(self.walls)

    @cached_property
    def distances(self) -> torch.Tensor:
        """``(L, N)`` float64 BFS distance to the cheese (``inf`` on walls and cut-off cells)."""
        return _distances(self.transitions, self.walls, self.cheese)

    @cached_property
    def corner(self) -> torch.Tensor:
        """``(L,)`` the corner cell of each level's maze."""
        return torch.tensor([corner_cell(w) for w in self.walls])

    @cached_property
    def tasks(self) -> tuple[Levels, torch.Tensor]:
        """``(tasks, task_of_level)``: the distinct (maze, cheese) pairs as a batch of ``T ≤ L``
        levels (each with the start of its first level) and the ``(L,)`` index of each level's
        task. Levels that differ only in their start share one Bellman system, since a policy
        sees the maze, the mouse and the cheese but not where the mouse started."""
        key = torch.cat([self.walls.reshape(len(self), -1).long(), self.cheese[:, None]], 1)
        _, task_of_level = torch.unique(key, dim=0, return_inverse=True)
        first = torch.full((int(task_of_level.max()) + 1,), len(self), dtype=torch.long)
        first = first.scatter_reduce(0, task_of_level, torch.arange(len(self)), "amin")
        return self[first], task_of_level

    @cached_property
    def cheese_in_corner(self) -> torch.Tensor:
        """``(L,)`` true where the cheese is in the corner."""
        return self.cheese == self.corner

    def observations(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(L, N, 3N)``: the observation of the mouse at every cell of every level (mouse on
        walls and on the cheese included; those rows are never used). Computed once per dtype;
        do not modify the result in place."""
        dtype = dtype or torch.get_default_dtype()
        cache = self.__dict__.setdefault("_observations", {})
        if dtype not in cache:
            num_levels, n = len(self), self.num_cells
            eye = torch.eye(n, dtype=torch.bool)
            walls = self.free.logical_not()[:, None, :].expand(-1, n, -1)
            cheese = eye[self.cheese][:, None, :].expand(-1, n, -1)
            mouse = eye[None].expand(num_levels, -1, -1)
            cache[dtype] = torch.cat([walls, mouse, cheese], -1).to(dtype)
        return cache[dtype]

    def observation(self, level_index, cells, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, 3N)`` observations of the mouse at ``cells (B,)`` in levels ``level_index (B,)``."""
        level_index, cells = torch.as_tensor(level_index).long(), torch.as_tensor(cells).long()
        n = self.num_cells
        eye = torch.eye(n, dtype=torch.bool)
        out = torch.cat([~self.free[level_index], eye[cells], eye[self.cheese[level_index]]], -1)
        return out.to(dtype or torch.get_default_dtype())

    def step(self, level_index, cells, actions) -> tuple[torch.Tensor, torch.Tensor]:
        """One move for a batch: ``(next cells (B,), reward (B,) = 1 where the cheese is entered)``.

        ``cells`` must not be the cheese already (the episode has ended there).
        """
        actions = check_actions(actions)
        level_index, cells = torch.as_tensor(level_index).long(), torch.as_tensor(cells).long()
        nxt = self.transitions[level_index, cells, actions]
        return nxt, (nxt == self.cheese[level_index]).to(torch.get_default_dtype())


def dfs_maze(height: int, width: int, generator: torch.Generator, *,
             extra_openings: int = 0) -> torch.Tensor:
    """A random depth-first-search (perfect) maze with a border of walls, ``(H, W)`` bool.

    ``H`` and ``W`` odd ≥ 3: the rooms are the cells with odd row and column, joined by removing
    the wall between a room and a random unvisited neighbour, backtracking when there is none.
    ``extra_openings`` further walls between two rooms are removed at random (loops).
    """
    height, width = as_int("height", height, 3), as_int("width", width, 3)
    if height % 2 == 0 or width % 2 == 0:
        raise ValueError(f"a DFS maze needs odd height and width (rooms at odd cells), got {height}×{width}")
    walls = torch.ones(height, width, dtype=torch.bool)
    rooms_r, rooms_c = (height - 1) // 2, (width - 1) // 2
    visited = torch.zeros(rooms_r, rooms_c, dtype=torch.bool)
    first = int(torch.randint(rooms_r * rooms_c, (1,), generator=generator))
    stack = [divmod(first, rooms_c)]
    visited[stack[0]] = True
    walls[2 * stack[0][0] + 1, 2 * stack[0][1] + 1] = False
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in MOVES
                   if 0 <= r + dr < rooms_r and 0 <= c + dc < rooms_c and not visited[r + dr, c + dc]]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(torch.randint(len(options), (1,), generator=generator))]
        visited[nr, nc] = True
        walls[r + nr + 1, c + nc + 1] = False  # the wall between the two rooms
        walls[2 * nr + 1, 2 * nc + 1] = False
        stack.append((nr, nc))
    inner = [(r, c) for r in range(1, height - 1) for c in range(1, width - 1)
             if walls[r, c] and (r % 2) != (c % 2)]  # walls between two rooms
    order = torch.randperm(len(inner), generator=generator)[: as_int("extra_openings", extra_openings)]
    for k in order.tolist():
        walls[inner[k]] = False
    return walls


def open_maze(height: int, width: int, generator: torch.Generator, *, wall_density: float = 0.2,
              border: bool = True, max_tries: int = 1000) -> torch.Tensor:
    """A room with random interior walls (each cell a wall with probability ``wall_density``),
    redrawn until all free cells are connected; ``(H, W)`` bool, with a border of walls if asked."""
    height, width = as_int("height", height, 3 if border else 1), as_int("width", width, 3 if border else 1)
    density = as_float("wall_density", wall_density, minimum=0.0, maximum=0.9)
    for _ in range(as_int("max_tries", max_tries, 1)):
        walls = torch.rand(height, width, generator=generator) < density
        if border:
            walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
        free = torch.nonzero(~walls.reshape(-1))
        if free.numel() < 2:
            continue
        dist = _distances(_transitions(walls[None]), walls[None], free[0])[0]
        if torch.isfinite(dist[free[:, 0]]).all():
            return walls
    raise ValueError(f"no connected {height}×{width} maze in {max_tries} draws at wall_density "
                     f"{density}: lower the density")


def _maze_source(maze, height: int, width: int, options: dict) -> Callable[[torch.Generator], torch.Tensor]:
    if isinstance(maze, torch.Tensor):
        fixed = maze.bool()
        return lambda generator: fixed
    if maze == "dfs":
        return lambda generator: dfs_maze(height, width, generator, **options)
    if maze == "open":
        return lambda generator: open_maze(height, width, generator, **options)
    if callable(maze):
        return maze
    raise ValueError(f"maze must be 'dfs', 'open', an (H, W) wall tensor or a function of a "
                     f"generator, got {maze!r}")


def sample_levels(num_levels: int, generator: torch.Generator, *, alpha: float, height: int = 7,
                  width: int = 7, maze="dfs", **maze_options) -> Levels:
    """``num_levels`` training levels of the cheese-in-the-corner mixture (module docstring).

    Args:
        alpha: the probability of the cheese *not* being in the corner.
        maze: ``"dfs"`` (:func:`dfs_maze`, a new maze per level), ``"open"`` (:func:`open_maze`),
            one ``(H, W)`` wall tensor shared by all levels, or ``maze(generator) -> (H, W)``.
        maze_options: passed to the maze generator (``extra_openings``, ``wall_density``, ...).
    """
    num_levels = as_int("num_levels", num_levels, 1)
    alpha = as_float("alpha", alpha, minimum=0.0, maximum=1.0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    source = _maze_source(maze, height, width, maze_options)
    walls, starts, cheeses = [], [], []
    for _ in range(num_levels):
        w = source(generator)
        corner = corner_cell(w)
        # the cells connected to the corner, the corner excepted: the start, and the cheese when
        # it is elsewhere, are drawn among them
        to_corner = _distances(_transitions(w[None]), w[None], torch.tensor([corner]))[0]
        candidates = torch.nonzero(torch.isfinite(to_corner) & (to_corner > 0))[:, 0]
        if candidates.numel() == 0:
            raise ValueError("the corner cell of the maze has no free neighbour: no level fits")
        start = int(candidates[torch.randint(candidates.numel(), (1,), generator=generator)])
        cheese = corner
        if float(torch.rand((), generator=generator)) < alpha:
            others = candidates[candidates != start]
            if others.numel() > 0:  # else (a two-cell maze) the cheese stays in the corner
                cheese = int(others[torch.randint(others.numel(), (1,), generator=generator)])
        walls.append(w)
        starts.append(start)
        cheeses.append(cheese)
    return Levels(torch.stack(walls), torch.tensor(starts), torch.tensor(cheeses))


def default_levels(num_levels: int = 256, *, alpha: float = 0.1, seed: int = 0) -> Levels:
    """The default level set: ``num_levels`` 7×7 DFS mazes of the mixture, from a fixed seed."""
    return sample_levels(num_levels, torch.Generator().manual_seed(seed), alpha=alpha)
