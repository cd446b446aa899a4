"""Compressibility: the LLC as a volume exponent and a code length (issue 18).

``volume`` — the volume-scaling exponent of ``{K < ε}`` from prior draws (Monte Carlo, low
dimension) or from λ̂ on a ladder of nβ (thermodynamic integration, any dimension), and the code
length ``λ log(1/ε)`` it implies; ``schemes`` — quantization, rank truncation and Gaussian noise
on any ``nn.Module`` at ``w*``, the critical strength at a loss tolerance and the code length of
the compressed model (Urdshals, Lau, Hoogland, van Wingerden, Murfet, arXiv 2510.12077).
"""

from toymodels.estimators.compressibility.schemes import (
    SCHEMES,
    CriticalStrength,
    compress,
    compression_code_length,
    critical_strength,
    step_for_bits,
    weight_matrices,
)
from toymodels.estimators.compressibility.volume import (
    VolumeExponent,
    fit_volume_exponent,
    log_uniform_sampler,
    volume_code_length,
    volume_exponent_from_llcs,
    volume_exponent_mc,
)

__all__ = [
    "SCHEMES", "CriticalStrength", "compress", "compression_code_length", "critical_strength",
    "step_for_bits", "weight_matrices", "VolumeExponent", "fit_volume_exponent", "log_uniform_sampler",
    "volume_code_length", "volume_exponent_from_llcs", "volume_exponent_mc",
]
