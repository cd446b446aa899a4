"""Exact checks of theory/turing/: noisy Turing machines, potential, learning coefficients."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from theory.turing import (
    MOVES,
    Configuration,
    MachineShape,
    NoisyCode,
    SynthesisTask,
    TuringMachine,
    all_strings,
    barycentric_to_squared,
    code_from_distributions,
    code_from_flat,
    code_from_squared,
    configuration_distribution,
    detect_a,
    detect_a_split_reject,
    detect_a_task,
    detect_a_verify,
    error_coordinate_code,
    error_coordinates,
    initial_configuration,
    learning_coefficient_at_vertex,
    machine_pairs,
    output_distribution,
    output_distribution_polynomials,
    output_probabilities,
    output_probability_polynomial,
    parity,
    parity_split_even,
    parity_task,
    potential,
    run,
    single_step_llc,
    single_step_llc_dirichlet,
    squared_to_barycentric,
    tape_length,
    uniform_code,
    vertex_code,
    vertex_expansion,
)

SYMBOLS = ("_", "A", "B")
SMALL_SHAPE = MachineShape(SYMBOLS, ("p", "q"), "p")


# ---------------------------------------------------------------------------------------------
# strategies and independent reference implementations
# ---------------------------------------------------------------------------------------------


@st.composite
def machines(draw, shape=SMALL_SHAPE):
    options = list(itertools.product(shape.symbols, shape.states, MOVES))
    table = {pair: draw(st.sampled_from(options)) for pair in shape.pairs}
    return TuringMachine(shape.symbols, shape.states, shape.start_state, table, shape.blank)


@st.composite
def rational_codes(draw, shape=SMALL_SHAPE, allow_zero=False):
    """Random exact codes; interior points unless ``allow_zero``."""
    low = 0 if allow_zero else 1
    simplices = []
    for size in shape.simplex_sizes:
        weights = draw(st.lists(st.integers(low, 7), min_size=size, max_size=size))
        if sum(weights) == 0:
            weights[0] = 1
        simplices.append(tuple(Fraction(w, sum(weights)) for w in weights))
    return NoisyCode(shape, tuple(simplices))


inputs = st.lists(st.sampled_from(["A", "B"]), max_size=3).map(tuple)


def detect_table(table):
    return TuringMachine(SYMBOLS, ("reject", "accept"), "reject", table)


def as_floats(code):
    return code_from_flat(code.shape, [float(v) for v in code.flat()])


def brute_force_configurations(code, x, T):
    """Sum over every sequence of (write, state, move) choices, with no merging or shortcuts."""
    shape = code.shape
    start = initial_configuration(shape, x, T)
    result = {}

    def walk(t, tape, head, state, prob):
        if t == T:
            key = Configuration(tuple(tape), head, state, start.origin)
            result[key] = result.get(key, 0) + prob
            return
        write_d, state_d, move_d = code.distributions(tape[head], state)
        for (a, pa), (q, pq), (m, pm) in itertools.product(
            zip(shape.symbols, write_d), zip(shape.states, state_d), zip(MOVES, move_d)
        ):
            new_tape = list(tape)
            new_tape[head] = a
            walk(t + 1, new_tape, head + {"L": -1, "S": 0, "R": 1}[m], q, prob * pa * pq * pm)

    walk(0, list(start.tape), start.head, start.state, Fraction(1))
    return {k: v for k, v in result.items() if v != 0}


def ray_polynomial(machine, coordinate, x, y, T):
    """Exact coefficients of ``delta -> p(y | x, vertex + delta (e_c - e_classical))``.

    The path sum makes this a polynomial of degree <= T in delta; T + 1 exact evaluations by the
    Markov chain determine it (Lagrange interpolation in Fractions).
    """
    vertex = vertex_code(machine)
    classical = vertex.simplices[coordinate.simplex].index(1)
    points = [Fraction(k, 2 * (T + 1)) for k in range(T + 1)]
    values = []
    for delta in points:
        simplices = [list(s) for s in vertex.simplices]
        simplices[coordinate.simplex][coordinate.entry] = delta
        simplices[coordinate.simplex][classical] = 1 - delta
        code = NoisyCode(machine.shape, tuple(tuple(s) for s in simplices))
        values.append(output_distribution(code, x, T)[y])
    d = sympy.Symbol("d")
    poly = sympy.interpolate(list(zip(points, values)), d)
    coefficients = sympy.Poly(poly, d).all_coeffs()[::-1]
    return coefficients + [0] * (T + 1 - len(coefficients))


# ---------------------------------------------------------------------------------------------
# machines as data, classical runs
# ---------------------------------------------------------------------------------------------


def test_parameter_count_is_sigma_q_times_sigma_plus_q():
    for n_symbols, n_states in itertools.product(range(1, 5), range(1, 5)):
        symbols = ("_",) + tuple(f"s{i}" for i in range(n_symbols - 1))
        shape = MachineShape(symbols, tuple(f"q{i}" for i in range(n_states)), "q0")
        expected = n_symbols * n_states * (n_symbols + n_states)
        assert shape.dimension == expected
        assert shape.num_entries - shape.num_simplices == expected
        assert sum(k - 1 for k in shape.simplex_sizes) == expected
    for machine in (detect_a(), parity(), detect_a(extra_state=True), parity_split_even()):
        assert len(error_coordinates(machine)) == machine.shape.dimension
    assert detect_a().shape.dimension == 30 and parity_split_even().shape.dimension == 54


def test_layout_of_simplices():
    shape = detect_a().shape
    assert shape.pairs[0] == ("_", "reject") and shape.pairs[1] == ("_", "accept")
    state_simplex = 3 * shape.pair_index("A", "reject") + 1
    assert shape.describe_simplex(state_simplex) == ("A", "reject", "state")
    assert shape.simplex_sizes[:3] == (3, 2, 3)
    assert shape.simplex_offsets[:4] == (0, 3, 5, 8)
    code = uniform_code(shape)
    assert code_from_flat(shape, code.flat()) == code


def test_bounded_tape_holds_input_and_t_steps_each_side():
    config = initial_configuration(detect_a(), "ABB", 4)
    assert len(config.tape) == tape_length(3, 4) == 3 + 2 * 4 + 1
    assert config.tape[config.head : config.head + 3] == ("A", "B", "B")
    assert config.position == 0 and config.head == config.origin == 4
    assert set(config.tape[:4]) == set(config.tape[7:]) == {"_"}


def test_run_gives_the_hand_computed_configurations():
    final = run(detect_a(), "BA", 2)
    assert (final.state, final.position, final.tape[final.origin : final.origin + 2]) == (
        "accept", 2, ("B", "A"))
    verify = run(detect_a_verify(), "BA", 2)  # erases the A and stays on it
    assert (verify.state, verify.position, verify.tape[verify.origin + 1]) == ("accept", 1, "_")
    assert run(parity(), "AAB", 3).state == "even" and run(parity(), "ABB", 3).state == "odd"
    assert run(detect_a(), "", 3).state == "reject" and run(detect_a(), "B", 0).state == "reject"


def test_library_machines_compute_their_functions():
    for x in all_strings(("A", "B"), range(5)):
        has_a = "accept" if "A" in x else "reject"
        odd = "odd" if x.count("A") % 2 else "even"
        assert run(detect_a(), x, len(x) + 1).state == has_a
        assert run(detect_a(extra_state=True), x, len(x)).state == has_a
        assert run(parity(), x, len(x) + 2).state == odd
        assert run(parity(extra_state=True), x, len(x)).state == odd
    for machine in (detect_a_verify(), detect_a_split_reject()):
        for x, y in detect_a_task((1, 2)).examples:
            assert run(machine, x, 2).state == y
    for x, y in parity_task((2,)).examples:
        assert run(parity_split_even(), x, 2).state == y


def test_each_pair_computes_the_same_function_on_its_task():
    pairs = machine_pairs()
    assert len(pairs) >= 2
    for pair in pairs:
        for x, y in pair.task.examples:
            assert run(pair.first, x, pair.T).state == run(pair.second, x, pair.T).state == y
        assert pair.first != pair.second
        assert pair.first.shape.dimension <= 60 and pair.second.shape.dimension <= 60
        assert pair.T <= 4
    assert sum(p.same_parameter_space for p in pairs) >= 3


# ---------------------------------------------------------------------------------------------
# exact Markov-chain semantics
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=25)
@given(machines(), inputs, st.integers(0, 3))
def test_noisy_semantics_at_a_vertex_is_the_classical_machine(machine, x, T):
    final = run(machine, x, T)
    assert configuration_distribution(vertex_code(machine), x, T) == {final: 1}
    for readout in ("state", "head_symbol"):
        dist = output_distribution(vertex_code(machine), x, T, readout)
        assert dist[final.readout(readout)] == 1 and sum(dist.values()) == 1


@settings(deadline=None, max_examples=20)
@given(rational_codes(allow_zero=True), inputs, st.integers(0, 2))
def test_markov_chain_matches_brute_force_path_sum(code, x, T):
    assert configuration_distribution(code, x, T) == brute_force_configurations(code, x, T)


@settings(deadline=None, max_examples=20)
@given(rational_codes(), inputs, st.integers(0, 3))
def test_probabilities_sum_to_one_at_interior_codes(code, x, T):
    configs = configuration_distribution(code, x, T)
    assert sum(configs.values()) == 1
    assert all(isinstance(p, Fraction) and p > 0 for p in configs.values())
    for readout in ("state", "head_symbol"):
        dist = output_distribution(code, x, T, readout)
        assert sum(dist.values()) == 1
        marginal = {label: Fraction(0) for label in dist}
        for config, p in configs.items():
            marginal[config.readout(readout)] += p
        assert marginal == dist  # the last-step shortcut for the state readout is exact


def test_float_and_sympy_codes_agree_with_exact_codes():
    shape = detect_a().shape
    code = uniform_code(shape)
    exact = output_distribution(code, "AB", 2)
    floats = output_distribution(code_from_flat(shape, [float(v) for v in code.flat()]), "AB", 2)
    symbolic = output_distribution(code_from_flat(shape, [sympy.Rational(v.numerator, v.denominator)
                                                          for v in code.flat()]), "AB", 2)
    for y in exact:
        assert floats[y] == pytest.approx(float(exact[y]), rel=1e-14)
        assert symbolic[y] == sympy.Rational(exact[y].numerator, exact[y].denominator)


def test_one_step_potential_is_the_oracle_formula():
    u_a, u_b = sympy.symbols("u_a u_b", positive=True)
    machine = detect_a()
    code = code_from_distributions(
        machine,
        {
            ("A", "reject"): (
                {"A": Fraction(1, 3), "B": Fraction(2, 3)},
                (u_a, 1 - u_a),
                (Fraction(1, 2), 0, Fraction(1, 2)),
            ),
            ("B", "reject"): ((0, 0, 1), (1 - u_b, u_b), (Fraction(1, 5), Fraction(4, 5), 0)),
        },
        default=machine,
    )
    K = potential(code, detect_a_task(), 1)
    expected = -sympy.log(1 - u_a) / 2 - sympy.log(1 - u_b) / 2
    assert sympy.simplify(sympy.expand_log(K - expected, force=True)) == 0


def test_potential_values():
    machine = detect_a()
    task = detect_a_task((1, 2))
    assert potential(vertex_code(machine), task, 2) == 0
    assert potential(vertex_code(parity()), parity_task((2,)), 2) == 0
    wrong = detect_table({**machine.transitions, ("A", "reject"): ("A", "reject", "R")})
    assert potential(vertex_code(wrong), task, 2) == sympy.oo
    assert potential(as_floats(vertex_code(wrong)), task, 2) == math.inf
    exact = potential(uniform_code(machine), task, 2)
    probs = output_probabilities(uniform_code(machine), task, 2)
    assert exact == -sum(sympy.log(sympy.Rational(p.numerator, p.denominator)) for p in probs) / 6
    floats = potential(as_floats(uniform_code(machine)), task, 2)
    assert floats == pytest.approx(float(exact), rel=1e-13)


# ---------------------------------------------------------------------------------------------
# the polynomial form used by the torch side
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=15)
@given(
    rational_codes(allow_zero=True), inputs, st.integers(0, 3),
    st.sampled_from(["state", "head_symbol"]),
)
def test_path_polynomial_equals_markov_chain(code, x, T, readout):
    polys = output_distribution_polynomials(code.shape, x, T, readout)
    dist = output_distribution(code, x, T, readout)
    assert {y: poly.evaluate(code) for y, poly in polys.items()} == dist
    for poly in polys.values():
        assert all(m.coefficient > 0 for m in poly.monomials)
        assert len({m.factors for m in poly.monomials}) == len(poly.monomials)


def test_padded_gather_evaluation_for_torch():
    machine = detect_a_split_reject()
    task = detect_a_task((1, 2))
    rng = np.random.default_rng(0)
    shape = machine.shape
    flat = np.concatenate([rng.dirichlet(np.ones(k)) for k in shape.simplex_sizes])
    code = code_from_flat(shape, [float(v) for v in flat])
    expected = output_probabilities(code, task, 2)
    for poly, p in zip(output_probability_polynomial(shape, task, 2), expected):
        coefficients, rows = poly.padded_factor_indices()
        padded = np.append(flat, 1.0)
        value = float(np.sum(np.array(coefficients) * padded[np.array(rows)].prod(axis=1)))
        assert value == pytest.approx(p, rel=1e-12)
        assert all(len(r) == poly.degree for r in rows)


def test_polynomial_size_limit_is_enforced():
    with pytest.raises(ValueError, match="max_paths"):
        output_distribution_polynomials(detect_a(), "AB", 3, max_paths=10)


# ---------------------------------------------------------------------------------------------
# Taylor expansion at a vertex
# ---------------------------------------------------------------------------------------------


# every machine of the same-space pairs (the last pair repeats parity(extra_state=True))
PAIR_MACHINES = [(p.first, p.task, p.T) for p in machine_pairs()[:3]] + [
    (p.second, p.task, p.T) for p in machine_pairs()[:3]]
PAIR_MACHINE_IDS = ["detect_a", "detect_a_3", "parity_3", "verify", "split_reject", "split_even"]


@pytest.mark.parametrize("machine, task, T", PAIR_MACHINES, ids=PAIR_MACHINE_IDS)
def test_first_order_coefficients_match_exact_ray_polynomials(machine, task, T):
    expansion = vertex_expansion(machine, task, T)
    for k, (x, y) in enumerate(task.examples):
        for c in expansion.coordinates:
            coefficients = ray_polynomial(machine, c, x, y, T)
            assert coefficients[0] == 1  # the vertex solves the task
            # d p / d delta at 0 = -(coefficient of e_c in the error probability)
            assert coefficients[1] == -expansion.error_first_order[k].get(c.index, 0)
            # the pure square term along the ray
            assert coefficients[2] == -expansion.error_second_order[k].get((c.index, c.index), 0)


def test_second_order_coefficients_match_sympy_expansion():
    machine = detect_a_verify()
    task, T = detect_a_task((1, 2)), 2
    expansion = vertex_expansion(machine, task, T)
    code, coords = error_coordinate_code(machine)
    symbols = [c.sympy_symbol for c in coords]
    for k, (x, y) in enumerate(task.examples):
        error = sympy.Poly(sympy.expand(1 - output_distribution(code, x, T)[y]), *symbols)
        first, second = {}, {}
        for exponents, coefficient in error.terms():
            support = [i for i, e in enumerate(exponents) for _ in range(e)]
            if len(support) == 1:
                first[support[0]] = int(coefficient)
            elif len(support) == 2:
                second[tuple(support)] = int(coefficient)
        assert first == dict(expansion.error_first_order[k])
        assert second == dict(expansion.error_second_order[k])


def test_potential_second_order_matches_series_of_exact_potential():
    machine = detect_a()
    task, T = detect_a_task((1, 2)), 2
    expansion = vertex_expansion(machine, task, T)
    relevant = [c.index for c in expansion.relevant]
    coords = expansion.coordinates
    d = sympy.Symbol("d", positive=True)
    for i, j in [(relevant[0], relevant[1]), (relevant[2], relevant[3]), (relevant[1], 0)]:
        a, b = coords[i], coords[j]
        simplices = [list(map(sympy.Integer, s)) for s in vertex_code(machine).simplices]
        for c in (a, b):
            classical = vertex_code(machine).simplices[c.simplex].index(1)
            simplices[c.simplex][c.entry] += d
            simplices[c.simplex][classical] -= d
        K = potential(NoisyCode(machine.shape, tuple(map(tuple, simplices))), task, T)
        series = sympy.series(K, d, 0, 3).removeO()
        c1 = expansion.potential_first_order
        c2 = expansion.potential_second_order
        key = (min(i, j), max(i, j))
        assert series.coeff(d, 1) == c1.get(i, 0) + c1.get(j, 0)
        assert series.coeff(d, 2) == c2.get((i, i), 0) + c2.get((j, j), 0) + c2.get(key, 0)


def test_expansion_as_sympy_and_syndromes():
    expansion = vertex_expansion(detect_a(), detect_a_task(), 1)
    (a, b) = expansion.relevant
    assert (a.symbol, a.kind, a.label, b.symbol, b.label) == ("A", "state", "reject", "B", "accept")
    e_a, e_b = a.sympy_symbol, b.sympy_symbol
    # K = -1/2 log(1 - e_a) - 1/2 log(1 - e_b) = (e_a + e_b)/2 + (e_a^2 + e_b^2)/4 + ...
    assert sympy.expand(expansion.potential_sympy() - (e_a + e_b) / 2 - (e_a**2 + e_b**2) / 4) == 0
    assert expansion.first_order_syndromes == {a: (("A",),), b: (("B",),)}


# ---------------------------------------------------------------------------------------------
# learning coefficients
# ---------------------------------------------------------------------------------------------


def test_detect_a_one_step_learning_coefficient_is_two():
    result = learning_coefficient_at_vertex(detect_a(), detect_a_task(), 1)
    assert result.learning_coefficient == 2 and result.multiplicity == 1
    assert [(c.symbol, c.state, c.kind) for c in result.relevant_coordinates] == [
        ("A", "reject", "state"), ("B", "reject", "state")]
    squared = learning_coefficient_at_vertex(detect_a(), detect_a_task(), 1, coordinates="squared")
    assert squared.learning_coefficient == 1


@pytest.mark.parametrize(
    "index, first, second", [(0, 8, 9), (1, 14, 18), (2, 12, 16), (3, 8, 12)]
)
def test_machine_pairs_have_the_documented_learning_coefficients(index, first, second):
    pair = machine_pairs()[index]
    a = learning_coefficient_at_vertex(pair.first, pair.task, pair.T)
    b = learning_coefficient_at_vertex(pair.second, pair.task, pair.T)
    assert (a.learning_coefficient, b.learning_coefficient) == (first, second)
    assert isinstance(a.learning_coefficient, Fraction)
    assert len(a.relevant_coordinates) == first and len(b.relevant_coordinates) == second
    half = learning_coefficient_at_vertex(pair.second, pair.task, pair.T, coordinates="squared")
    assert half.learning_coefficient == Fraction(second, 2)


@settings(deadline=None, max_examples=10)
@given(st.sampled_from(range(4)), st.data())
def test_settled_vertices_vanish_exactly_on_the_irrelevant_face(index, data):
    """Independent check of the face condition: random rational points with relevant errors 0."""
    pair = machine_pairs()[index]
    machine = data.draw(st.sampled_from([pair.first, pair.second]))
    result = learning_coefficient_at_vertex(machine, pair.task, pair.T)
    relevant = {(c.simplex, c.entry) for c in result.relevant_coordinates}
    vertex = vertex_code(machine)
    simplices = []
    for s, entries in enumerate(vertex.simplices):
        row = [Fraction(0) if v == 1 or (s, j) in relevant
               else Fraction(data.draw(st.integers(0, 5)), 6 * len(entries))
               for j, v in enumerate(entries)]
        row[entries.index(1)] = 1 - sum(row)
        simplices.append(tuple(row))
    code = NoisyCode(machine.shape, tuple(simplices))
    assert all(p == 1 for p in output_probabilities(code, pair.task, pair.T))
    # and any single relevant error, however small, makes K positive
    c = data.draw(st.sampled_from(result.relevant_coordinates))
    rows = [list(r) for r in simplices]
    classical = vertex.simplices[c.simplex].index(1)
    rows[c.simplex][c.entry] = Fraction(1, 1000)
    rows[c.simplex][classical] -= Fraction(1, 1000)
    bumped = NoisyCode(machine.shape, tuple(map(tuple, rows)))
    assert any(p < 1 for p in output_probabilities(bumped, pair.task, pair.T))


def test_head_symbol_readout_learning_coefficient_by_hand():
    """One state; the output is the symbol under the head after one step.

    Inputs A, B: the machine rewrites the symbol and stays. Both wrong writes and both wrong
    moves (onto a blank) of the two used pairs change the output: lambda = 8 of d = 12.
    """
    table = {("A", "q"): ("A", "q", "S"), ("B", "q"): ("B", "q", "S"), ("_", "q"): ("_", "q", "R")}
    machine = TuringMachine(SYMBOLS, ("q",), "q", table)
    task = SynthesisTask((("A", "A"), ("B", "B")), readout="head_symbol")
    result = learning_coefficient_at_vertex(machine, task, 1)
    assert machine.shape.dimension == 12
    assert result.learning_coefficient == 8
    assert {(c.symbol, c.kind) for c in result.relevant_coordinates} == {
        ("A", "write"), ("A", "move"), ("B", "write"), ("B", "move")}
    expansion = vertex_expansion(machine, task, 1)
    assert set(expansion.potential_first_order.values()) == {Fraction(1, 2)}


def test_unsettled_vertex_reports_a_witness():
    task = detect_a_task((2,))
    result = learning_coefficient_at_vertex(detect_a(), task, 2)
    assert result.learning_coefficient is None and result.multiplicity is None
    assert "do not settle" in result.reason
    x, errors = result.witness
    relevant = set(result.relevant_coordinates)
    assert errors and not relevant.intersection(errors)
    # the witness errors together change the output of x; each alone does not
    def with_errors(errs):
        simplices = [list(s) for s in vertex_code(detect_a()).simplices]
        for c in errs:
            classical = simplices[c.simplex].index(1)
            simplices[c.simplex][c.entry] = Fraction(1, 4)
            simplices[c.simplex][classical] -= Fraction(1, 4)
        return NoisyCode(detect_a().shape, tuple(map(tuple, simplices)))
    y = dict(task.examples)[x]
    assert output_distribution(with_errors(errors), x, 2)[y] < 1
    for c in errors:
        assert output_distribution(with_errors([c]), x, 2)[y] == 1


def test_learning_coefficient_input_validation():
    with pytest.raises(ValueError, match="does not compute"):
        learning_coefficient_at_vertex(parity(), parity_task((1,)), 0)
    with pytest.raises(ValueError, match="coordinates"):
        learning_coefficient_at_vertex(detect_a(), detect_a_task(), 1, coordinates="polar")
    with pytest.raises(ValueError, match="not a possible state"):
        vertex_expansion(detect_a(), parity_task(), 2)


# ---------------------------------------------------------------------------------------------
# finite-temperature oracle
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [Fraction(1, 3), 1, 5, Fraction(73, 2), 1000])
def test_single_step_detect_a_is_two_t_over_t_plus_two(t):
    assert single_step_llc(2, 2, t) == Fraction(2 * t, t + 2)


@pytest.mark.parametrize("num_inputs, num_states", [(1, 2), (2, 2), (2, 3), (3, 4)])
@pytest.mark.parametrize("t", [0.5, 3.0, 40.0])
def test_single_step_formula_against_quadrature(num_inputs, num_states, t):
    """From first principles: v ~ Beta(1, |Q|-1) prior marginal, tempered by v^{t/N}."""
    a = t / num_inputs

    def weight(v):
        return v**a * (num_states - 1) * (1 - v) ** (num_states - 2)

    norm, _ = integrate.quad(weight, 0, 1, epsabs=0, epsrel=1e-12)
    mean, _ = integrate.quad(lambda v: -math.log(v) * weight(v), 0, 1, epsabs=0, epsrel=1e-12)
    # K = (1/N) sum_i (-log v_i) with i.i.d. factors, so t E[K] = t E[-log v]
    assert single_step_llc(num_inputs, num_states, t) == pytest.approx(t * mean / norm, rel=1e-9)


def test_single_step_detect_a_against_two_dimensional_quadrature():
    t = 6.0

    def K(u_a, u_b):
        return -0.5 * math.log1p(-u_a) - 0.5 * math.log1p(-u_b)

    norm, _ = integrate.dblquad(lambda ua, ub: math.exp(-t * K(ua, ub)), 0, 1, 0, 1, epsrel=1e-11)
    mean, _ = integrate.dblquad(
        lambda ua, ub: K(ua, ub) * math.exp(-t * K(ua, ub)), 0, 1, 0, 1, epsrel=1e-11
    )
    assert single_step_llc(2, 2, t) == pytest.approx(t * mean / norm, rel=1e-8)
    assert single_step_llc(2, 2, t) == pytest.approx(2 * t / (t + 2), rel=1e-14)


def test_single_step_limit_is_the_vertex_learning_coefficient():
    for machine in (detect_a(), detect_a(extra_state=True)):
        n_states = len(machine.states)
        lam = learning_coefficient_at_vertex(machine, detect_a_task(), 1).learning_coefficient
        assert lam == 2 * (n_states - 1)
        value = single_step_llc(2, n_states, 10**9)
        assert value < lam and lam - value < Fraction(1, 10**7)  # gap ~ N^2 sum_k k / t
    assert isinstance(single_step_llc(2, 3, 7), Fraction)
    assert isinstance(single_step_llc(2, 3, 7.0), float)


# ---------------------------------------------------------------------------------------------
# coordinates
# ---------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=30)
@given(st.lists(st.integers(0, 9), min_size=2, max_size=4).filter(any), st.integers(1, 5))
def test_squared_and_barycentric_conversions(weights, scale):
    p = tuple(Fraction(w, sum(weights)) for w in weights)
    u = barycentric_to_squared(p)
    assert sympy.nsimplify(sum(v**2 for v in u)) == 1
    back = squared_to_barycentric(u)
    for b, q in zip(back, p):
        assert sympy.simplify(b - sympy.Rational(q.numerator, q.denominator)) == 0
    integer_u = tuple(Fraction(w) for w in weights)
    scaled = tuple(scale * v for v in integer_u)
    assert squared_to_barycentric(scaled) == squared_to_barycentric(integer_u)
    assert squared_to_barycentric(tuple(-v for v in integer_u)) == squared_to_barycentric(integer_u)


def test_code_from_squared_and_float_conversion():
    shape = detect_a().shape
    squared = [tuple(range(1, k + 1)) for k in shape.simplex_sizes]
    code = code_from_squared(shape, squared)
    assert code.simplices[0] == (Fraction(1, 14), Fraction(4, 14), Fraction(9, 14))
    float_u = barycentric_to_squared((0.25, 0.75))
    assert float_u == pytest.approx((0.5, math.sqrt(0.75)))


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------


def test_machine_validation():
    table = dict(detect_a().transitions)
    with pytest.raises(ValueError, match="total"):
        detect_table(dict(list(table.items())[1:]))
    with pytest.raises(ValueError, match="moves"):
        detect_table({**table, ("A", "reject"): ("A", "accept", "X")})
    with pytest.raises(ValueError, match="writes"):
        detect_table({**table, ("A", "reject"): ("C", "accept", "R")})
    with pytest.raises(ValueError, match="goes to"):
        detect_table({**table, ("A", "reject"): ("A", "halt", "R")})
    with pytest.raises(ValueError, match="not a \\(symbol, state\\) pair"):
        detect_table({**table, ("C", "reject"): ("A", "accept", "R")})
    with pytest.raises(ValueError, match="blank"):
        MachineShape(("A", "B"), ("q",), "q")
    with pytest.raises(ValueError, match="start_state"):
        MachineShape(SYMBOLS, ("q",), "r")
    with pytest.raises(ValueError, match="distinct"):
        MachineShape(("_", "A", "A"), ("q",), "q")
    with pytest.raises(ValueError, match="not symbols"):
        run(detect_a(), "AC", 2)
    with pytest.raises(ValueError, match="non-negative integer"):
        run(detect_a(), "A", -1)
    with pytest.raises(ValueError, match="readout"):
        output_distribution(uniform_code(detect_a()), "A", 1, readout="tape")


def test_code_and_task_validation():
    shape = detect_a().shape
    flat = list(uniform_code(shape).flat())
    with pytest.raises(ValueError, match="sum to 1"):
        code_from_flat(shape, [Fraction(1, 2)] + flat[1:])
    with pytest.raises(ValueError, match="nonnegative"):
        code_from_flat(shape, [Fraction(-1, 3), Fraction(2, 3), Fraction(2, 3)] + flat[3:])
    with pytest.raises(ValueError, match="entries"):
        code_from_flat(shape, flat[:-1])
    with pytest.raises(ValueError, match="sum to 1"):
        SynthesisTask(
            (("A", "accept"), ("B", "reject")), probabilities=(Fraction(1, 2), Fraction(1, 3))
        )
    with pytest.raises(ValueError, match="exact"):
        SynthesisTask((("A", "accept"), ("B", "reject")), probabilities=(0.5, 0.5))
    with pytest.raises(ValueError, match="only once"):
        SynthesisTask((("A", "accept"), ("A", "reject")))
    with pytest.raises(ValueError, match="possible state"):
        output_probabilities(uniform_code(shape), SynthesisTask((("A", "yes"),)), 1)
    with pytest.raises(ValueError, match="single_step|positive"):
        single_step_llc(0, 2, 1)
    with pytest.raises(ValueError, match="at least 2"):
        single_step_llc(2, 1, 1)
    with pytest.raises(ValueError, match="nbeta"):
        single_step_llc(2, 2, -1.0)


# ---------------------------------------------------------------------------------------------
# finite-temperature oracle under a Dirichlet prior (localised, or squared coordinates)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_inputs, num_states", [(1, 2), (2, 2), (2, 3), (3, 4)])
@pytest.mark.parametrize("t", [Fraction(1, 3), 5, Fraction(73, 2), 1000])
def test_dirichlet_oracle_with_unit_concentrations_is_the_uniform_oracle(num_inputs, num_states, t):
    value = single_step_llc_dirichlet(num_inputs, num_states, t)
    assert isinstance(value, Fraction)
    assert value == single_step_llc(num_inputs, num_states, t)


@pytest.mark.parametrize(
    "alpha_c, alpha_e", [(1, Fraction(1, 2)), (5, 1), (3, Fraction(1, 2)), (Fraction(5, 2), 2)]
)
@pytest.mark.parametrize("t", [0.5, 4.0, 60.0])
def test_dirichlet_oracle_two_states_against_quadrature(alpha_c, alpha_e, t):
    """One input, two states: v = P(correct state), prior density v^(a_c-1) (1-v)^(a_e-1)."""
    a_c, a_e = float(alpha_c), float(alpha_e)

    def weight(v):  # tempered posterior, unnormalised, in u = 1 - v (the error probability)
        return (1 - v) ** t * (1 - v) ** (a_c - 1) * v ** (a_e - 1)

    # substitute v = w^2 so that the v^(-1/2) endpoint singularity becomes smooth
    def in_w(f):
        return lambda w: f(w * w) * 2 * w

    norm, _ = integrate.quad(in_w(weight), 0, 1, epsabs=0, epsrel=1e-12, limit=200)
    mean, _ = integrate.quad(in_w(lambda v: -math.log1p(-v) * weight(v)), 0, 1, epsabs=0,
                             epsrel=1e-12, limit=200)
    expected = t * mean / norm
    assert single_step_llc_dirichlet(1, 2, t, alpha_c, alpha_e) == pytest.approx(expected,
                                                                                 rel=1e-9)


def test_dirichlet_oracle_three_states_squared_convention_against_2d_quadrature():
    """|Q| = 3, alpha_e = 1/2: substitute e_i = u_i^2 (Dirichlet(1/2) is uniform on the sphere),
    so the prior is flat in (u_1, u_2) on the quarter disc and K = -log(1 - u_1^2 - u_2^2)."""
    t, alpha_c = 7.0, 2.0

    def weight(u1, u2):
        v = 1 - u1 * u1 - u2 * u2
        return v ** (t + alpha_c - 1) if v > 0 else 0.0

    def upper(u1):
        return math.sqrt(max(1 - u1 * u1, 0.0))

    norm, _ = integrate.dblquad(lambda u2, u1: weight(u1, u2), 0, 1, 0, upper, epsrel=1e-11)
    mean, _ = integrate.dblquad(
        lambda u2, u1: -math.log(max(1 - u1 * u1 - u2 * u2, 1e-300)) * weight(u1, u2),
        0, 1, 0, upper, epsrel=1e-11,
    )
    value = single_step_llc_dirichlet(1, 3, Fraction(7), 2, Fraction(1, 2))
    assert value == Fraction(7, 9)  # b = 1 and N = 1: t / (t + alpha_c), exactly
    assert float(value) == pytest.approx(t * mean / norm, rel=1e-8)


@pytest.mark.parametrize("alpha_c, alpha_e", [(1, Fraction(1, 2)), (10, 1), (4, Fraction(3, 2))])
def test_dirichlet_oracle_tends_to_the_learning_coefficient(alpha_c, alpha_e):
    for num_inputs, num_states in ((2, 2), (2, 3)):
        lam = num_inputs * (num_states - 1) * float(alpha_e)
        values = [single_step_llc_dirichlet(num_inputs, num_states, t, alpha_c, alpha_e)
                  for t in (1e2, 1e4, 1e8)]
        assert values[0] < values[1] < values[2] < lam  # increases to lambda from below
        assert lam - values[2] < 1e-5 * (1 + alpha_c) * num_inputs * num_states
    # the squared-coordinate limit is half the barycentric one (theory.turing's coordinates)
    bary = learning_coefficient_at_vertex(detect_a(), detect_a_task(), 1, "barycentric")
    sq = learning_coefficient_at_vertex(detect_a(), detect_a_task(), 1, "squared")
    assert sq.learning_coefficient == bary.learning_coefficient / 2 == 1
    assert single_step_llc_dirichlet(2, 2, 1e9, 1, 0.5) == pytest.approx(1.0, abs=1e-8)


def test_dirichlet_oracle_localisation_lowers_the_value_like_a_shift_of_t():
    t = Fraction(100)
    # b = 1: t / (t/N + alpha_c), i.e. t/N -> t/N + alpha_c - 1 in the uniform formula
    assert single_step_llc_dirichlet(2, 2, t, 11) == t / (t / 2 + 11)
    assert single_step_llc_dirichlet(2, 2, t, 11) < single_step_llc(2, 2, t)


def test_dirichlet_oracle_input_validation():
    with pytest.raises(ValueError, match="num_states"):
        single_step_llc_dirichlet(2, 1, 10)
    with pytest.raises(ValueError, match="classical_concentration"):
        single_step_llc_dirichlet(2, 2, 10, 0)
    with pytest.raises(ValueError, match="error_concentration"):
        single_step_llc_dirichlet(2, 2, 10, 1, -1)
    with pytest.raises(ValueError, match="nbeta"):
        single_step_llc_dirichlet(2, 2, math.inf)
    assert isinstance(single_step_llc_dirichlet(2, 2, 10.0, 2, 1), float)
    assert isinstance(single_step_llc_dirichlet(2, 2, 10, 2, 0.5), float)
