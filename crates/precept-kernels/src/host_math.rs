//! Element-wise math on host memory around an `exp` written so the compiler vectorises it: the
//! softmax of host attention, SwiGLU, and the cross-entropy of training over the vocabulary
//! ([`log_sum_exp_rows`], [`cross_entropy_gradient_in_place`]). libm's scalar `expf`, behind all
//! of them in the backend, was about a quarter of a long prefill.

use pulp::Arch;
use rayon::prelude::*;

/// Below this, `exp(x)` is under the smallest normal `f32` and is taken as zero.
const EXP_LOWEST: f32 = -87.3;

/// Replaces `scores` by their softmax over the keys `hidden` does not hide. A query that sees no
/// key gets zero weights (no query of a causal, left-padded mask is in that case: each sees
/// itself).
pub fn softmax_in_place(scores: &mut [f32], hidden: Option<&[bool]>) {
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
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up values pair up");
    gate.par_chunks_mut(SWIGLU_TASK)
        .zip(up.par_chunks(SWIGLU_TASK))
        .for_each(|(gate, up)| Arch::new().dispatch(|| swiglu(gate, up)));
}

/// The loop behind [`swiglu_in_place`], compiled for the CPU's vectors.
#[inline(always)]
fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g *= sigmoid(*g) * u;
    }
}

/// `σ(x) = 1/(1 + e^(−x))` from `e = exp(−|x|)`, as `1/(1+e)` or `e/(1+e)`, which never overflows.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = exp_non_positive(-x.abs());
    (if x >= 0.0 { 1.0 } else { e }) / (1.0 + e)
}

/// The gradients of `h = silu(g)·u` written over the inputs: `gate ← dh·u·σ(g)·(1 + g·(1 − σ(g)))`
/// and `up ← dh·silu(g)`, in parallel.
///
/// # Panics
/// If the three lengths differ.
pub fn swiglu_backward_in_place(grad: &[f32], gate: &mut [f32], up: &mut [f32]) {
    assert!(grad.len() == gate.len() && gate.len() == up.len(), "gradient, gate and up values pair up");
    gate.par_chunks_mut(SWIGLU_TASK)
        .zip(up.par_chunks_mut(SWIGLU_TASK))
        .zip(grad.par_chunks(SWIGLU_TASK))
        .for_each(|((gate, up), grad)| Arch::new().dispatch(|| swiglu_backward(grad, gate, up)));
}

/// The loop behind [`swiglu_backward_in_place`], compiled for the CPU's vectors.
#[inline(always)]
fn swiglu_backward(grad: &[f32], gate: &mut [f32], up: &mut [f32]) {
    for ((g, u), &d) in gate.iter_mut().zip(up.iter_mut()).zip(grad) {
        let sigmoid = sigmoid(*g);
        let silu = *g * sigmoid;
        let d_gate = d * *u * sigmoid * (1.0 + *g * (1.0 - sigmoid));
        *u = d * silu;
        *g = d_gate;
    }
}

/// The gradient of the scores under a softmax, written over the gradient of its output, for one
/// row: `dPᵢ ← scale·Pᵢ·(dPᵢ − Σⱼ Pⱼ·dPⱼ)`, where `P` is the softmax's output and `scale`
/// multiplied the scores before it.
///
/// # Panics
/// If the two lengths differ.
pub fn softmax_backward_row(probabilities: &[f32], grad: &mut [f32], scale: f32) {
    assert_eq!(probabilities.len(), grad.len(), "probabilities and gradients pair up");
    let dot: f32 = probabilities.iter().zip(grad.iter()).map(|(&p, &g)| p * g).sum();
    grad.iter_mut().zip(probabilities).for_each(|(g, &p)| *g = scale * p * (*g - dot));
}

/// Each row's `log Σⱼ exp(xⱼ)`, for `values` laid out as rows of `width`; rows run in parallel.
///
/// A row holding `+∞` or NaN gives that value (the loss it feeds is then not finite, which
/// training reports), a row of `−∞` gives `−∞`.
///
/// # Panics
/// If `width` is 0.
pub fn log_sum_exp_rows(values: &[f32], width: usize) -> Vec<f32> {
    values
        .par_chunks(width)
        .map(|row| {
            if row.iter().any(|v| v.is_nan()) {
                return f32::NAN;
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !max.is_finite() {
                return max;
            }
            max + Arch::new().dispatch(|| sum_exp_shifted(row, max)).ln()
        })
        .collect()
}

/// `xᵢⱼ ← wᵢ·(exp(xᵢⱼ − lseᵢ) − [j = tᵢ])`, the gradient of `Σᵢ wᵢ·(lseᵢ − xᵢ[tᵢ])` (a weighted
/// cross-entropy) with respect to the logits `x`, written over them; rows of `width` run in
/// parallel. `log_sum_exp` comes from [`log_sum_exp_rows`] on the same values.
///
/// # Panics
/// If `width` is 0, if the per-row slices are not one entry per row, or if a target is not
/// below `width`.
pub fn cross_entropy_gradient_in_place(
    values: &mut [f32],
    width: usize,
    log_sum_exp: &[f32],
    targets: &[usize],
    weights: &[f32],
) {
    let rows = values.len() / width;
    assert!(
        log_sum_exp.len() == rows && targets.len() == rows && weights.len() == rows,
        "one log-sum-exp, target and weight per row"
    );
    values.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
        Arch::new().dispatch(|| scaled_exp_shifted(row, log_sum_exp[i], weights[i]));
        row[targets[i]] -= weights[i];
    });
}

/// `Σ exp(xᵢ − shift)` for `xᵢ ≤ shift` (or −∞), compiled for the CPU's vectors.
#[inline(always)]
fn sum_exp_shifted(values: &[f32], shift: f32) -> f32 {
    let mut sums = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (&value, sum) in chunk.iter().zip(&mut sums) {
            *sum += exp_non_positive(value - shift);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&value| exp_non_positive(value - shift)).sum();
    sums.iter().sum::<f32>() + tail
}

/// `xᵢ ← scale·exp(xᵢ − shift)`, compiled for the CPU's vectors.
#[inline(always)]
fn scaled_exp_shifted(values: &mut [f32], shift: f32, scale: f32) {
    for value in values.iter_mut() {
        *value = scale * exp_non_positive(*value - shift);
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

    #[test]
    fn the_cross_entropy_gradient_is_softmax_minus_the_target_scaled_by_the_weight() {
        let width = 1000;
        let values: Vec<f32> = (0..3 * width).map(|i| ((i * 7919) % 997) as f32 * 0.03 - 15.0).collect();
        let log_sum_exp = log_sum_exp_rows(&values, width);
        let (targets, weights) = ([3usize, 999, 0], [1.0f32, 0.25, 0.0]);
        let mut gradient = values.clone();
        cross_entropy_gradient_in_place(&mut gradient, width, &log_sum_exp, &targets, &weights);
        for (i, row) in values.chunks(width).enumerate() {
            let max = row.iter().map(|&v| v as f64).fold(f64::MIN, f64::max);
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let expected_lse = max + sum.ln();
            assert!(
                (log_sum_exp[i] as f64 - expected_lse).abs() < 1e-5,
                "row {i}: {} against {expected_lse}",
                log_sum_exp[i]
            );
            for (j, &v) in row.iter().enumerate() {
                let softmax = (v as f64 - expected_lse).exp();
                let expected = weights[i] as f64 * (softmax - f64::from(u8::from(j == targets[i])));
                let got = gradient[i * width + j] as f64;
                assert!(
                    (got - expected).abs() <= 1e-5 * expected.abs().max(1e-3),
                    "row {i} column {j}: {got} against {expected}"
                );
            }
        }
        assert!(log_sum_exp_rows(&[1.0, f32::NAN], 2)[0].is_nan());
        assert_eq!(log_sum_exp_rows(&[1.0, f32::INFINITY], 2)[0], f32::INFINITY);
        assert_eq!(log_sum_exp_rows(&[f32::NEG_INFINITY; 2], 2)[0], f32::NEG_INFINITY);
    }

    #[test]
    fn the_swiglu_gradients_match_finite_differences_of_the_f64_formula() {
        let swiglu = |g: f64, u: f64| g / (1.0 + (-g).exp()) * u;
        let gate: Vec<f32> = (0..2000).map(|i| (i as f32 - 1000.0) * 0.02).collect();
        let up: Vec<f32> = (0..2000).map(|i| ((i * 7919) % 201) as f32 * 0.01 - 1.0).collect();
        let grad: Vec<f32> = (0..2000).map(|i| ((i * 104_729) % 13) as f32 * 0.1 - 0.6).collect();
        let (mut d_gate, mut d_up) = (gate.clone(), up.clone());
        swiglu_backward_in_place(&grad, &mut d_gate, &mut d_up);
        let h = 1e-4;
        for i in 0..gate.len() {
            let (g, u, d) = (gate[i] as f64, up[i] as f64, grad[i] as f64);
            let expected_gate = d * (swiglu(g + h, u) - swiglu(g - h, u)) / (2.0 * h);
            let expected_up = d * swiglu(g, 1.0);
            assert!((d_gate[i] as f64 - expected_gate).abs() <= 1e-4 * expected_gate.abs().max(1.0), "gate {i}");
            assert!((d_up[i] as f64 - expected_up).abs() <= 1e-5 * expected_up.abs().max(1.0), "up {i}");
        }
    }

    #[test]
    fn the_softmax_backward_is_the_jacobian_transpose_applied_to_the_output_gradient() {
        let width = 7;
        let mut p: Vec<f32> = (0..2 * width).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        p.chunks_mut(width).for_each(|row| softmax_in_place(row, None));
        let d_out: Vec<f32> = (0..2 * width).map(|i| ((i * 53) % 9) as f32 * 0.2 - 0.8).collect();
        let mut got = d_out.clone();
        for (p, got) in p.chunks(width).zip(got.chunks_mut(width)) {
            softmax_backward_row(p, got, 0.5);
        }
        for row in 0..2 {
            let at = |i: usize| row * width + i;
            for i in 0..width {
                // ∂Pⱼ/∂sᵢ = Pⱼ(δᵢⱼ − Pᵢ), and the scores were scaled by 0.5.
                let expected: f64 = (0..width)
                    .map(|j| {
                        let delta = f64::from(u8::from(i == j));
                        d_out[at(j)] as f64 * p[at(j)] as f64 * (delta - p[at(i)] as f64)
                    })
                    .sum::<f64>()
                    * 0.5;
                assert!((got[at(i)] as f64 - expected).abs() < 1e-6, "row {row} score {i}");
            }
        }
    }
}
