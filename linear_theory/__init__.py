"""linear-theory: progressive sensitivity in two-layer linear networks.

Conventions (THEORY.md): whitened inputs by default; loss ½‖W2W1 − A‖²_F; GD steps with
gradient-flow time = lr × steps; mode strengths a_i = u_iᵀ W2 W1 v_i on the teacher's
fixed singular pairs; float64 throughout (JAX x64 is enabled inside these functions only).
"""

from ._closed_form import flow_strengths, gradient_flow, initial_strengths, learning_time
from ._gd_full import init_weights, simulate_gd
from ._gd_map import gd_modes
from ._ode import gradient_flow_ode
from ._riccati import RiccatiSolution, balanced_flow, ntk_matrix, riccati_flow
from ._lambda_balanced import (
    LambdaPrediction,
    lambda_balanced_init,
    lambda_critical_singular_value,
    lambda_gd_modes,
    lambda_gradient_flow,
    predict_lambda,
)
from ._deep import (
    DeepPrediction,
    DeepRun,
    deep_critical_singular_value,
    deep_expected_perturbed_loss,
    deep_gd_modes,
    deep_gradient_flow,
    deep_init,
    deep_monte_carlo_perturbed_loss,
    predict_deep,
    simulate_deep_gd,
)
from ._schedules import Schedule
from ._teacher import (
    Teacher,
    geometric_spectrum,
    hierarchical_dataset,
    hierarchical_teacher,
    make_teacher,
    parse_spectrum,
    power_law_spectrum,
)
from ._trajectory import Trajectory, modal_loss
from ._noise import NOISE_KINDS, expected_perturbed_loss, hessian_trace, noise_stds, sensitivity, sensitivity_from_norms
from ._noise_estimates import hutchinson_hessian_trace, monte_carlo_perturbed_loss
from ._thresholds import (
    critical_singular_value,
    harmful_modes,
    modal_expected_perturbed_loss,
    noisy_optimum,
    rise_bound_terms,
)
from ._predict import Prediction, inflection_step_estimate, predict, summarize_path
from ._phase import PhaseDiagram, log_steps, phase_diagram, schedule_inflections
from ._spectral import aligned_weights, bbp_threshold, detectability_along, factor_noise_floor
from ._finetune import FinetuneSweep, finetune_sweep, finetune_target

__version__ = "0.1.0"

__all__ = [
    "flow_strengths",
    "gradient_flow",
    "initial_strengths",
    "learning_time",
    "init_weights",
    "simulate_gd",
    "gd_modes",
    "gradient_flow_ode",
    "balanced_flow",
    "riccati_flow",
    "RiccatiSolution",
    "ntk_matrix",
    "lambda_balanced_init",
    "lambda_gradient_flow",
    "lambda_gd_modes",
    "lambda_critical_singular_value",
    "predict_lambda",
    "LambdaPrediction",
    "DeepPrediction",
    "DeepRun",
    "deep_critical_singular_value",
    "deep_expected_perturbed_loss",
    "deep_gd_modes",
    "deep_gradient_flow",
    "deep_init",
    "deep_monte_carlo_perturbed_loss",
    "predict_deep",
    "simulate_deep_gd",
    "Schedule",
    "Teacher",
    "geometric_spectrum",
    "hierarchical_dataset",
    "hierarchical_teacher",
    "make_teacher",
    "parse_spectrum",
    "power_law_spectrum",
    "Trajectory",
    "modal_loss",
    "NOISE_KINDS",
    "expected_perturbed_loss",
    "hessian_trace",
    "noise_stds",
    "sensitivity",
    "sensitivity_from_norms",
    "hutchinson_hessian_trace",
    "monte_carlo_perturbed_loss",
    "critical_singular_value",
    "harmful_modes",
    "modal_expected_perturbed_loss",
    "noisy_optimum",
    "rise_bound_terms",
    "Prediction",
    "inflection_step_estimate",
    "predict",
    "summarize_path",
    "PhaseDiagram",
    "log_steps",
    "phase_diagram",
    "schedule_inflections",
    "aligned_weights",
    "bbp_threshold",
    "detectability_along",
    "factor_noise_floor",
    "FinetuneSweep",
    "finetune_sweep",
    "finetune_target",
]
