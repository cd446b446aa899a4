"""The localized tempered posterior as one object, built and checked once: :class:`Posterior`.

Every estimator of the library samples (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8
and Definition 3)::

    p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w),

over the coordinates a mask leaves free (the others fixed at ``w*``; Baker et al., arXiv
2504.18274, §3). A :class:`Posterior` holds the pieces: the loss ``L`` with its centre ``w*`` (an
:class:`~toymodels.objectives.base.Objective`), ``nβ`` and where it came from, ``γ``, ``log φ``
and the mask. :func:`make_posterior` builds one from what a user has — a potential with
``init=w*``, or a network with data and a loss — and checks everything before anything is
sampled: ``nβ`` defaults to ``n / log n`` for ``n`` samples (:func:`default_nbeta`) and is
required for a potential; the mask comes from parameter names or module prefixes (a network) or
a boolean ``(d,)`` tensor (:func:`resolve_mask`).

``estimate_llc``, ``calibrate``, ``susceptibilities``, ``bayesian_influence``,
``finite_difference_response`` and ``component_llcs`` accept a Posterior as their target; their
keyword arguments ``init=, data=, loss_fn=, batch_size=, nbeta=, localization=, log_prior=,
restrict_to=`` build one through :func:`make_posterior`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from toymodels.checks import as_float, as_int
from toymodels.objectives.base import Objective, PotentialObjective
from toymodels.objectives.module import ModuleObjective, data_from_loader, parameter_mask

__all__ = ["Posterior", "make_posterior", "make_objective", "default_nbeta", "resolve_mask",
           "check_nbeta", "check_localization", "check_mask", "PHYSICS_ARGUMENTS"]

#: the arguments that define the posterior, with their defaults (what :func:`make_posterior`
#: takes besides the target; passed along with a ready :class:`Posterior`, they are refused)
PHYSICS_ARGUMENTS = dict(init=None, data=None, loss_fn=None, batch_size=None, nbeta=None,
                         localization=0.0, log_prior=None, restrict_to=None)


def default_nbeta(num_samples: int) -> float:
    """The default inverse temperature times sample size, ``nβ = n / log n`` (β = 1/log n).

    This is the choice of Lau et al. (Watanabe's WBIC temperature). devinterp's default is
    ``b / log b`` with ``b`` the *batch* size, which is a different posterior whenever ``b ≠ n``.
    """
    if num_samples < 2:
        raise ValueError(f"n / log n needs n ≥ 2 samples, got {num_samples}; pass nbeta explicitly")
    return num_samples / math.log(num_samples)


def check_nbeta(nbeta) -> float:
    """``nβ`` as a finite float ``> 0``, or refused with the default named."""
    return as_float("nbeta", nbeta, minimum=0, strict=True,
                    hint="the default for n samples is n / log n")


def check_localization(localization) -> float:
    """``γ`` as a finite float ``≥ 0``."""
    return as_float("localization", localization, minimum=0, hint="0 means no localization")


def check_mask(mask, dim: int) -> torch.Tensor:
    """A boolean ``(dim,)`` tensor that selects at least one coordinate, or refused with advice."""
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool or mask.shape != (dim,):
        raise ValueError(f"mask must be a boolean tensor of shape ({dim},), got {mask.dtype} of "
                         f"shape {tuple(mask.shape)}; restrict_to takes such a mask, or parameter "
                         "names and module prefixes for a network")
    if not mask.any():
        raise ValueError("mask selects no parameter: nothing would be sampled")
    return mask


@dataclass(frozen=True, eq=False)
class Posterior:
    """``p(w) ∝ exp(−nβ L(w) − γ/2 ||w − w*||²) φ(w)`` over the coordinates of ``mask``.

    Build one with :func:`make_posterior`; constructing it directly checks the same things
    (``nβ > 0``, ``γ ≥ 0``, a callable prior, a boolean ``(d,)`` mask that selects something).

    Attributes:
        objective: the loss ``L`` of one flat parameter vector, batched over chains, and its
            centre ``w*`` (``objective.center``).
        nbeta: ``nβ``, the inverse temperature times the sample size.
        nbeta_source: where ``nbeta`` came from: ``"given"`` or ``"n/log n with n=…"``.
        localization: ``γ ≥ 0``, the pull towards ``w*``.
        log_prior: ``log φ(w)`` of one flat vector, or ``None`` (flat).
        mask: boolean ``(d,)``: the coordinates sampled (the rest stay at ``w*``); ``None``: all.
        batch_size: the minibatch size asked for (networks), ``None`` for the full batch.
    """

    objective: Objective
    nbeta: float
    nbeta_source: str = "given"
    localization: float = 0.0
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    batch_size: int | None = None

    def __post_init__(self):
        if not isinstance(self.objective, Objective):
            raise TypeError("objective must be an Objective (make_posterior builds one from a "
                            f"potential or a network), got {type(self.objective).__name__}")
        object.__setattr__(self, "nbeta", check_nbeta(self.nbeta))
        object.__setattr__(self, "localization", check_localization(self.localization))
        if not isinstance(self.nbeta_source, str):
            raise TypeError(f"nbeta_source must be a string, got {type(self.nbeta_source).__name__}")
        if self.log_prior is not None and not callable(self.log_prior):
            raise TypeError("log_prior must be a function of one flat parameter vector, "
                            f"w -> log φ(w), got {type(self.log_prior).__name__}")
        if self.mask is not None:
            object.__setattr__(self, "mask", check_mask(self.mask, self.objective.dim))
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size",
                               as_int("batch_size", self.batch_size, 1, "None means full batch"))

    @property
    def center(self) -> torch.Tensor:
        """``w*``, the point the posterior is localized at (``(d,)``)."""
        return self.objective.center

    @property
    def dim(self) -> int:
        return self.objective.dim

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def num_samples(self) -> int | None:
        """The dataset size ``n`` of a network, ``None`` for a potential."""
        return self.objective.num_samples

    def restricted_to(self, restrict_to) -> Posterior:
        """The same posterior over other coordinates: names or prefixes (a network) or a mask."""
        return replace(self, mask=resolve_mask(self.objective, restrict_to))

    def __repr__(self) -> str:
        n = "" if self.num_samples is None else f", n={self.num_samples}"
        free = "all" if self.mask is None else f"{int(self.mask.sum())}"
        return (f"Posterior({type(self.objective).__name__}, d={self.dim}{n}, nβ={self.nbeta:.6g} "
                f"[{self.nbeta_source}], γ={self.localization:g}, "
                f"prior={'given' if self.log_prior is not None else 'flat'}, sampled={free})")


def make_posterior(
    target: Posterior | Objective | torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    batch_size: int | None = None,
    nbeta: float | None = None,
    localization: float = 0.0,
    log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
    restrict_to=None,
) -> Posterior:
    """Build and check the :class:`Posterior` that the estimators sample.

    * ``make_posterior(potential, init=w_star, nbeta=...)`` — ``potential(w)`` maps one flat
      ``(d,)`` vector to the scalar loss; ``nbeta`` is required (there is no sample size).
    * ``make_posterior(model, data=(inputs, targets), loss_fn=...)`` — a ``torch.nn.Module`` at
      ``w*``, data as tensors (or a DataLoader, concatenated once), ``loss_fn(outputs, targets)``
      the batch-mean loss (its contracts are checked:
      :func:`~toymodels.objectives.module.check_module_contracts`); ``nbeta`` defaults to
      ``n / log n`` with ``n`` the dataset size (never the batch size), and ``nbeta_source``
      says which was used. ``batch_size`` draws a minibatch per chain and step.
    * an :class:`~toymodels.objectives.base.Objective` is used as it is (its data, loss and
      ``w*`` are fixed: ``init``, ``data``, ``loss_fn`` and ``batch_size`` are refused with it).
    * a :class:`Posterior` passes through; any other argument with it is refused, naming it.

    ``localization`` is ``γ ≥ 0``; ``log_prior`` an optional ``log φ(w)`` of one flat vector
    (added to the drift; the recorded loss is still ``L``); ``restrict_to`` samples only these
    parameters (names or module prefixes for a network, or a boolean ``(d,)`` mask), the rest
    fixed at ``w*``. Everything is checked here, cheap numbers first, before the network runs.
    """
    if isinstance(target, Posterior):
        refuse_physics_arguments(dict(init=init, data=data, loss_fn=loss_fn, batch_size=batch_size,
                                      nbeta=nbeta, localization=localization, log_prior=log_prior,
                                      restrict_to=restrict_to))
        return target
    if nbeta is not None:
        nbeta = check_nbeta(nbeta)
    localization = check_localization(localization)
    if log_prior is not None and not callable(log_prior):
        raise TypeError("log_prior must be a function of one flat parameter vector, "
                        f"w -> log φ(w), got {type(log_prior).__name__}")
    objective = make_objective(target, init=init, data=data, loss_fn=loss_fn, batch_size=batch_size)
    if nbeta is None:
        if objective.num_samples is None:
            raise ValueError("nbeta is required for a potential (there is no dataset size to "
                             "default from): pass nbeta=...")
        nbeta, nbeta_source = default_nbeta(objective.num_samples), f"n/log n with n={objective.num_samples}"
    else:
        nbeta_source = "given"
    return Posterior(objective=objective, nbeta=nbeta, nbeta_source=nbeta_source,
                     localization=localization, log_prior=log_prior,
                     mask=resolve_mask(objective, restrict_to), batch_size=batch_size)


def refuse_physics_arguments(arguments: dict) -> None:
    """Refuse, naming them, the arguments of :data:`PHYSICS_ARGUMENTS` that are not at their
    default: they would rebuild a posterior that the caller passed ready-made."""
    given = [name for name, value in arguments.items() if not _is_default(value, PHYSICS_ARGUMENTS[name])]
    if given:
        raise ValueError(
            f"a Posterior already fixes the loss, nβ, γ, prior and mask: pass it alone, without "
            f"{', '.join(given)} (build another with make_posterior(...), or change one field "
            "with dataclasses.replace(posterior, nbeta=...))")


def _is_default(value, default) -> bool:
    if value is default:
        return True
    return (default is not None and isinstance(value, numbers.Real) and not isinstance(value, bool)
            and value == default)


def make_objective(
    target: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor] | Objective,
    *,
    init: torch.Tensor | None = None,
    data=None,
    loss_fn: Callable | None = None,
    batch_size: int | None = None,
) -> Objective:
    """Build the sampler's :class:`Objective` from a potential or from a network with data.

    An :class:`Objective` passes through unchanged (so a calibration and the run that follows
    share one, with its checks done and any compiled kernels kept).
    """
    if isinstance(target, Posterior):
        raise TypeError("make_objective takes a potential, a network or an Objective; a "
                        "Posterior holds one: posterior.objective")
    if isinstance(target, Objective):
        if init is not None or data is not None or loss_fn is not None or batch_size is not None:
            raise ValueError("an Objective already holds its data, loss and w*: pass it alone")
        return target
    if isinstance(target, torch.nn.Module):
        if init is not None:
            raise ValueError("init is for potentials; a network is sampled around its current parameters")
        if data is None or loss_fn is None:
            raise ValueError("a network needs data=(inputs, targets) and loss_fn=fn(outputs, targets)")
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError(f"data must be (inputs, targets), got a sequence of length {len(data)}")
            inputs, targets = data
        elif isinstance(data, torch.utils.data.DataLoader):
            inputs, targets = data_from_loader(data)
        else:
            raise TypeError(f"data must be (inputs, targets) tensors or a DataLoader, got {type(data).__name__}")
        if batch_size is not None:
            batch_size = as_int("batch_size", batch_size, 1, "None means full batch")
        return ModuleObjective(target, inputs, targets, loss_fn, batch_size=batch_size)
    if callable(target):
        if data is not None or loss_fn is not None:
            raise ValueError("data and loss_fn are for networks; a potential is a function of w alone")
        if batch_size is not None:
            raise ValueError("batch_size is for networks with data; a potential has no minibatches")
        if init is None:
            raise ValueError("a potential needs init=w_star, the flat parameter vector to localize at")
        return PotentialObjective(target, init)
    raise TypeError(f"expected a torch.nn.Module or a potential function, got {type(target).__name__}")


def resolve_mask(objective: Objective, restrict_to) -> torch.Tensor | None:
    """The boolean ``(d,)`` mask of ``restrict_to`` (names or prefixes for a network, or a mask)."""
    if restrict_to is None:
        return None
    if isinstance(restrict_to, torch.Tensor):
        return check_mask(restrict_to, objective.dim)
    if isinstance(objective, ModuleObjective):
        names = [restrict_to] if isinstance(restrict_to, str) else list(restrict_to)
        return parameter_mask(objective, names)
    raise ValueError("restrict_to by name needs a network; for a potential pass a boolean (d,) mask")
