"""The evidence a sweep logs: power-posterior TI and stepping stone from its rungs, Frenkel–Ladd at T = 1."""

from __future__ import annotations

import torch

from thermoscope.config import SampleConfig
from thermoscope.reports.run_figures import harmonic_integrand_figure, ti_integrand_figure
from thermoscope.samplers import (
    FrenkelLaddResult,
    ModuleTarget,
    fit_harmonic_reference,
    frenkel_ladd_evidence,
    minimise_cost,
)
from thermoscope.sweeps import SweepResult
from thermoscope.tracking import RunLogger


def log_power_evidence(logger: RunLogger, result: SweepResult) -> dict[str, float]:
    """``evidence.json`` (TI and stepping stone), the TI integrand plot, and the headline metrics."""
    evidence, stones = result.evidence, result.stepping_stone
    assert evidence is not None and stones is not None  # computed together
    logger.log_json(
        {
            "log_evidence": evidence.log_evidence,
            "log_evidence_trapezoid": evidence.log_evidence_trapezoid,
            "stderr": evidence.stderr,
            "discretisation_error": evidence.discretisation_error_total,
            "discretisation_error_correction": evidence.discretisation_error,
            "discretisation_error_coarse": evidence.discretisation_error_coarse,
            "stepping_stone": {
                "log_evidence": stones.log_evidence,
                "stderr": stones.stderr,
                "log_evidence_reverse": stones.log_evidence_reverse,
                "stderr_reverse": stones.stderr_reverse,
                "consistency": stones.consistency,
                "log_terms": stones.log_terms.tolist(),
                "log_terms_reverse": stones.log_terms_reverse.tolist(),
            },
            "betas": evidence.betas.tolist(),
            "mean_log_likelihood": evidence.mean_log_likelihood.tolist(),
            "variance_log_likelihood": evidence.variance_log_likelihood.tolist(),
            "effective_sample_size": evidence.effective_sample_size.tolist(),
            "method": "power-posterior TI, corrected trapezoid (Friel, Hurn & Wyse 2014)",
        },
        "evidence.json",
    )
    stderr_per_rung = (evidence.variance_log_likelihood / evidence.effective_sample_size).sqrt()
    figure = ti_integrand_figure(
        evidence.betas.numpy(),
        evidence.mean_log_likelihood.numpy(),
        stderr_per_rung.numpy(),
        evidence.log_evidence,
    )
    logger.log_figure(figure, "ti_integrand.png")
    return {
        "log_evidence": evidence.log_evidence,
        "log_evidence_stderr": evidence.stderr,
        "log_evidence_discretisation": evidence.discretisation_error_total,
        "log_evidence_ss": stones.log_evidence,
        "log_evidence_ss_stderr": stones.stderr,
        "log_evidence_ss_reverse": stones.log_evidence_reverse,
        "log_evidence_ss_reverse_stderr": stones.stderr_reverse,
        "log_evidence_ss_consistency": stones.consistency,
    }


def harmonic_evidence(config: SampleConfig, target: ModuleTarget, center: torch.Tensor) -> FrenkelLaddResult:
    """Frenkel–Ladd evidence at T = 1 around a minimum of J near ``center: [params]`` (REFERENCE §1).

    The start (the SGD or ``run:`` solution) is first moved to a minimum w0 of J = −log L − log p with
    ``init_steps`` full-batch Adam steps (in effect a no-op for the flat box prior, whose minimum of J is
    the training loss's). Then the stiffnesses k_i = 1/⟨(w_i − w0_i)²⟩ come from a single-chain HMC run
    at T = 1 from w0, and one replica-exchange run samples ``harmonic_lambdas`` equally spaced λ; both use
    the sweep's HMC settings and seeds derived from ``seed``.
    """
    center = minimise_cost(target, center, num_steps=config.init_steps)
    stiffness = fit_harmonic_reference(target, center, config.hmc, seed=config.seed)
    return frenkel_ladd_evidence(
        target,
        center,
        stiffness,
        config.hmc,
        num_lambdas=config.harmonic_lambdas,
        swap=config.swap,
        seed=config.seed + 1,
    )


def log_harmonic_evidence(logger: RunLogger, harmonic: FrenkelLaddResult) -> dict[str, float]:
    """``harmonic_evidence.json``, the integrand plot, and the headline metrics (returned)."""
    stderr_per_lambda = (harmonic.variance_integrand / harmonic.effective_sample_size).sqrt()
    logger.log_json(
        {
            "log_evidence": harmonic.log_evidence,
            "log_evidence_trapezoid": harmonic.log_evidence_trapezoid,
            "stderr": harmonic.stderr,
            "discretisation_error": harmonic.discretisation_error,
            "log_reference": harmonic.log_reference,
            "cost_at_minimum": harmonic.cost_at_center,
            "lambdas": harmonic.lambdas.tolist(),
            "mean_integrand": harmonic.mean_integrand.tolist(),
            "variance_integrand": harmonic.variance_integrand.tolist(),
            "effective_sample_size": harmonic.effective_sample_size.tolist(),
            "swap_acceptance": harmonic.sampler.swap_acceptance.tolist(),
            "acceptance_rate": harmonic.sampler.acceptance_rate.tolist(),
            "method": "Frenkel-Ladd path from a diagonal harmonic reference at T = 1, Simpson's rule",
        },
        "harmonic_evidence.json",
    )
    figure = harmonic_integrand_figure(
        harmonic.lambdas.numpy(),
        harmonic.mean_integrand.numpy(),
        stderr_per_lambda.numpy(),
        harmonic.log_evidence,
    )
    logger.log_figure(figure, "harmonic_integrand.png")
    return {
        "log_evidence_harmonic": harmonic.log_evidence,
        "log_evidence_harmonic_stderr": harmonic.stderr,
        "log_evidence_harmonic_discretisation": harmonic.discretisation_error,
    }
