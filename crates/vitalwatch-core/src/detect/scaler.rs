//! [`Scaler`]: per-feature standardisation (scikit-learn's `StandardScaler`) and the typical
//! range of each feature in the training data.
//!
//! The scaler lives inside the model and is applied inside scoring, so a raw reading can never
//! reach the trees unscaled (the seed's bug: it trained on scaled values and scored raw ones).
//! This module knows nothing about trees or files.

/// A standard deviation below this is treated as zero (a constant column).
const MIN_STD: f64 = 1e-12;

/// Mean and standard deviation per feature, with `(x - mean) / std` as the transform.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    /// Training mean of each feature.
    pub(crate) mean: Vec<f64>,
    /// Population standard deviation (ddof = 0, as scikit-learn); 1 for a constant column so
    /// that the transform stays finite.
    pub(crate) std: Vec<f64>,
}

impl Scaler {
    /// Fits on a row-major matrix of `n_features` columns. `rows` must not be empty.
    pub(crate) fn fit(rows: &[f64], n_features: usize) -> Scaler {
        let n_rows = rows.len() / n_features.max(1);
        let mut mean = vec![0.0; n_features];
        let mut std = vec![0.0; n_features];
        if n_rows == 0 {
            return Scaler {
                mean,
                std: vec![1.0; n_features],
            };
        }
        // Two passes: numerically safer than a running sum of squares.
        for row in rows.chunks_exact(n_features) {
            for (sum, value) in mean.iter_mut().zip(row) {
                *sum += value;
            }
        }
        for sum in &mut mean {
            *sum /= n_rows as f64;
        }
        for row in rows.chunks_exact(n_features) {
            for ((acc, value), mu) in std.iter_mut().zip(row).zip(&mean) {
                *acc += (value - mu) * (value - mu);
            }
        }
        for acc in &mut std {
            let sd = (*acc / n_rows as f64).sqrt();
            *acc = if sd < MIN_STD { 1.0 } else { sd };
        }
        Scaler { mean, std }
    }

    /// Scales `values` in place; `values.len()` must equal [`Scaler::len`].
    pub(crate) fn transform(&self, values: &mut [f64]) {
        for ((value, mu), sd) in values.iter_mut().zip(&self.mean).zip(&self.std) {
            *value = (*value - mu) / sd;
        }
    }

    /// Checks a scaler read from a file: equal lengths, finite means, finite positive stds.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), &'static str> {
        if self.mean.len() != n_features || self.std.len() != n_features {
            return Err("scaler length differs from the feature count");
        }
        if self.mean.iter().any(|mu| !mu.is_finite()) {
            return Err("scaler mean is not finite");
        }
        if self.std.iter().any(|sd| !sd.is_finite() || *sd <= 0.0) {
            return Err("scaler std must be finite and positive");
        }
        Ok(())
    }
}

/// The central range of each feature in the training data, used to tell a clinician what
/// "typical" means ("typical 36.2–37.3").
#[derive(Clone, Debug, PartialEq)]
pub struct TypicalRange {
    /// The 2.5th percentile of each feature.
    pub(crate) low: Vec<f64>,
    /// The 97.5th percentile of each feature.
    pub(crate) high: Vec<f64>,
}

/// The percentiles bounding the typical range: the central 95 % of training readings.
const TYPICAL_LOW_Q: f64 = 0.025;
const TYPICAL_HIGH_Q: f64 = 0.975;

impl TypicalRange {
    pub(crate) fn fit(rows: &[f64], n_features: usize) -> TypicalRange {
        let mut low = Vec::with_capacity(n_features);
        let mut high = Vec::with_capacity(n_features);
        let mut column: Vec<f64> = Vec::with_capacity(rows.len() / n_features.max(1));
        for feature_idx in 0..n_features {
            column.clear();
            column.extend(rows.chunks_exact(n_features).map(|row| row[feature_idx]));
            column.sort_unstable_by(f64::total_cmp);
            low.push(quantile_sorted(&column, TYPICAL_LOW_Q));
            high.push(quantile_sorted(&column, TYPICAL_HIGH_Q));
        }
        TypicalRange { low, high }
    }

    pub(crate) fn check(&self, n_features: usize) -> Result<(), &'static str> {
        if self.low.len() != n_features || self.high.len() != n_features {
            return Err("typical range length differs from the feature count");
        }
        let finite_ordered = self
            .low
            .iter()
            .zip(&self.high)
            .all(|(low, high)| low.is_finite() && high.is_finite() && low <= high);
        if !finite_ordered {
            return Err("typical range must be finite with low <= high");
        }
        Ok(())
    }
}

/// The `q` quantile of sorted data with linear interpolation (numpy's default method), so our
/// thresholds are computed the way scikit-learn computes `offset_`. 0 for empty input.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        len => {
            let pos = q.clamp(0.0, 1.0) * (len - 1) as f64;
            let lower = pos.floor() as usize;
            let upper = (lower + 1).min(len - 1);
            let frac = pos - lower as f64;
            sorted[lower] + (sorted[upper] - sorted[lower]) * frac
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_matches_population_mean_and_std() {
        // Two features: [1, 10], [3, 10], [5, 10].
        let rows = [1.0, 10.0, 3.0, 10.0, 5.0, 10.0];
        let scaler = Scaler::fit(&rows, 2);
        assert_eq!(scaler.mean, vec![3.0, 10.0]);
        assert!((scaler.std[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(scaler.std[1], 1.0, "a constant column gets std 1");
        let mut values = [5.0, 12.0];
        scaler.transform(&mut values);
        assert!((values[0] - 2.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(values[1], 2.0);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&sorted, 0.0), 1.0);
        assert_eq!(quantile_sorted(&sorted, 1.0), 4.0);
        assert_eq!(quantile_sorted(&sorted, 0.5), 2.5);
        // numpy.percentile([1, 2, 3, 4], 95) == 3.85
        assert!((quantile_sorted(&sorted, 0.95) - 3.85).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[], 0.5), 0.0);
    }

    #[test]
    fn check_refuses_bad_values() {
        let good = Scaler {
            mean: vec![0.0],
            std: vec![1.0],
        };
        assert!(good.check(1).is_ok());
        assert!(good.check(2).is_err());
        for (mean, std) in [
            (f64::NAN, 1.0),
            (0.0, 0.0),
            (0.0, f64::INFINITY),
            (0.0, -1.0),
        ] {
            let bad = Scaler {
                mean: vec![mean],
                std: vec![std],
            };
            assert!(bad.check(1).is_err(), "{mean} {std}");
        }
    }
}
