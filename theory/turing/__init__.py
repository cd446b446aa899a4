"""Noisy Turing machines with exact semantics, their potential, and learning coefficients at codes.

Sources: J. Clift, D. Murfet, J. Wallbridge, "Geometry of program synthesis", arXiv 2103.16080
(noisy codes, the potential ``K`` of a synthesis problem); D. Murfet, W. Troiani,
"Programs as singularities", arXiv 2504.08075 (Taylor expansion of ``K`` at a classical code and
error syndromes; two machines with the same function can sit at singularities of different
geometry). Sources: Clift, Murfet & Wallbridge arXiv 2103.16080; Murfet & Troiani arXiv 2504.08075.

Submodules (each docstring states its part of the conventions):

- ``machine``: machine shapes, classical machines, configurations on the bounded tape, ``run``.
- ``codes``: noisy codes, barycentric and squared coordinates, error coordinates at a vertex.
- ``semantics``: the exact Markov chain on configurations; configuration and output distributions.
- ``synthesis``: synthesis tasks, output probabilities and the potential ``K``.
- ``polynomial``: ``p(y | x, w)`` as an explicit path-sum polynomial (for a torch implementation).
- ``vertex``: Taylor expansion of ``K`` and the learning coefficient at a classical code.
- ``oracle``: exact finite-temperature ``t E[K]`` for one-step tasks (uniform or Dirichlet prior).
- ``library``: detectA and parity machines and tasks, and machine pairs of different geometry.

Every public name is re-exported here, so ``from theory.turing import X`` works for all of them.

Arithmetic is exact whenever the inputs are: ``fractions.Fraction`` (or ``int``) codes give
``Fraction`` probabilities, sympy codes give sympy expressions, float codes give floats.
"""

from .codes import (
    ErrorCoordinate,
    NoisyCode,
    barycentric_to_squared,
    code_from_distributions,
    code_from_flat,
    code_from_squared,
    error_coordinate_code,
    error_coordinates,
    squared_to_barycentric,
    uniform_code,
    vertex_code,
)
from .library import (
    MachinePair,
    all_strings,
    detect_a,
    detect_a_split_reject,
    detect_a_task,
    detect_a_verify,
    machine_pairs,
    parity,
    parity_split_even,
    parity_task,
)
from .machine import (
    MOVES,
    READOUTS,
    Configuration,
    MachineShape,
    TuringMachine,
    initial_configuration,
    run,
    tape_length,
)
from .oracle import (
    single_step_llc,
    single_step_llc_dirichlet,
)
from .polynomial import (
    Monomial,
    OutputPolynomial,
    output_distribution_polynomials,
    output_probability_polynomial,
)
from .semantics import (
    configuration_distribution,
    output_distribution,
)
from .synthesis import (
    SynthesisTask,
    output_probabilities,
    potential,
)
from .vertex import (
    VertexExpansion,
    VertexLearningCoefficient,
    learning_coefficient_at_vertex,
    vertex_expansion,
)

__all__ = [
    "MOVES",
    "READOUTS",
    "Configuration",
    "ErrorCoordinate",
    "MachinePair",
    "MachineShape",
    "Monomial",
    "NoisyCode",
    "OutputPolynomial",
    "SynthesisTask",
    "TuringMachine",
    "VertexExpansion",
    "VertexLearningCoefficient",
    "all_strings",
    "barycentric_to_squared",
    "code_from_distributions",
    "code_from_flat",
    "code_from_squared",
    "configuration_distribution",
    "detect_a",
    "detect_a_split_reject",
    "detect_a_task",
    "detect_a_verify",
    "error_coordinate_code",
    "error_coordinates",
    "initial_configuration",
    "learning_coefficient_at_vertex",
    "machine_pairs",
    "output_distribution",
    "output_distribution_polynomials",
    "output_probabilities",
    "output_probability_polynomial",
    "parity",
    "parity_split_even",
    "parity_task",
    "potential",
    "run",
    "single_step_llc",
    "single_step_llc_dirichlet",
    "squared_to_barycentric",
    "tape_length",
    "uniform_code",
    "vertex_code",
    "vertex_expansion",
]
