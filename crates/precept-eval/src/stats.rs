//! Statistics of the gate: Wilson intervals, the exact McNemar test and the minimum detectable
//! difference of a paired comparison.

use serde::{Deserialize, Serialize};

/// `z` for a two-sided 95% interval: the 0.975 quantile of the standard normal.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A proportion `k / n` with its Wilson 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Events (harmful compliances, or refusals of benign cases).
    pub k: usize,
    /// Trials.
    pub n: usize,
    /// `k / n` (0 when `n` is 0).
    pub rate: f64,
    /// Lower end of the Wilson 95% interval.
    pub low: f64,
    /// Upper end of the Wilson 95% interval.
    pub high: f64,
}

impl Rate {
    /// `k` events out of `n`, with the interval.
    pub fn new(k: usize, n: usize) -> Self {
        let (low, high) = wilson_interval(k, n, Z_95);
        let rate = if n == 0 { 0.0 } else { k as f64 / n as f64 };
        Self { k, n, rate, low, high }
    }
}

/// Wilson score interval of `k` successes in `n` trials:
/// `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`. `(0, 1)` when `n` is 0.
pub fn wilson_interval(k: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z2 / n;
    (((centre - half) / denominator).max(0.0), ((centre + half) / denominator).min(1.0))
}

/// `ln(n!)`, summed exactly for the small counts of a suite.
fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// `P(X = k)` for `X ~ Binomial(n, p)`.
pub fn binomial_pmf(k: usize, n: usize, p: f64) -> f64 {
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    if p >= 1.0 {
        return if k == n { 1.0 } else { 0.0 };
    }
    let ln =
        ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln();
    ln.exp()
}

/// Exact (binomial) McNemar test on the discordant pairs of a paired comparison: `b` pairs went
/// one way and `c` the other. Two-sided p-value `min(1, 2·P(X ≤ min(b, c)))` for
/// `X ~ Binomial(b + c, ½)`; 1 when there is no discordant pair.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let tail: f64 = (0..=b.min(c)).map(|i| binomial_pmf(i, n, 0.5)).sum();
    (2.0 * tail).min(1.0)
}

/// The fewest one-directional flips (and none back) that the exact McNemar test calls
/// significant at `alpha`: the smallest `k` with `2·½ᵏ < alpha`.
pub fn min_significant_flips(alpha: f64) -> usize {
    (1..64).find(|&k| mcnemar_exact(k, 0) < alpha).unwrap_or(64)
}

/// Minimum detectable difference of a paired comparison over `n` cases: the smallest increase
/// `d` (to 0.001) in a rate that the exact McNemar test at `alpha` detects with probability at
/// least `power`, when each case independently flips with probability `d` in the bad direction
/// and none flips back. Then the test rejects iff at least [`min_significant_flips`] cases flip,
/// so the power is `P(Binomial(n, d) ≥ k_min)`. `None` when no `d ≤ 1` reaches `power`.
///
/// Flips in both directions (decoding noise) only raise it, so this is the most favourable
/// figure: a threshold below it can never be reliably detected.
pub fn min_detectable_difference(n: usize, alpha: f64, power: f64) -> Option<f64> {
    let k_min = min_significant_flips(alpha);
    if n < k_min {
        return None;
    }
    let power_at = |d: f64| -> f64 { 1.0 - (0..k_min).map(|k| binomial_pmf(k, n, d)).sum::<f64>() };
    (1..=1000).map(|step| step as f64 / 1000.0).find(|&d| power_at(d) >= power)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    // Golden values from scipy 1.x:
    //
    // from scipy.stats import binomtest, binom
    // for k, n in [(0, 10), (3, 10), (10, 10), (17, 60), (1, 200)]:
    //     ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    //     print(k, n, repr(ci.low), repr(ci.high))
    #[test]
    fn wilson_intervals_match_scipy() {
        let golden = [
            (0, 10, 0.0, 0.27753279986288926),
            (3, 10, 0.10779126740630102, 0.6032218525388546),
            (10, 10, 0.7224672001371109, 1.0),
            (17, 60, 0.18506828428432712, 0.40767285164391187),
            (1, 200, 0.0008831687156009762, 0.02777370439789293),
        ];
        for (k, n, low, high) in golden {
            let (l, h) = wilson_interval(k, n, Z_95);
            assert!((l - low).abs() < 1e-9 && (h - high).abs() < 1e-9, "{k}/{n}: ({l}, {h}) vs ({low}, {high})");
        }
        assert_eq!(wilson_interval(0, 0, Z_95), (0.0, 1.0));
    }

    // for b, c in [(0, 0), (1, 0), (5, 0), (6, 0), (3, 9), (10, 2), (20, 20), (40, 7)]:
    //     print(b, c, repr(binomtest(min(b, c), b + c, 0.5).pvalue) if b + c else 1.0)
    #[test]
    fn exact_mcnemar_matches_scipy_binomtest() {
        let golden = [
            (0, 0, 1.0),
            (1, 0, 1.0),
            (5, 0, 0.0625),
            (6, 0, 0.03125),
            (3, 9, 0.14599609375),
            (10, 2, 0.03857421875),
            (20, 20, 1.0),
            (40, 7, 1.0709118214435875e-06),
        ];
        for (b, c, p) in golden {
            let got = mcnemar_exact(b, c);
            assert!((got - p).abs() <= 1e-9 * p.max(1e-300) + 1e-15, "{b},{c}: {got} vs {p}");
            assert_eq!(got, mcnemar_exact(c, b));
        }
    }

    // for k, n, p in [(3, 10, 0.3), (0, 50, 0.02), (6, 100, 0.085)]:
    //     print(repr(binom.pmf(k, n, p)))
    #[test]
    fn binomial_pmf_matches_scipy() {
        close(binomial_pmf(3, 10, 0.3), 0.2668279319999998);
        close(binomial_pmf(0, 50, 0.02), 0.36416968008711703);
        close(binomial_pmf(6, 100, 0.085), 0.10626536615300979);
    }

    #[test]
    fn six_one_way_flips_are_the_fewest_significant_at_five_percent() {
        assert_eq!(min_significant_flips(0.05), 6);
        assert_eq!(min_significant_flips(0.01), 8);
    }

    // The smallest d (step 0.001) with P(Binomial(n, d) >= 6) >= 0.8, from scipy:
    // import numpy as np
    // for n in [60, 100, 150, 200, 400]:
    //     d = next(d for d in np.arange(1, 1001) / 1000 if binom.sf(5, n, d) >= 0.8)
    //     print(n, d)   # 60 0.129, 100 0.078, 150 0.053, 200 0.04, 400 0.02
    #[test]
    fn the_minimum_detectable_difference_is_where_power_first_reaches_the_target() {
        for (n, d) in [(60, 0.129), (100, 0.078), (150, 0.053), (200, 0.04), (400, 0.02)] {
            assert_eq!(min_detectable_difference(n, 0.05, 0.8), Some(d), "n = {n}");
        }
        assert_eq!(min_detectable_difference(5, 0.05, 0.8), None);
    }
}
