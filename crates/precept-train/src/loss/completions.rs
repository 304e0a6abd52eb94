//! The completions every GRPO and RLOO test reads, as scripts/peers/grpo_golden.py builds them:
//! 4 completions of up to 5 tokens (lengths 5, 3, 4, 2) with mixed-sign advantages, where the
//! off-policy ratios clip 2 masked tokens low and 3 high at `ε = 0.2`, `ε_high = 0.28`.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use precept_model::from_host;

use super::CompletionLogps;

/// The backend of the gradient tests.
pub(super) type A = Autodiff<Flex>;

/// The policy's per-token log-probabilities.
pub(super) const LOGPS: [[f32; 5]; 4] = [
    [-0.5, -1.2, -0.3, -2.0, -0.8],
    [-1.0, -0.4, -0.9, -1.5, -0.2],
    [-0.7, -2.2, -0.1, -0.6, -1.1],
    [-0.3, -0.8, -1.7, -0.5, -0.9],
];
/// `logp − old_logp` when off-policy.
pub(super) const LOG_RATIO: [[f32; 5]; 4] = [
    [0.3, -0.1, 0.0, 0.5, 0.05],
    [-0.4, 0.2, 0.1, -0.25, 0.0],
    [0.22, -0.3, 0.35, 0.0, -0.05],
    [-0.5, 0.25, 0.05, 0.1, -0.2],
];
/// `ref_logp − logp`.
pub(super) const REF_SHIFT: [[f32; 5]; 4] = [
    [0.1, -0.2, 0.3, 0.0, -0.1],
    [0.05, 0.4, -0.3, 0.2, 0.0],
    [-0.15, 0.1, 0.25, -0.05, 0.3],
    [0.2, -0.35, 0.0, 0.1, -0.2],
];
/// Completions of 5, 3, 4 and 2 tokens.
pub(super) const MASK: [[f32; 5]; 4] =
    [[1.0; 5], [1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]];
/// One advantage per completion.
pub(super) const ADVANTAGES: [f32; 4] = [1.2, -0.8, 0.5, -0.6];

/// A `[4, 5]` tensor.
pub(super) fn matrix<C: Backend>(values: [[f32; 5]; 4]) -> Tensor<C, 2> {
    from_host(values.concat(), [4, 5], &Default::default())
}

/// The completions with the policy's `logps`, the sampling policy's log-probabilities when
/// `off_policy` (else none: the policy's own, detached) and the reference's.
pub(super) fn batch<C: Backend>(logps: Tensor<C, 2>, off_policy: bool) -> CompletionLogps<C> {
    CompletionLogps {
        old_logps: off_policy.then(|| logps.clone().detach() - matrix(LOG_RATIO)),
        ref_logps: Some(logps.clone().detach() + matrix(REF_SHIFT)),
        logps,
        mask: matrix(MASK),
        advantages: from_host(ADVANTAGES.to_vec(), [4], &Default::default()),
        num_items_in_batch: None,
    }
}

/// Within `1e-5`, relative beyond 1.
pub(super) fn close(found: f64, expected: f64) -> bool {
    (found - expected).abs() < 1e-5 * expected.abs().max(1.0)
}
