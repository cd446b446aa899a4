"""Posterior: the localized tempered posterior built and checked once (make_posterior), and the
estimators that take one as their target give the numbers their keyword arguments give."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toymodels
import toymodels.objectives
from toymodels import (
    Posterior,
    calibrate,
    component_llcs,
    estimate_llc,
    finite_difference_response,
    make_posterior,
    susceptibilities,
)
from toymodels.models.potentials import normal_crossing_potential, quadratic_potential

F64 = torch.float64
W0 = torch.zeros(2, dtype=F64)
POT = quadratic_potential(torch.diag(torch.tensor([1.0, 4.0], dtype=F64)))
RUN = dict(step_size=1e-3, num_chains=4, num_draws=50, seed=3, progress=False)


def network(n=100):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh(), torch.nn.Linear(2, 1)).double()
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(n, 3, generator=g, dtype=F64), torch.randn(n, 1, generator=g, dtype=F64)


class _Forbidden(torch.nn.Module):
    """A network whose forward must not run: the cheap checks come first."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x):
        raise AssertionError("the network ran before the numbers were checked")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    (dict(nbeta=0.0), r"nbeta must be a finite number > 0.*n / log n"),
    (dict(nbeta=float("nan")), "nbeta must be"),
    (dict(localization=-1.0), r"localization must be a finite number ≥ 0.*0 means no localization"),
    (dict(log_prior=3.0), "log_prior must be a function"),
])
def test_bad_numbers_fail_before_the_network_runs(kwargs, match):
    x, y = torch.randn(10, 3), torch.randn(10, 1)
    with pytest.raises((ValueError, TypeError), match=match):
        make_posterior(_Forbidden(), data=(x, y), loss_fn=F.mse_loss, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(init=W0), "nbeta is required for a potential.*pass nbeta"),
    (dict(nbeta=1.0), "a potential needs init=w_star"),
    (dict(init=W0, nbeta=1.0, restrict_to=["a"]), "restrict_to by name needs a network"),
    (dict(init=W0, nbeta=1.0, restrict_to=torch.tensor([1, 0])), r"boolean tensor of shape \(2,\)"),
    (dict(init=W0, nbeta=1.0, restrict_to=torch.tensor([True])), r"boolean tensor of shape \(2,\)"),
    (dict(init=W0, nbeta=1.0, restrict_to=torch.tensor([False, False])), "selects no parameter"),
    (dict(init=W0, nbeta=1.0, batch_size=4), "batch_size is for networks"),
])
def test_bad_potential_arguments_say_what_to_change(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_posterior(POT, **kwargs)


def test_unknown_parameter_names_list_the_valid_ones():
    model, x, y = network()
    with pytest.raises(ValueError, match=r"unknown parameter names \['nope'\].*0.weight"):
        make_posterior(model, data=(x, y), loss_fn=F.mse_loss, restrict_to=["nope"])


def test_estimators_refuse_bad_input_with_the_same_message():
    """The checks exist once: estimate_llc, calibrate and finite_difference_response say the same."""
    messages = []
    for call in (lambda: estimate_llc(POT, init=W0, progress=False),
                 lambda: calibrate(POT, init=W0),
                 lambda: finite_difference_response(POT, init=W0, observables={"x": lambda w: w[0]},
                                                    perturbation=lambda w: w[1], delta=0.1)):
        with pytest.raises(ValueError, match="nbeta is required") as info:
            call()
        messages.append(str(info.value))
    assert len(set(messages)) == 1


def test_a_posterior_checks_itself_and_is_frozen():
    posterior = make_posterior(POT, init=W0, nbeta=10.0)
    with pytest.raises(ValueError, match="nbeta must be"):
        Posterior(posterior.objective, nbeta=-1.0)
    with pytest.raises(TypeError, match="objective must be an Objective"):
        Posterior(POT, nbeta=1.0)
    with pytest.raises(ValueError, match="selects no parameter"):
        dataclasses.replace(posterior, mask=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(dataclasses.FrozenInstanceError):
        posterior.nbeta = 3.0


# ----------------------------------------------------------------------------- nβ and the mask


def test_default_nbeta_is_n_over_log_n_and_says_so():
    model, x, y = network(n=100)
    posterior = make_posterior(model, data=(x, y), loss_fn=F.mse_loss, batch_size=20)
    assert posterior.nbeta == 100 / math.log(100)
    assert posterior.nbeta_source == "n/log n with n=100"  # the data's size, not the batch's
    assert posterior.num_samples == 100 and posterior.batch_size == 20
    given = make_posterior(model, data=(x, y), loss_fn=F.mse_loss, nbeta=np.float64(7))
    assert (given.nbeta, given.nbeta_source) == (7.0, "given") and type(given.nbeta) is float
    assert toymodels.default_nbeta is toymodels.objectives.default_nbeta
    assert toymodels.default_nbeta(100) == posterior.nbeta
    with pytest.raises(ValueError, match="pass nbeta explicitly"):
        toymodels.default_nbeta(1)
    result = estimate_llc(posterior, step_size=1e-4, num_chains=2, num_draws=5, progress=False)
    assert (result.nbeta, result.nbeta_source, result.batch_size) == (posterior.nbeta, posterior.nbeta_source, 20)


def test_mask_by_name_prefix_and_tensor():
    model, x, y = network()
    # parameters: 0.weight (6), 0.bias (2), 2.weight (2), 2.bias (1)
    by_prefix = make_posterior(model, data=(x, y), loss_fn=F.mse_loss, restrict_to="0")
    assert by_prefix.mask.tolist() == [True] * 8 + [False] * 3
    by_names = make_posterior(model, data=(x, y), loss_fn=F.mse_loss, restrict_to=["2.weight", "0.bias"])
    assert by_names.mask.tolist() == [False] * 6 + [True] * 2 + [True] * 2 + [False]
    mask = torch.tensor([False] * 10 + [True])
    by_tensor = make_posterior(model, data=(x, y), loss_fn=F.mse_loss, restrict_to=mask)
    assert torch.equal(by_tensor.mask, mask)
    assert torch.equal(by_prefix.restricted_to(["2.bias"]).mask, mask)
    assert make_posterior(POT, init=W0, nbeta=1.0).mask is None


# ----------------------------------------------------------------------------- same numbers


def test_estimate_llc_on_a_posterior_equals_the_keyword_arguments_bit_for_bit():
    prior = lambda w: -0.5 * (w ** 2).sum()  # noqa: E731
    physics = dict(init=W0, nbeta=20.0, localization=0.5, log_prior=prior,
                   restrict_to=torch.tensor([True, True]))
    direct = estimate_llc(POT, **physics, **RUN)
    posterior = make_posterior(POT, **physics)
    via = estimate_llc(posterior, **RUN)
    assert np.array_equal(direct.loss_trace, via.loss_trace)
    assert direct.llc_mean == via.llc_mean and direct.mcse == via.mcse
    assert (direct.nbeta, direct.localization, direct.nbeta_source) == (via.nbeta, via.localization, "given")
    # and a second run on the same posterior gives the same numbers again
    assert np.array_equal(estimate_llc(posterior, **RUN).loss_trace, via.loss_trace)


def test_calibrate_on_a_posterior_equals_the_keyword_arguments():
    options = dict(step_sizes=[1e-3, 2e-3, 4e-3], num_chains=4, num_draws=20, max_rounds=1,
                   relax_max_steps=200, seed=2)
    pot = normal_crossing_potential([1, 2])
    direct = calibrate(pot, init=W0, nbeta=10.0, localization=1.0, **options)
    via = calibrate(make_posterior(pot, init=W0, nbeta=10.0, localization=1.0), **options)
    assert [c.step_size for c in direct.choices] == [c.step_size for c in via.choices]
    assert [r["llc_mean"] for r in direct.table] == [r["llc_mean"] for r in via.table]


def test_responses_on_a_posterior_equal_the_keyword_arguments():
    obs = {"x": lambda w: w[0], "sq": lambda w: w ** 2}
    physics = dict(init=W0, nbeta=10.0, localization=0.5)
    posterior = make_posterior(POT, **physics)
    a = finite_difference_response(POT, observables=obs, perturbation=lambda w: w[0], delta=0.2,
                                   **physics, **RUN)
    b = finite_difference_response(posterior, observables=obs, perturbation=lambda w: w[0],
                                   delta=0.2, **RUN)
    assert np.array_equal(a.derivative, b.derivative) and a.nbeta == b.nbeta
    parts = {"first": torch.tensor([True, False]), "second": torch.tensor([False, True])}
    direct = component_llcs(POT, parts, **physics, **RUN)
    via = component_llcs(posterior, parts, **RUN)
    for name in parts:
        assert np.array_equal(direct[name].loss_trace, via[name].loss_trace)
    s = susceptibilities(posterior, observables=obs, perturbations={"p": lambda w: w[1] ** 2}, **RUN)
    t = susceptibilities(POT, observables=obs, perturbations={"p": lambda w: w[1] ** 2}, **physics, **RUN)
    assert np.array_equal(s.chi, t.chi)


# ----------------------------------------------------------------------------- a posterior is whole


def test_physics_arguments_with_a_posterior_are_refused_by_name():
    posterior = make_posterior(POT, init=W0, nbeta=10.0)
    with pytest.raises(ValueError, match=r"pass it alone, without nbeta, restrict_to"):
        make_posterior(posterior, nbeta=3.0, restrict_to=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="without localization"):
        estimate_llc(posterior, localization=1.0, **RUN)
    with pytest.raises(ValueError, match="without init"):
        estimate_llc(posterior, init=W0, **RUN)
    with pytest.raises(ValueError, match="without nbeta"):
        calibrate(posterior, nbeta=[1.0, 2.0])
    with pytest.raises(ValueError, match="without localization"):
        calibrate(posterior, localization=[0.0])
    with pytest.raises(ValueError, match="without log_prior"):
        susceptibilities(posterior, observables={"x": lambda w: w[0]}, perturbations={},
                         log_prior=lambda w: w.sum(), **RUN)
    with pytest.raises(ValueError, match="without localization"):
        finite_difference_response(posterior, observables={"x": lambda w: w[0]},
                                   perturbation=lambda w: w[1], delta=0.1, localization=1.0)
    with pytest.raises(ValueError, match="sets the mask itself"):
        component_llcs(posterior.restricted_to(torch.tensor([True, False])),
                       {"a": torch.tensor([True, False])}, **RUN)
    # a default value is no physics argument: nothing to refuse
    assert make_posterior(posterior, localization=0.0, nbeta=None) is posterior
