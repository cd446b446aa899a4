"""The toy models, each with its own module or package (import from there):

* :mod:`~toymodels.models.potentials` — exact potentials: normal crossings, quadratics;
* :mod:`~toymodels.models.tms` — toy models of superposition (Chen et al. 2023; Elhage et al. 2022);
* :mod:`~toymodels.models.dln` — deep linear networks (Aoyagi 2024);
* :mod:`~toymodels.models.turing` — noisy Turing machines as potentials on simplices (Murfet &
  Troiani, arXiv 2504.08075);
* :mod:`~toymodels.models.icl` and :mod:`~toymodels.models.transformer` — in-context linear
  regression and its transformer (Raventós et al. 2023; Carroll et al. 2025);
* :mod:`~toymodels.models.gridworld` — the cheese-in-the-corner gridworld: levels, exact regret,
  policies, training, a ``gymnasium`` environment (Elliott et al., arXiv 2601.07524).

Models may use the estimators (e.g. ``estimate_dln_llc``); estimators never import models.
"""
