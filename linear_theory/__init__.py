"""linear-theory: progressive sensitivity in two-layer linear networks.

Conventions (THEORY.md): whitened inputs by default; loss ½‖W2W1 − A‖²_F; GD steps with
gradient-flow time = lr × steps; mode strengths a_i = u_iᵀ W2 W1 v_i on the teacher's
fixed singular pairs; float64 throughout (JAX x64 is enabled inside these functions only).

The package imports lazily: `import linear_theory` loads no JAX, diffrax, sympy, optax or
matplotlib; each public name is imported from its module on first use (`_EXPORTS`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> private module that defines it
_EXPORTS = {
    "flow_strengths": "_closed_form",
    "gradient_flow": "_closed_form",
    "initial_strengths": "_closed_form",
    "learning_time": "_closed_form",
    "init_weights": "_gd_full",
    "simulate_gd": "_gd_full",
    "gd_modes": "_gd_map",
    "gradient_flow_ode": "_ode",
    "balanced_flow": "_riccati",
    "RiccatiSolution": "_riccati",
    "ntk_matrix": "_riccati",
    "riccati_flow": "_riccati",
    "LambdaPrediction": "_lambda_balanced",
    "lambda_balanced_init": "_lambda_balanced",
    "lambda_critical_singular_value": "_lambda_balanced",
    "lambda_gd_modes": "_lambda_balanced",
    "lambda_gradient_flow": "_lambda_balanced",
    "predict_lambda": "_lambda_balanced",
    "DeepPrediction": "_deep",
    "DeepRun": "_deep",
    "deep_critical_singular_value": "_deep",
    "deep_expected_perturbed_loss": "_deep",
    "deep_gd_modes": "_deep",
    "deep_gradient_flow": "_deep",
    "deep_init": "_deep",
    "deep_monte_carlo_perturbed_loss": "_deep",
    "predict_deep": "_deep",
    "simulate_deep_gd": "_deep",
    "Schedule": "_schedules",
    "Teacher": "_teacher",
    "geometric_spectrum": "_teacher",
    "hierarchical_dataset": "_teacher",
    "hierarchical_teacher": "_teacher",
    "make_teacher": "_teacher",
    "parse_spectrum": "_teacher",
    "power_law_spectrum": "_teacher",
    "Trajectory": "_trajectory",
    "modal_loss": "_trajectory",
    "NOISE_KINDS": "_noise",
    "expected_perturbed_loss": "_noise",
    "hessian_trace": "_noise",
    "noise_stds": "_noise",
    "sensitivity": "_noise",
    "sensitivity_from_norms": "_noise",
    "hutchinson_hessian_trace": "_noise_estimates",
    "monte_carlo_perturbed_loss": "_noise_estimates",
    "roundoff_tolerance": "_predict",
    "critical_singular_value": "_thresholds",
    "harmful_modes": "_thresholds",
    "modal_expected_perturbed_loss": "_thresholds",
    "noisy_optimum": "_thresholds",
    "rise_bound_terms": "_thresholds",
    "Prediction": "_predict",
    "inflection_step_estimate": "_predict",
    "inflection_estimate": "_inflection",
    "predict": "_predict",
    "summarize_path": "_predict",
    "PhaseDiagram": "_phase",
    "log_steps": "_phase",
    "phase_diagram": "_phase",
    "schedule_inflections": "_phase",
    "aligned_weights": "_spectral",
    "bbp_threshold": "_spectral",
    "detectability_along": "_spectral",
    "factor_noise_detection_threshold": "_spectral",
    "factor_noise_norms": "_spectral",
    "half_recovery_strength": "_spectral",
    "top_pair_overlap": "_spectral",
    "fixed_point_strengths": "_fixed_point",
    "kept_modes": "_fixed_point",
    "fixed_point_sharpness": "_stability",
    "stability_limit": "_stability",
    "FinetuneSweep": "_finetune",
    "finetune_sweep": "_finetune",
    "finetune_target": "_finetune",
    "enable_compilation_cache": "_compile_cache",
    "FinetuneGrid": "_finetune",
    "finetune_grid": "_finetune",
    "balanced_noise_optimal_weight_decay": "_weight_decay",
    "decayed_fixed_point": "_weight_decay",
    "noise_optimal_weight_decay": "_weight_decay",
    "OPTIMIZERS": "_optim",
    "OptimRun": "_optim",
    "axis_teacher": "_optim",
    "make_optimizer": "_optim",
    "sign_descent_modes": "_optim",
    "train_optax": "_optim",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'linear_theory' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
