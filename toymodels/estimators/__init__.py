"""Estimators on the localized tempered posterior (:class:`toymodels.Posterior`).

Bottom up: ``diagnostics`` (ESS, R-hat, MCSE of a trace), ``diagnose`` (findings in words),
``llc_result`` (``λ̂ = nβ (L − L(w*))`` per draw, :class:`LLCResult`, :func:`llc_from_trace`),
``relaxation`` (burn-in measured), ``calibration`` (the step size and schedule), ``llc``
(:func:`estimate_llc`) and ``susceptibility`` (responses of the posterior from the same draws).
Import the public names from :mod:`toymodels`.
"""
