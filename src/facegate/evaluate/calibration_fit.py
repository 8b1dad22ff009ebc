"""Fitting the engine's similarity calibration from labelled pairs.

This is the one code path that produces ``facegate/engine/calibration.json``: a logistic
model of P(same person | distance) under equal priors, fitted by Newton's method on the
class-balanced log-likelihood (so 1,200 genuine and 100,000 impostor pairs weigh the same).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from facegate.engine.calibration import SimilarityCalibration


def fit_logistic(distances: np.ndarray, same: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """(slope, midpoint) maximising the balanced likelihood of P(same) = 1/(1+exp(slope*(d-midpoint)))."""
    d, y = np.asarray(distances, float), np.asarray(same, bool).astype(float)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("need both genuine and impostor pairs to fit a calibration")
    weights = np.where(y == 1, 0.5 / y.sum(), 0.5 / (len(y) - y.sum()))
    design = np.column_stack([np.ones_like(d), d])  # logit P(same) = a + b d, with b = -slope
    beta = np.array([0.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (weights * (y - p))
        hessian = (design * (weights * p * (1 - p))[:, None]).T @ design + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    intercept, coefficient = beta
    if coefficient >= 0:
        raise ValueError("distances do not separate genuine from impostor pairs")
    return float(-coefficient), float(-intercept / coefficient)


def fit_calibration_from_pairs(distances: np.ndarray, same: np.ndarray, model_version: str, source: str) -> SimilarityCalibration:
    """Fit on every pair where both photos have a face (distance not NaN); record where the numbers came from."""
    distances, same = np.asarray(distances, float), np.asarray(same, bool)
    usable = ~np.isnan(distances)
    slope, midpoint = fit_logistic(distances[usable], same[usable])
    provenance = {
        "fitted_on": source,
        "genuine_pairs": int((same & usable).sum()),
        "impostor_pairs": int((~same & usable).sum()),
        "model_version": model_version,
        "date": dt.date.today().isoformat(),
        "method": "balanced logistic regression of same-person on Euclidean descriptor distance",
    }
    return SimilarityCalibration(slope=slope, midpoint=midpoint, provenance=provenance)
