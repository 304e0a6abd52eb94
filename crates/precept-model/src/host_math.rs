//! Element-wise math on host memory around an `exp` written so the compiler vectorises it: the
//! softmax of host attention ([`softmax_in_place`]) and SwiGLU ([`swiglu_in_place`]). libm's
//! scalar `expf`, behind both in the backend, was about a quarter of a long prefill.

use pulp::Arch;
use rayon::prelude::*;

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

/// Values per parallel task of [`swiglu_in_place`].
const SWIGLU_TASK: usize = 1 << 14;

/// `gateᵢ ← silu(gateᵢ)·upᵢ`, where `silu(x) = x·σ(x)`.
///
/// # Panics
/// If the two lengths differ.
pub(crate) fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up values pair up");
    gate.par_chunks_mut(SWIGLU_TASK)
        .zip(up.par_chunks(SWIGLU_TASK))
        .for_each(|(gate, up)| Arch::new().dispatch(|| swiglu(gate, up)));
}

/// The loop behind [`swiglu_in_place`], compiled for the CPU's vectors: `σ(x)` from
/// `e = exp(−|x|)` as `1/(1+e)` or `e/(1+e)`, which never overflows.
#[inline(always)]
fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let e = exp_non_positive(-g.abs());
        let sigmoid = if *g >= 0.0 { 1.0 } else { e } / (1.0 + e);
        *g *= sigmoid * u;
    }
}

/// `xᵢ ← exp(xᵢ − shift)` for `xᵢ ≤ shift` (or −∞), returning the sum of the results.
fn exp_shifted_in_place(values: &mut [f32], shift: f32) -> f32 {
    Arch::new().dispatch(|| exp_shifted(values, shift))
}

/// The loop behind [`exp_shifted_in_place`], compiled for the CPU's vectors: branch-free, so it
/// vectorises.
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
    fn swiglu_matches_the_f64_formula_from_large_negative_to_large_positive_gates() {
        let gate: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) * 0.005).collect();
        let up: Vec<f32> = (0..40_000).map(|i| ((i * 7919) % 201) as f32 * 0.01 - 1.0).collect();
        let mut got = gate.clone();
        swiglu_in_place(&mut got, &up);
        for (i, ((&g, &u), &got)) in gate.iter().zip(&up).zip(&got).enumerate() {
            let (g, u) = (g as f64, u as f64);
            let expected = g / (1.0 + (-g).exp()) * u;
            assert!(
                (got as f64 - expected).abs() <= 1e-6 * expected.abs().max(1e-3),
                "gate {i}: {got} against {expected}"
            );
        }
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
