"""devinterp 1.x's ``estimate_learning_coeff_with_summary``, run on this suite's vectorized sampler.

The call takes devinterp 1.3.2's arguments and returns its result keys::

    {"llc/mean": float, "llc/std": float, "llc-chain/0": float, ..., "loss/trace": (chains, draws)}

but all chains move together as one tensor through :func:`toymodels.estimate_llc` (the network
and data path: the DataLoader is concatenated once and ``evaluate`` is wrapped in a module so
``torch.func.functional_call`` and ``vmap`` batch it over chains). The estimator is the same,
``λ̂ = nβ (E[L] − L_init)`` (Lau, Furman, Wang, Murfet, Wei, arXiv 2308.12108, eq. 8), per chain,
then the mean and the (ddof = 1) standard deviation over chains, as devinterp's ``LLCEstimator``.

**The update.** devinterp's SGLD (``devinterp/optim/sgld.py``; Welling & Teh 2011 with Lau et
al.'s localization) moves each parameter by::

    w ← w − (lr/2) [nβ ∇L_B(w) + λ_wd w + γ (w − w*)] + √lr · σ · N(0, I)

with ``lr`` the learning rate, ``γ`` = ``localization``, ``λ_wd`` = ``weight_decay`` and ``σ`` =
``noise_level``. This suite's SGLD is ``w ← w − (ε/2) F + √ε N(0, I)`` with
``F = nβ ∇L + γ (w − w*) − ∇log φ(w)`` (:mod:`toymodels.sampling.integrator`), so the map is
exact: ``step_size = lr``, ``localization = γ``, and ``weight_decay`` is the Gaussian prior
``log φ(w) = −λ_wd ||w||² / 2``. ``noise_level ≠ 1`` (which breaks the posterior) and
``bounding_box_size`` (a clamp to a box around ``w*``) have no counterpart and are refused.

devinterp's SGNHT (``devinterp/optim/sgnht.py``, Ding et al. 2014) is
``v ← v − lr nβ ∇L_B; v ← v − α v; v ← v + √(2 lr A) N; w ← w + v; α ← α + (||v||²/d − lr)``
with ``A`` = ``diffusion_factor``, ``v₀ ~ N(0, lr)`` and ``α₀ = A``. This suite's SGNHT
(:class:`toymodels.sampling.SGNHT`) has the same variables with ``η = ε/2``, so
``step_size = 2·lr`` and ``diffusion = A``; it differs in the discretisation (the friction acts
on the momentum before the kick, and the thermostat aims at ``η/(1 − α/2)`` instead of ``η``,
which removes a cooling bias of about ``A/2``), so the two agree in law as ``lr → 0``, not
draw for draw.

**Semantic differences** (each is tested in ``tests/compat/test_devinterp_compat.py``):

* ``nbeta`` defaults to devinterp's ``b / log b`` with ``b`` the loader's batch size (1 with a
  warning for ``b = 1``), so the numbers match devinterp's; the native
  :func:`toymodels.estimate_llc` uses ``n / log n`` with ``n`` the dataset size
  (:func:`toymodels.objectives.default_nbeta`). The deprecated ``temperature`` key is an alias
  of ``nbeta``, as in devinterp.
* Minibatches: devinterp cycles the DataLoader in each chain (its order, its last partial
  batch); here the loader is concatenated once and each chain draws ``b`` samples uniformly
  with replacement at every step (``b ≥ n``: the full batch).
* The draws: devinterp records, every ``num_steps_bw_draws`` steps after burn-in, the
  minibatch loss of the *last* step of each block, before that step moves; the native sampler
  records the *first* step of each block. The burn-in passed down is therefore
  ``num_burnin_steps + num_steps_bw_draws − 1``, which puts the draws at the same steps
  (the native run then takes ``num_steps_bw_draws − 1`` unrecorded steps at the end).
* ``init_loss``: devinterp averages the loss of the loader's first ``num_chains`` batches at
  ``w*`` (and treats ``init_loss=0`` as absent); here it is the full-data loss ``L(w*)`` unless
  ``init_loss`` is given (``0.0`` included).
* ``evaluate(model, batch)`` returns the loss, a ``(loss, ...)`` tuple, a dict with ``"loss"``,
  or an object with ``.loss``, as in devinterp; it must be a batch *mean* (checked on two
  halves of the data) and vmap-able (no ``.item()``, no data-dependent Python control flow).
  ``evaluate=None`` means ``model(batch)`` returns the loss (devinterp's sampler default;
  devinterp 1.3.2 itself fails there unless ``init_loss`` is given).
* The model's train/eval mode is left as it is (devinterp calls ``model.train()``); a model
  with dropout or batch norm in training mode is refused with advice to call ``model.eval()``.
* ``seed``: one integer seeds every random number of the run (devinterp seeds each chain's
  global torch state); ``None`` draws fresh entropy from the operating system, never from
  global state; a list of per-chain seeds is refused.
* ``optimize_over_per_model_param`` (boolean masks by parameter name) is honoured through the
  native boolean ``restrict_to`` mask: the gradient, localization, weight decay and noise are
  zero on the frozen entries, as in devinterp's SGLD. devinterp 1.3.2's SGNHT ignores the masks;
  here they apply to SGNHT too.
* ``model.to(device)`` moves the model, as devinterp does; the data go to the same device.

Refused at once, with a message (never silently ignored): ``callbacks``, ``cores ≠ 1``,
``gpu_idxs``, ``use_amp=True``, ``online=True``, ``grad_accum_steps ≠ 1``, a list of seeds,
optimizer keys without a counterpart (``noise_level ≠ 1``, ``bounding_box_size``, the
diagnostic ``metrics``/``save_noise``/``save_mala_vars``/``*_norm``/``distance`` flags, a
per-group ``optimize_over``) and any other ``sampling_method`` than devinterp's ``SGLD`` and
``SGNHT`` (matched by class name; devinterp is never imported) or this suite's sampler names.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from toymodels.checks import as_float, as_int
from toymodels.estimators.llc import estimate_llc, llc_draws
from toymodels.objectives import default_nbeta
from toymodels.sampling import SAMPLERS

__all__ = ["estimate_learning_coeff_with_summary", "estimate_learning_coeff", "devinterp_default_nbeta",
           "sampler_settings"]

#: optimizer keys that only feed devinterp's diagnostic callbacks (which are refused here)
_DIAGNOSTIC_KEYS = ("metrics", "save_noise", "save_mala_vars", "noise_norm", "grad_norm",
                    "weight_norm", "distance")
#: the optimizer keys each sampler understands here (devinterp's names)
_KEYS = {"sgld": ("lr", "nbeta", "localization", "weight_decay", "noise_level", "bounding_box_size"),
         "sgnht": ("lr", "nbeta", "diffusion_factor", "bounding_box_size"),
         "rmsprop_sgld": ("lr", "nbeta", "localization", "weight_decay"),
         "mala": ("lr", "nbeta", "localization", "weight_decay")}


def devinterp_default_nbeta(batch_size: int) -> float:
    """devinterp's default ``nβ = b / log b`` with ``b`` the DataLoader's batch size (1 if ``b ≤ 1``).

    The same formula as :func:`toymodels.objectives.default_nbeta` (``n / log n``, Watanabe's
    WBIC temperature as used by Lau et al. arXiv 2308.12108), applied to the batch size instead
    of the sample size, as ``devinterp.utils.default_nbeta`` does.
    """
    batch_size = as_int("batch_size", batch_size, 1)
    if batch_size <= 1:
        warnings.warn("devinterp's default nbeta b / log b is undefined for batch size 1; using 1 "
                      "as devinterp does (pass optimizer_kwargs={'nbeta': ...})", stacklevel=2)
        return 1.0
    return default_nbeta(batch_size)


def sampler_settings(sampling_method, optimizer_kwargs: Mapping | None, batch_size: int) -> dict:
    """devinterp's ``sampling_method`` and ``optimizer_kwargs`` as :func:`toymodels.estimate_llc`
    keywords (``sampler``, ``step_size``, ``nbeta``, ``localization``, ``log_prior``,
    ``sampler_options``), or refused with what to change. See the module docstring for the maps."""
    sampler = _sampler_name(sampling_method)
    kwargs = dict(optimizer_kwargs or {})
    if "temperature" in kwargs:
        if "nbeta" in kwargs:
            raise ValueError("optimizer_kwargs has both 'temperature' and 'nbeta': temperature is "
                             "devinterp's deprecated name for nbeta, pass only nbeta")
        kwargs["nbeta"] = kwargs.pop("temperature")
    diagnostic = sorted(k for k in kwargs if k in _DIAGNOSTIC_KEYS and kwargs[k])
    if diagnostic:
        raise ValueError(f"optimizer_kwargs {diagnostic} only feed devinterp's diagnostic callbacks, "
                         "which this layer does not run: drop them (toymodels.estimate_llc records "
                         "gradient, noise and distance norms in result.trace)")
    kwargs = {k: v for k, v in kwargs.items() if k not in _DIAGNOSTIC_KEYS}
    if kwargs.get("optimize_over") is not None:
        raise ValueError("optimizer_kwargs['optimize_over'] is a per-group mask of devinterp's "
                         "optimizer: pass optimize_over_per_model_param={name: bool mask} instead")
    kwargs.pop("optimize_over", None)
    unknown = sorted(set(kwargs) - set(_KEYS[sampler]))
    if unknown:
        raise TypeError(f"optimizer_kwargs {unknown} are not understood for sampler {sampler!r}; "
                        f"the keys are {list(_KEYS[sampler])}")
    if kwargs.get("bounding_box_size"):
        raise ValueError("bounding_box_size (a clamp to a box around w*) has no counterpart here: "
                         "drop it and use localization (a Gaussian pull towards w*) instead")
    if "noise_level" in kwargs and as_float("noise_level", kwargs["noise_level"]) != 1.0:
        raise ValueError("noise_level != 1 breaks SGLD's posterior and has no counterpart here: drop "
                         "it (to change the noise, change lr or nbeta)")
    nbeta = kwargs.get("nbeta")
    nbeta = devinterp_default_nbeta(batch_size) if nbeta is None else as_float("nbeta", nbeta, minimum=0,
                                                                               strict=True)
    lr = as_float("lr", kwargs.get("lr", 0.01), minimum=0, strict=True)
    out = dict(sampler=sampler, nbeta=nbeta, localization=0.0, log_prior=None, sampler_options=None)
    if sampler == "sgnht":
        # devinterp's lr is the η = ε/2 of toymodels.sampling.SGNHT
        out["step_size"] = 2.0 * lr
        out["sampler_options"] = {"diffusion": as_float("diffusion_factor",
                                                        kwargs.get("diffusion_factor", 0.01),
                                                        minimum=0, strict=True)}
        return out
    out["step_size"] = lr
    out["localization"] = as_float("localization", kwargs.get("localization", 0.0), minimum=0)
    weight_decay = as_float("weight_decay", kwargs.get("weight_decay", 0.0), minimum=0)
    if weight_decay:
        # devinterp adds λ_wd·w to nβ∇L: the force of the Gaussian prior log φ = −λ_wd ||w||²/2
        out["log_prior"] = lambda w: -0.5 * weight_decay * (w * w).sum()
    return out


def estimate_learning_coeff_with_summary(
    model: torch.nn.Module,
    loader,
    callbacks: Sequence[Callable] = (),
    evaluate: Callable | None = None,
    sampling_method="sgld",
    optimizer_kwargs: Mapping | None = None,
    num_draws: int = 100,
    num_chains: int = 10,
    num_burnin_steps: int = 0,
    num_steps_bw_draws: int = 1,
    init_loss: float | None = None,
    grad_accum_steps: int = 1,
    cores=1,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    gpu_idxs=None,
    verbose: bool = True,
    optimize_over_per_model_param: Mapping[str, torch.Tensor] | None = None,
    online: bool = False,
    use_amp: bool = False,
) -> dict:
    """devinterp 1.3.2's call, sampled by :func:`toymodels.estimate_llc` with all chains at once.

    ``λ̂_c = nβ (mean_t L_ct − L_init)`` per chain (Lau et al. arXiv 2308.12108, eq. 8);
    ``llc/mean`` and ``llc/std`` (ddof = 1) over chains, ``llc-chain/c`` each chain's value and
    ``loss/trace`` the ``(num_chains, num_draws)`` minibatch losses at the draws. The arguments
    are devinterp's; how each maps, and what is refused, is in the module docstring.
    """
    _refuse_unsupported(callbacks=callbacks, grad_accum_steps=grad_accum_steps, cores=cores,
                        gpu_idxs=gpu_idxs, online=online, use_amp=use_amp)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = getattr(loader, "batch_size", None)
    if batch_size is None:
        raise ValueError("loader must be a torch DataLoader with a batch_size (devinterp's default nβ "
                         "and the minibatch size are read from it)")
    settings = sampler_settings(sampling_method, optimizer_kwargs, batch_size)
    num_draws = as_int("num_draws", num_draws, 1)
    num_chains = as_int("num_chains", num_chains, 1)
    num_burnin_steps = as_int("num_burnin_steps", num_burnin_steps, 0)
    num_steps_bw_draws = as_int("num_steps_bw_draws", num_steps_bw_draws, 1)
    if init_loss is not None:
        init_loss = as_float("init_loss", init_loss)
    seed = _checked_seed(seed)
    if evaluate is not None and not callable(evaluate):
        raise TypeError("evaluate must be callable as evaluate(model, batch) -> loss")
    device = torch.device(device)
    model.to(device)

    wrapped = _EvaluatedModel(model, evaluate, _concatenated(loader, device))
    index = torch.arange(wrapped.num_samples, device=device)
    mask = _flat_mask(model, optimize_over_per_model_param)
    result = estimate_llc(
        wrapped, data=(index, index), loss_fn=_evaluated_loss, batch_size=batch_size,
        nbeta=settings["nbeta"], step_size=settings["step_size"], localization=settings["localization"],
        log_prior=settings["log_prior"], restrict_to=mask, num_chains=num_chains, num_draws=num_draws,
        # the native sampler records the first step of each block, devinterp the last
        num_burnin_steps=num_burnin_steps + num_steps_bw_draws - 1,
        num_steps_bw_draws=num_steps_bw_draws, seed=seed, progress=bool(verbose),
        sampler=settings["sampler"], sampler_options=settings["sampler_options"])
    loss_trace = np.asarray(result.loss_trace)
    start = float(result.init_loss) if init_loss is None else init_loss
    per_chain = llc_draws(result.nbeta, loss_trace, start).mean(axis=1)
    out = {"llc/mean": float(per_chain.mean()),
           "llc/std": float(per_chain.std(ddof=1)) if num_chains > 1 else math.nan}
    out.update({f"llc-chain/{c}": float(v) for c, v in enumerate(per_chain)})
    out["loss/trace"] = loss_trace
    return out


def estimate_learning_coeff(
    model: torch.nn.Module,
    loader,
    callbacks: Sequence[Callable] = (),
    evaluate: Callable | None = None,
    sampling_method="sgld",
    optimizer_kwargs: Mapping | None = None,
    num_draws: int = 100,
    num_chains: int = 10,
    num_burnin_steps: int = 0,
    num_steps_bw_draws: int = 1,
    init_loss: float | None = None,
    grad_accum_steps: int = 1,
    cores=1,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    verbose: bool = True,
    optimize_over_per_model_param: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """``llc/mean`` of :func:`estimate_learning_coeff_with_summary` (devinterp's signature)."""
    return estimate_learning_coeff_with_summary(
        model, loader, callbacks=callbacks, evaluate=evaluate, sampling_method=sampling_method,
        optimizer_kwargs=optimizer_kwargs, num_draws=num_draws, num_chains=num_chains,
        num_burnin_steps=num_burnin_steps, num_steps_bw_draws=num_steps_bw_draws,
        init_loss=init_loss, grad_accum_steps=grad_accum_steps, cores=cores, seed=seed,
        device=device, verbose=verbose, optimize_over_per_model_param=optimize_over_per_model_param,
    )["llc/mean"]


def _refuse_unsupported(*, callbacks, grad_accum_steps, cores, gpu_idxs, online, use_amp) -> None:
    if callbacks:
        raise ValueError("callbacks are devinterp objects called once per chain and draw; the chains "
                         "here move as one tensor. Drop them: the loss trace is in 'loss/trace', and "
                         "toymodels.estimate_llc(..., observables=...) records functions of the draws")
    if grad_accum_steps != 1:
        raise ValueError("grad_accum_steps != 1 is not supported: use a DataLoader with the effective "
                         "batch size instead (the minibatch size here is the loader's batch_size)")
    if cores != 1:
        raise ValueError("cores != 1 is not supported: the chains already run as one vectorized "
                         "tensor in one process; drop the argument")
    if gpu_idxs is not None:
        raise ValueError("gpu_idxs is not supported: the chains run on one device; pass device= only")
    if online:
        raise ValueError("online=True (per-draw running LLC estimates) is not supported: compute them "
                         "from 'loss/trace' (llc_draws(nbeta, loss_trace, init_loss))")
    if use_amp:
        raise ValueError("use_amp=True is not supported: the sampler needs float32 or float64 "
                         "gradients; drop the argument")


def _sampler_name(sampling_method) -> str:
    if isinstance(sampling_method, str):
        if sampling_method not in SAMPLERS:
            raise ValueError(f"sampling_method must be devinterp's SGLD or SGNHT class or one of "
                             f"{sorted(SAMPLERS)}, got {sampling_method!r}")
        return sampling_method
    name = getattr(sampling_method, "__name__", None)
    module = getattr(sampling_method, "__module__", "") or ""
    if isinstance(sampling_method, type) and module.split(".")[0] == "devinterp" \
            and name in ("SGLD", "SGNHT"):
        return name.lower()
    raise ValueError(f"sampling_method must be devinterp's SGLD or SGNHT class or one of "
                     f"{sorted(SAMPLERS)}, got {sampling_method!r}; devinterp's other optimizers "
                     "(SGMCMC, ...) have no counterpart here")


def _checked_seed(seed) -> int:
    if seed is None:
        # fresh entropy from the operating system, never the global random state
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, (list, tuple, np.ndarray)):
        raise ValueError("a list of per-chain seeds is not supported: the chains share one generator; "
                         "pass one integer seed")
    return as_int("seed", seed, 0)


def _concatenated(loader, device: torch.device) -> dict:
    """The loader's batches concatenated once: ``{"kind", "keys", "leaves"}`` with one tensor per
    leaf of the batch structure (a tensor, a tuple/list of tensors or a dict of tensors)."""
    kind, keys, parts = None, None, None
    for batch in loader:
        if isinstance(batch, torch.Tensor):
            this_kind, this_keys, leaves = "tensor", None, [batch]
        elif isinstance(batch, Mapping):
            this_kind, this_keys, leaves = "dict", list(batch), list(batch.values())
        elif isinstance(batch, (tuple, list)):
            this_kind, this_keys, leaves = type(batch).__name__, None, list(batch)
        else:
            raise TypeError(f"the loader's batches must be tensors, tuples/lists or dicts of tensors, "
                            f"got {type(batch).__name__}")
        if not all(isinstance(leaf, torch.Tensor) and leaf.dim() >= 1 for leaf in leaves):
            raise TypeError("every element of a batch must be a tensor with a batch dimension")
        if kind is None:
            kind, keys, parts = this_kind, this_keys, [[] for _ in leaves]
        elif (this_kind, this_keys, len(leaves)) != (kind, keys, len(parts)):
            raise ValueError("the loader's batches change structure from batch to batch")
        for part, leaf in zip(parts, leaves):
            part.append(leaf)
    if kind is None:
        raise ValueError("the loader yielded no batches")
    leaves = [torch.cat(part).to(device) for part in parts]
    if len({leaf.shape[0] for leaf in leaves}) != 1:
        raise ValueError(f"the batch elements have different lengths {[leaf.shape[0] for leaf in leaves]}")
    return {"kind": kind, "keys": keys, "leaves": leaves}


class _EvaluatedModel(torch.nn.Module):
    """``forward(index) = loss of evaluate(model, batch[index])``: devinterp's ``evaluate`` as a
    module of the data indices, so the native objective's ``functional_call`` and ``vmap`` batch
    it over chains (the sampler gathers each chain's minibatch of indices)."""

    def __init__(self, model: torch.nn.Module, evaluate: Callable | None, data: dict):
        super().__init__()
        self.model = model
        self.evaluate = evaluate
        self.kind, self.keys, self.leaves = data["kind"], data["keys"], data["leaves"]
        self.num_samples = self.leaves[0].shape[0]
        self.train(model.training)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        leaves = [leaf[index] for leaf in self.leaves]
        if self.kind == "tensor":
            batch = leaves[0]
        elif self.kind == "dict":
            batch = dict(zip(self.keys, leaves))
        elif self.kind == "list":
            batch = leaves
        else:
            batch = tuple(leaves)
        out = self.model(batch) if self.evaluate is None else self.evaluate(self.model, batch)
        return _loss_of(out)


def _loss_of(out) -> torch.Tensor:
    """The loss in devinterp's evaluate results: the tensor, a tuple's first element, a dict's
    ``"loss"`` or an object's ``.loss``."""
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError("evaluate returned a dict without a 'loss' entry")
        loss = out["loss"]
    elif isinstance(out, tuple):
        loss = out[0]
    elif isinstance(out, torch.Tensor):
        loss = out
    elif hasattr(out, "loss"):
        loss = out.loss
    else:
        raise TypeError(f"evaluate must return the loss tensor, a (loss, ...) tuple, a dict with 'loss' "
                        f"or an object with .loss, got {type(out).__name__}")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("evaluate's loss must be a scalar tensor (the batch-mean loss)")
    return loss.reshape(())


def _evaluated_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The wrapped module's output already is the loss; the targets are its indices."""
    return outputs


def _flat_mask(model: torch.nn.Module, masks: Mapping[str, torch.Tensor] | None) -> torch.Tensor | None:
    """devinterp's ``{name: bool mask}`` as one flat ``(d,)`` boolean mask in the sampler's layout
    (trainable parameters in ``named_parameters()`` order)."""
    if masks is None or len(masks) == 0:
        return None
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    missing = [name for name, _ in named if name not in masks]
    unknown = sorted(set(masks) - {name for name, _ in named})
    if missing or unknown:
        raise ValueError(f"optimize_over_per_model_param needs one mask for every trainable parameter "
                         f"{[n for n, _ in named]}; missing {missing}, unknown {unknown}")
    parts = []
    for name, p in named:
        m = torch.as_tensor(masks[name])
        if m.shape != p.shape:
            raise ValueError(f"the mask for {name!r} has shape {tuple(m.shape)}, the parameter "
                             f"{tuple(p.shape)}")
        if m.dtype != torch.bool:
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"the mask for {name!r} has values other than 0 and 1: give a "
                                 "boolean mask (True = sampled)")
            m = m != 0
        parts.append(m.reshape(-1).to(p.device))
    mask = torch.cat(parts)
    if not bool(mask.any()):
        raise ValueError("optimize_over_per_model_param selects no parameter entry: select at least one")
    return mask
