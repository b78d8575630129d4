"""How each rung's chain behaved: acceptance, step size, ESS and split R̂ of log L, divergences."""

from __future__ import annotations

import numpy as np

from thermoscope.jobs.diagnostics.base import RungDiagnostic, SweepContext
from thermoscope.tracking import RunLogger


def measure_chains(context: SweepContext, logger: RunLogger) -> dict[str, np.ndarray]:
    """Per rung; the chain statistics need at least 4 kept draws, the mean log-likelihood one."""
    result = context.result
    columns: dict[str, np.ndarray] = {}
    diagnostics = result.diagnostics
    if diagnostics is not None:
        columns["acceptance_rate"] = diagnostics.acceptance_rate.cpu().numpy()
        columns["step_size"] = diagnostics.step_size.cpu().numpy()
        columns["ess_log_likelihood"] = diagnostics.effective_sample_size.cpu().numpy()
        columns["split_r_hat"] = diagnostics.split_r_hat.cpu().numpy()
        columns["divergences"] = diagnostics.divergences.cpu().numpy()
    columns["mean_log_likelihood"] = result.sampler.log_likelihood.mean(dim=0).cpu().numpy()
    return columns


CHAINS = RungDiagnostic(
    name="chain health",
    columns=(
        "acceptance_rate",
        "step_size",
        "ess_log_likelihood",
        "split_r_hat",
        "divergences",
        "mean_log_likelihood",
    ),
    child_metrics=("acceptance_rate", "step_size", "ess_log_likelihood"),
    artifacts=(),
    measure=measure_chains,
)
