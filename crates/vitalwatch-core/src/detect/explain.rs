//! Explanations of a flagged reading: which vitals made it unusual, as a short sentence a
//! clinician can read, e.g. `body_temp 39.4 °C unusual (typical 36.2–37.3)`.
//!
//! The attribution is per-feature and deterministic: a feature outside the central 95 % of the
//! training data is ranked by how many training standard deviations it lies outside that range;
//! when every value is individually typical (an unusual *combination*), the features are ranked
//! by |z|. Ties keep the model's feature order. This module does no scoring.

use super::feature::Feature;
use super::scaler::{Scaler, TypicalRange};
use std::fmt::Write as _;

/// At most this many features are named, to keep the sentence short.
const MAX_NAMED: usize = 2;

/// Explains `raw` (unscaled values of `features`, in order).
pub(crate) fn explain(
    features: &[Feature],
    scaler: &Scaler,
    typical: &TypicalRange,
    raw: &[f64],
) -> String {
    let mut outside: Vec<(f64, usize)> = Vec::with_capacity(features.len());
    let mut z_scores: Vec<(f64, usize)> = Vec::with_capacity(features.len());
    for (idx, value) in raw.iter().enumerate().take(features.len()) {
        let (low, high, std) = (typical.low[idx], typical.high[idx], scaler.std[idx]);
        let distance = if *value < low {
            (low - value) / std
        } else if *value > high {
            (value - high) / std
        } else {
            0.0
        };
        if distance > 0.0 {
            outside.push((distance, idx));
        }
        z_scores.push((((value - scaler.mean[idx]) / std).abs(), idx));
    }
    // Stable sorts, descending: equal scores keep feature order.
    outside.sort_by(|a, b| b.0.total_cmp(&a.0));
    z_scores.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut sentence = String::new();
    if outside.is_empty() {
        sentence.push_str("unusual combination: ");
        for (rank, (_, idx)) in z_scores.iter().take(MAX_NAMED).enumerate() {
            if rank > 0 {
                sentence.push_str(", ");
            }
            describe(&mut sentence, features[*idx], raw[*idx], typical, *idx);
        }
    } else {
        for (rank, (_, idx)) in outside.iter().take(MAX_NAMED).enumerate() {
            if rank > 0 {
                sentence.push_str("; ");
            }
            let info = features[*idx].info();
            let decimals = usize::from(info.decimals);
            let _ = write!(
                sentence,
                "{} {:.*}{}{} unusual (typical {:.*}–{:.*})",
                info.key,
                decimals,
                raw[*idx],
                info.unit_separator(),
                info.unit,
                decimals,
                typical.low[*idx],
                decimals,
                typical.high[*idx],
            );
        }
    }
    sentence
}

fn describe(out: &mut String, feature: Feature, value: f64, typical: &TypicalRange, idx: usize) {
    let info = feature.info();
    let decimals = usize::from(info.decimals);
    let _ = write!(
        out,
        "{} {:.*}{}{} (typical {:.*}–{:.*})",
        info.key,
        decimals,
        value,
        info.unit_separator(),
        info.unit,
        decimals,
        typical.low[idx],
        decimals,
        typical.high[idx],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[f64], expected: &str) {
        let features = [Feature::HeartRate, Feature::BodyTemp];
        let scaler = Scaler {
            mean: vec![72.0, 36.7],
            std: vec![8.0, 0.3],
        };
        let typical = TypicalRange {
            low: vec![58.0, 36.2],
            high: vec![88.0, 37.3],
        };
        assert_eq!(explain(&features, &scaler, &typical, raw), expected);
    }

    #[test]
    fn names_the_most_unusual_features() {
        check(
            &[74.0, 39.4],
            "body_temp 39.4 °C unusual (typical 36.2–37.3)",
        );
        // 130 bpm is 5.25 std above 88; 38.0 °C is 2.3 std above 37.3: heart rate first.
        check(
            &[130.0, 38.0],
            "heart_rate 130 bpm unusual (typical 58–88); body_temp 38.0 °C unusual (typical 36.2–37.3)",
        );
        check(
            &[87.0, 36.3],
            "unusual combination: heart_rate 87 bpm (typical 58–88), body_temp 36.3 °C (typical 36.2–37.3)",
        );
    }
}
