//! The simulated model: which version answers, how long it takes, whether it
//! fails, and what it says.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use super::Knobs;

/// The model the demo serves.
pub const MODEL: &str = "fraud-detector";
/// Its versions and the share of traffic each gets: a stable one and a canary.
pub const VERSIONS: [(&str, f64); 2] = [("v1", 0.8), ("v2", 0.2)];

/// What `/predict` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub model: &'static str,
    pub version: &'static str,
    pub score: f64,
    pub confidence: f64,
}

/// One simulated request.
pub struct Outcome {
    pub prediction: Prediction,
    /// Time spent in the model.
    pub inference: Duration,
    /// Time for the whole request (inference plus overhead).
    pub latency: Duration,
    pub failed: bool,
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub fn predict(knobs: &Knobs) -> Outcome {
    let mut rng = rand::rng();
    let version = if rng.random::<f64>() < VERSIONS[0].1 {
        VERSIONS[0].0
    } else {
        VERSIONS[1].0
    };
    // Log-normal inference time: a median of 25 ms (v1) or 35 ms (v2), with
    // the long tail real model servers show; drift makes inputs harder.
    let median_ms = if version == "v1" { 25.0 } else { 35.0 };
    let inference_ms =
        median_ms * (0.5 * normal(&mut rng)).exp() * (1.0 + knobs.drift) + knobs.extra_latency_ms;
    let overhead_ms = 1.0 + 2.0 * rng.random::<f64>();
    let confidence = (0.9 - 0.4 * knobs.drift + 0.08 * normal(&mut rng)).clamp(0.0, 1.0);
    Outcome {
        prediction: Prediction {
            model: MODEL,
            version,
            score: rng.random(),
            confidence,
        },
        inference: Duration::from_secs_f64(inference_ms / 1000.0),
        latency: Duration::from_secs_f64((inference_ms + overhead_ms) / 1000.0),
        failed: rng.random::<f64>() < knobs.error_rate,
    }
}

/// Accuracy of `version` measured against delayed ground truth: high when
/// inputs look like the training data, falling with drift.
pub fn accuracy(version: &str, drift: f64) -> f64 {
    let base = if version == "v1" { 0.94 } else { 0.92 };
    let noise = 0.005 * normal(&mut rand::rng());
    (base - 0.35 * drift + noise).clamp(0.0, 1.0)
}

/// Population-stability-style drift score: near 0.05 normally, up to ~1.
pub fn drift_score(drift: f64) -> f64 {
    let noise = 0.01 * normal(&mut rand::rng());
    (0.05 + 0.9 * drift + noise).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_lowers_accuracy_and_confidence() {
        let calm = Knobs::default();
        let drifted = Knobs {
            drift: 1.0,
            ..Knobs::default()
        };
        let mean = |k: &Knobs| {
            (0..2000)
                .map(|_| predict(k).prediction.confidence)
                .sum::<f64>()
                / 2000.0
        };
        assert!(mean(&calm) > mean(&drifted) + 0.2);
        assert!(accuracy("v1", 0.0) > accuracy("v1", 1.0) + 0.2);
        assert!(drift_score(1.0) > drift_score(0.0) + 0.5);
    }

    #[test]
    fn errors_and_latency_follow_the_knobs() {
        let broken = Knobs {
            error_rate: 1.0,
            extra_latency_ms: 500.0,
            ..Knobs::default()
        };
        let o = predict(&broken);
        assert!(o.failed);
        assert!(o.inference >= Duration::from_millis(500));
        assert!(o.latency > o.inference);
        let fine = Knobs {
            error_rate: 0.0,
            ..Knobs::default()
        };
        assert!((0..200).all(|_| !predict(&fine).failed));
        let v2 = (0..2000)
            .filter(|_| predict(&fine).prediction.version == "v2")
            .count();
        assert!((250..550).contains(&v2), "canary share off: {v2}/2000");
    }
}
