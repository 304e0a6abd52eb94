//! [`softmax_in_place`] for attention on host memory, with an `exp` written so the compiler
//! vectorises it (libm's scalar `expf` was the largest single cost of a long prefill's attention).

/// Below this, `exp(x)` is under the smallest normal `f32` and is taken as zero.
const EXP_LOWEST: f32 = -87.3;

/// Replaces `scores` by their softmax over the keys `hidden` does not hide. A query that sees no
/// key gets zero weights (no query of a causal, left-padded mask is in that case: each sees
/// itself).
pub(crate) fn softmax_in_place(scores: &mut [f32], hidden: Option<&[bool]>) {
    if let Some(hidden) = hidden {
        scores.iter_mut().zip(hidden).filter(|(_, &h)| h).for_each(|(s, _)| *s = f32::NEG_INFINITY);
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        scores.fill(0.0);
        return;
    }
    let sum = exp_shifted_in_place(scores, max);
    let inverse = 1.0 / sum;
    scores.iter_mut().for_each(|s| *s *= inverse);
}

/// `xᵢ ← exp(xᵢ − shift)` for `xᵢ ≤ shift` (or −∞), returning the sum of the results.
fn exp_shifted_in_place(values: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { exp_shifted_avx512(values, shift) };
    }
    exp_shifted(values, shift)
}

/// [`exp_shifted`] compiled for AVX-512, where its loop runs 16 lanes at a time.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_shifted_avx512(values: &mut [f32], shift: f32) -> f32 {
    exp_shifted(values, shift)
}

/// The portable loop behind [`exp_shifted_in_place`]: branch-free, so it vectorises.
#[inline(always)]
fn exp_shifted(values: &mut [f32], shift: f32) -> f32 {
    let mut sums = [0.0f32; 16];
    let mut chunks = values.chunks_exact_mut(16);
    for chunk in &mut chunks {
        for (value, sum) in chunk.iter_mut().zip(&mut sums) {
            *value = exp_non_positive(*value - shift);
            *sum += *value;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for value in chunks.into_remainder() {
        *value = exp_non_positive(*value - shift);
        sum += *value;
    }
    sum
}

/// `exp(x)` for `x ≤ 0` (or −∞, giving 0), within 2 ulp: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`,
/// `exp(r)` by its Taylor series to `r⁷` (remainder under `r⁸/8! ≈ 5e-9`), and `2ⁿ` built
/// in the exponent bits.
#[inline(always)]
fn exp_non_positive(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    let clamped = x.max(EXP_LOWEST);
    let rounded = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = (clamped - n * LN2_HIGH) - n * LN2_LOW;
    let series = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let exponent = (rounded.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32;
    let value = series * f32::from_bits(exponent << 23);
    if x < EXP_LOWEST {
        0.0
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_f64_exp_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let exact = (x as f64).exp();
            let ulp = f32::EPSILON as f64 * exact;
            worst = worst.max((exp_non_positive(x) as f64 - exact).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert_eq!(exp_non_positive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_non_positive(-100.0), 0.0);
    }

    #[test]
    fn softmax_matches_the_f64_softmax_and_gives_hidden_keys_nothing() {
        let scores: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 * 0.37 - 20.0).collect();
        let hidden: Vec<bool> = (0..37).map(|i| i % 5 == 3).collect();
        let mut got = scores.clone();
        softmax_in_place(&mut got, Some(&hidden));
        let visible = |i: usize| !hidden[i];
        let max = (0..37).filter(|&i| visible(i)).map(|i| scores[i] as f64).fold(f64::MIN, f64::max);
        let sum: f64 = (0..37).filter(|&i| visible(i)).map(|i| (scores[i] as f64 - max).exp()).sum();
        for i in 0..37 {
            let expected = if visible(i) { (scores[i] as f64 - max).exp() / sum } else { 0.0 };
            // The f32 difference `score − max` alone is off by up to 2e-6 for the smallest.
            assert!((got[i] as f64 - expected).abs() <= 1e-5 * expected, "key {i}: {} against {expected}", got[i]);
        }
        let mut none_visible = vec![1.0f32; 4];
        softmax_in_place(&mut none_visible, Some(&[true; 4]));
        assert_eq!(none_visible, [0.0; 4]);
    }
}
