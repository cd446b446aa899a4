"""Mazes, levels and states of the cheese gridworld, shortest distances, and argument checks.

The conventions (shared with the torch environment) are stated in the ``theory.gridworld``
package docstring. A ``Level`` is validated when it is built, so that a start on a wall, a start
on the cheese or a cheese walled off from the start fails at once with a message.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Rational, Real

__all__ = [
    "ACTIONS",
    "MOVES",
    "Level",
    "Maze",
    "State",
    "check_action",
    "check_gamma",
    "check_levels",
    "check_weights",
    "shortest_distances",
    "states",
]

Cell = tuple[int, int]

#: action names by index: 0 = up, 1 = left, 2 = down, 3 = right
ACTIONS: tuple[str, ...] = ("up", "left", "down", "right")
#: (row, column) displacement of each action; the row index grows downwards, so "up" is row - 1
MOVES: tuple[Cell, ...] = ((-1, 0), (0, -1), (1, 0), (0, 1))


def check_action(action) -> int:
    """``action`` as an ``int`` in ``0..3``; ValueError naming the four actions otherwise."""
    if isinstance(action, bool) or not isinstance(action, Integral) or not 0 <= action < 4:
        raise ValueError(
            f"unknown action {action!r}: actions are 0=up, 1=left, 2=down, 3=right"
        )
    return int(action)


def _check_cell(cell, name: str) -> Cell:
    if (
        not isinstance(cell, Sequence)
        or isinstance(cell, str)
        or len(cell) != 2
        or any(isinstance(x, bool) or not isinstance(x, Integral) for x in cell)
    ):
        raise ValueError(f"{name} must be a (row, column) pair of integers, got {cell!r}")
    return (int(cell[0]), int(cell[1]))


@dataclass(frozen=True)
class Maze:
    """An ``H x W`` grid of cells, each a wall (``True``) or free (``False``).

    ``walls[r][c]`` is the cell in row ``r`` (counted from the top) and column ``c`` (from the
    left). ``Maze.from_strings`` reads rows of ``'#'`` (wall) and ``'.'`` (free).
    """

    walls: tuple[tuple[bool, ...], ...]

    def __post_init__(self):
        rows = self.walls
        if isinstance(rows, str) or not isinstance(rows, Sequence) or len(rows) == 0:
            raise ValueError(f"a maze needs at least one row of cells, got {rows!r}")
        normalised = []
        for r, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Sequence) or len(row) == 0:
                raise ValueError(f"row {r} of the maze must be a non-empty sequence of booleans")
            if len(row) != len(rows[0]):
                raise ValueError(
                    f"ragged maze: row {r} has {len(row)} cells but row 0 has {len(rows[0])}; "
                    "every row needs the same width"
                )
            for c, x in enumerate(row):
                if x not in (True, False):  # bools and 0/1
                    raise ValueError(
                        f"cell ({r}, {c}) must be True (wall) or False (free), got {x!r}")
            normalised.append(tuple(bool(x) for x in row))
        object.__setattr__(self, "walls", tuple(normalised))

    @classmethod
    def from_strings(cls, rows: Sequence[str]) -> Maze:
        """A maze from rows of ``'#'`` (wall) and ``'.'`` (free), top row first."""
        if isinstance(rows, str) or not isinstance(rows, Sequence):
            raise ValueError(f"rows must be a sequence of strings, got {rows!r}")
        walls = []
        for r, row in enumerate(rows):
            if not isinstance(row, str):
                raise ValueError(f"row {r} must be a string of '#' and '.', got {row!r}")
            bad = sorted(set(row) - {"#", "."})
            if bad:
                raise ValueError(f"row {r} has characters {bad}: use '#' for a wall, '.' for free")
            walls.append(tuple(ch == "#" for ch in row))
        return cls(tuple(walls))

    @property
    def height(self) -> int:
        return len(self.walls)

    @property
    def width(self) -> int:
        return len(self.walls[0])

    def on_grid(self, cell: Cell) -> bool:
        r, c = cell
        return 0 <= r < self.height and 0 <= c < self.width

    def is_free(self, cell: Cell) -> bool:
        """Whether ``cell`` is on the grid and not a wall."""
        return self.on_grid(cell) and not self.walls[cell[0]][cell[1]]

    def free_cells(self) -> tuple[Cell, ...]:
        """The free cells in row-major order."""
        return tuple((r, c) for r in range(self.height) for c in range(self.width)
                     if not self.walls[r][c])

    def check_free(self, cell, name: str) -> Cell:
        """``cell`` as a tuple if it is a free cell; ValueError saying what is wrong otherwise."""
        cell = _check_cell(cell, name)
        if not self.on_grid(cell):
            raise ValueError(f"{name} {cell} is off the {self.height}x{self.width} grid")
        if self.walls[cell[0]][cell[1]]:
            raise ValueError(f"{name} {cell} is a wall; it must be a free cell")
        return cell

    def step(self, cell: Cell, action: int) -> Cell:
        """The cell reached from ``cell`` by ``action``; into a wall or off the grid: stays."""
        dr, dc = MOVES[check_action(action)]
        target = (cell[0] + dr, cell[1] + dc)
        return target if self.is_free(target) else cell

    def __str__(self) -> str:
        return "\n".join("".join("#" if w else "." for w in row) for row in self.walls)


def shortest_distances(maze: Maze, cheese: Cell) -> dict[Cell, int]:
    """Shortest-path distance (number of moves) from every free cell connected to ``cheese``.

    Breadth-first search from the cheese over free neighbouring cells; a move between two free
    neighbours is possible both ways, so this is the distance *to* the cheese. Cells walled off
    from the cheese are absent; the cheese itself has distance 0.
    """
    if not isinstance(maze, Maze):
        raise ValueError(f"expected a Maze, got {type(maze).__name__}")
    cheese = maze.check_free(cheese, "cheese")
    distance = {cheese: 0}
    queue = deque([cheese])
    while queue:
        cell = queue.popleft()
        for a in range(4):
            nxt = maze.step(cell, a)
            if nxt not in distance:
                distance[nxt] = distance[cell] + 1
                queue.append(nxt)
    return distance


@dataclass(frozen=True)
class State:
    """A Markov state: the mouse at ``cell`` in ``maze`` with the cheese at ``cheese``.

    Levels that differ only in their start share their states; a tabular policy is a mapping
    from ``State`` to a distribution over the four actions.
    """

    maze: Maze
    cheese: Cell
    cell: Cell


@dataclass(frozen=True)
class Level:
    """A maze, a start cell for the mouse and a cheese cell.

    Checked when built: both cells free and on the grid, distinct, and the cheese reachable from
    the start. ``Level.from_strings`` reads rows of ``'#'``, ``'.'``, one ``'M'`` (mouse, the
    start) and one ``'C'`` (cheese).
    """

    maze: Maze
    start: Cell
    cheese: Cell

    def __post_init__(self):
        if not isinstance(self.maze, Maze):
            raise ValueError(f"maze must be a Maze, got {type(self.maze).__name__}")
        start = self.maze.check_free(self.start, "start")
        cheese = self.maze.check_free(self.cheese, "cheese")
        if start == cheese:
            raise ValueError(f"start and cheese are the same cell {start}; the start must differ")
        if start not in shortest_distances(self.maze, cheese):
            raise ValueError(
                f"the cheese at {cheese} is unreachable from the start {start}: walls separate them"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "cheese", cheese)

    @classmethod
    def from_strings(cls, rows: Sequence[str]) -> Level:
        """A level from rows of ``'#'`` (wall), ``'.'`` (free), ``'M'`` (start), ``'C'`` (cheese).
        """
        if isinstance(rows, str) or not isinstance(rows, Sequence):
            raise ValueError(f"rows must be a sequence of strings, got {rows!r}")
        marks = {"M": [], "C": []}
        plain = []
        for r, row in enumerate(rows):
            if not isinstance(row, str):
                raise ValueError(f"row {r} must be a string, got {row!r}")
            for c, ch in enumerate(row):
                if ch in marks:
                    marks[ch].append((r, c))
            plain.append(row.replace("M", ".").replace("C", "."))
        for ch, name in (("M", "start (mouse)"), ("C", "cheese")):
            if len(marks[ch]) != 1:
                raise ValueError(
                    f"a level needs exactly one '{ch}' ({name}), found {len(marks[ch])}")
        return cls(Maze.from_strings(plain), marks["M"][0], marks["C"][0])

    def state(self, cell) -> State:
        """The ``State`` of the mouse at ``cell`` in this level's maze, with its cheese."""
        return State(self.maze, self.cheese, self.maze.check_free(cell, "cell"))

    def __str__(self) -> str:
        rows = [list(row) for row in str(self.maze).split("\n")]
        rows[self.start[0]][self.start[1]] = "M"
        rows[self.cheese[0]][self.cheese[1]] = "C"
        return "\n".join("".join(row) for row in rows)


def check_levels(levels) -> tuple[Level, ...]:
    """``levels`` as a non-empty tuple of ``Level``; ValueError otherwise."""
    if isinstance(levels, Level):
        return (levels,)
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError(f"levels must be a non-empty sequence of Level, got {levels!r}")
    for i, level in enumerate(levels):
        if not isinstance(level, Level):
            raise ValueError(f"levels[{i}] must be a Level, got {type(level).__name__}")
    return tuple(levels)


def states(levels) -> tuple[State, ...]:
    """The states a tabular policy needs for ``levels``: one simplex each.

    For every ``(maze, cheese)`` of the levels, the free cells connected to the cheese except the
    cheese itself (the cheese is absorbing and needs no action; cells walled off from the cheese
    cannot be reached from a valid start). Level order, then row-major cell order.
    """
    out: dict[State, None] = {}
    for level in check_levels(levels):
        distance = shortest_distances(level.maze, level.cheese)
        for cell in level.maze.free_cells():
            if cell in distance and cell != level.cheese:
                out[State(level.maze, level.cheese, cell)] = None
    return tuple(out)


def check_gamma(gamma, exact: bool) -> Fraction | float:
    """The discount as a ``Fraction`` (``exact``) or ``float``; ValueError unless in ``(0, 1)``."""
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not math.isfinite(gamma) \
            or not 0 < gamma < 1:
        raise ValueError(f"gamma (the discount) must be a number in (0, 1), got {gamma!r}")
    if exact:
        if not isinstance(gamma, Rational):
            raise ValueError(
                f"exact arithmetic needs a rational gamma such as Fraction(9, 10), got {gamma!r}"
            )
        return Fraction(gamma)
    return float(gamma)


def check_weights(weights, count: int, exact: bool) -> tuple:
    """Level weights (the start distribution): ``1/count`` each if ``None``; else checked.

    Nonnegative, one per level, summing to 1 (exactly for ``exact``, to 1e-9 otherwise).
    """
    if weights is None:
        return (Fraction(1, count),) * count if exact else (1.0 / count,) * count
    if isinstance(weights, Mapping) or isinstance(weights, (str, bytes)) \
            or not isinstance(weights, Sequence) or len(weights) != count:
        raise ValueError(f"weights must be a sequence of {count} numbers, one per level")
    out = []
    for i, q in enumerate(weights):
        if isinstance(q, bool) or not isinstance(q, Real) or not math.isfinite(q) or q < 0:
            raise ValueError(f"weights[{i}] must be a nonnegative number, got {q!r}")
        if exact and not isinstance(q, Rational):
            raise ValueError(
                f"exact arithmetic needs rational weights (Fraction), weights[{i}] = {q!r}")
        out.append(Fraction(q) if exact else float(q))
    total = sum(out)
    if (total != 1) if exact else abs(total - 1) > 1e-9:
        raise ValueError(f"weights must sum to 1 (a distribution over levels), they sum to {total}")
    return tuple(out)
