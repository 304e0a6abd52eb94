//! One GRPO step through the whole decoder matches TRL and PyTorch + transformers on the tiny
//! checkpoint (`tests/fixtures/tiny-llama`): per-token log-probabilities of sampled completions,
//! the clipped surrogate with the `k3` KL term for every loss type, its metrics and the gradient
//! norm, with a precomputed reference.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use burn::optim::GradientsParams;
use common::A;
use precept_model::{from_host, host_values};
use precept_train::grpo::CompletionRows;
use precept_train::loss::{CompletionLogps, CrossEntropyBackend, GrpoLoss, GrpoLossConfig, GrpoLossType};
use precept_train::optim::global_grad_norm;

// TRL 1.16, transformers 5.25, torch 2.15, float64 (scripts/peers/grpo_step_golden.py, run as
// `python3 scripts/peers/grpo_step_golden.py crates/precept-train/tests/fixtures/tiny-llama`):
//   m = transformers.LlamaForCausalLM.from_pretrained(".", dtype=torch.float64, attn_implementation="sdpa")
//   prompts = [[(i * 7 + 3) % 97 for i in range(5)], [(i * 11 + 40) % 97 for i in range(3)]]
//   lengths = [6, 4, 5, 2]   # row r completes prompts[r // 2], left-padded; completions right-padded
//   completions = [[(j * 13 + r * 29 + 5) % 97 for j in range(n)] for r, n in enumerate(lengths)]
//   old_logps = [[-4.6 + 0.25 * (((r * 5 + j * 3) % 5) - 2) for j in range(6)] for r in range(4)] * mask
//   ref_logps = [[-4.6 + 0.2 * (((r * 3 + j * 7) % 5) - 2) for j in range(6)] for r in range(4)] * mask
//   advantages = [0.9, -0.9, 1.3, -0.4]; beta = 0.04; temperature = 0.9
//   stand_in: epsilon_low = 0.2, epsilon_high = 0.28, max_completion_length = 8, one micro-batch
//   per step, _get_per_token_logps_and_entropies = selective_log_softmax(m(ids, attention_mask)
//     .logits[:, :-1][:, -6:], completion_ids, temperature, row_mask=completion_mask)
//   inputs["num_items_in_batch"] = 40   # dapo's normaliser: the whole generation batch's tokens
//   loss = GRPOTrainer._compute_loss(stand_in, m, inputs); loss.backward()
//   torch.sqrt(sum((q.grad.double() ** 2).sum() for q in m.parameters()))
// (TRL's own `_get_per_token_logps_and_entropies`, whose fused head sums the softmax in float32,
// gives the same log-probabilities to 5.2e-7.)
const LOGPS: [&[f64]; 4] = [
    &[
        -4.639247135879421,
        -4.675112589438216,
        -4.284198986369168,
        -4.684768095181422,
        -4.663193363964052,
        -4.542445045438068,
    ],
    &[-4.497238421356551, -4.647073550039379, -4.620198680780513, -4.6688591953326775],
    &[-4.45172100208595, -4.6664219222104935, -4.750923482847229, -4.706492217849059, -4.6430897302492635],
    &[-4.528601857404994, -4.4869250267734895],
];
/// `(loss_type, loss, gradient norm)`.
const STEPS: [(GrpoLossType, f64, f64); 4] = [
    (GrpoLossType::Grpo, -0.12971813737691146, 1.9573325996882183),
    (GrpoLossType::Bnpo, -0.36175812968412224, 1.9207930081671238),
    (GrpoLossType::DrGrpo, -0.19218400639468994, 1.0204212791043366),
    (GrpoLossType::Dapo, -0.15374720511575196, 0.8163370214124736),
];
const KL: f64 = 0.0432760971776089;
/// TRL's `clip_ratio/low_mean`, `high_mean` and `region_mean`: 2 and 4 of the 17 tokens.
const CLIPPED: [f64; 3] = [2.0 / 17.0, 4.0 / 17.0, 6.0 / 17.0];

const LENGTHS: [usize; 4] = [6, 4, 5, 2];
const ADVANTAGES: [f32; 4] = [0.9, -0.9, 1.3, -0.4];

fn close(found: f64, expected: f64) -> bool {
    (found - expected).abs() < 1e-5 + 1e-4 * expected.abs()
}

/// Row `r`'s value of each of its completion tokens.
fn per_token(value: impl Fn(usize, usize) -> f64) -> Vec<Vec<f32>> {
    LENGTHS.iter().enumerate().map(|(r, &n)| (0..n).map(|j| value(r, j) as f32).collect()).collect()
}

#[test]
fn a_grpo_step_matches_trl_on_a_tiny_llama_for_every_loss_type() {
    let device = Default::default();
    let model = common::tiny_llama();
    let prompts: [Vec<u32>; 2] =
        [(0..5).map(|i| (i * 7 + 3) % 97).collect(), (0..3).map(|i| (i * 11 + 40) % 97).collect()];
    let completions: Vec<Vec<u32>> = LENGTHS
        .iter()
        .enumerate()
        .map(|(r, &n)| (0..n).map(|j| ((j * 13 + r * 29 + 5) % 97) as u32).collect())
        .collect();
    let rows = CompletionRows::new(completions.iter().enumerate().map(|(r, c)| (&prompts[r / 2][..], &c[..])));
    let old = per_token(|r, j| -4.6 + 0.25 * (((r * 5 + j * 3) % 5) as f64 - 2.0));
    let reference = per_token(|r, j| -4.6 + 0.2 * (((r * 3 + j * 7) % 5) as f64 - 2.0));

    for (loss_type, expected_loss, expected_norm) in STEPS {
        let logps = rows.token_logps(&model, 0.9, |logits, targets| A::row_cross_entropy(logits, targets).neg());
        let found = host_values(logps.clone());
        for (r, expected) in LOGPS.iter().enumerate() {
            let row = &found[r * 6..r * 6 + expected.len()];
            assert!(
                row.iter().zip(*expected).all(|(f, e)| close(f64::from(*f), *e)),
                "row {r}: {row:?} vs {expected:?}"
            );
        }
        let batch = CompletionLogps {
            logps,
            old_logps: Some(rows.padded(&old, &device)),
            ref_logps: Some(rows.padded(&reference, &device)),
            mask: rows.mask(&device),
            advantages: from_host(ADVANTAGES.to_vec(), [4], &device),
            num_items_in_batch: Some(40.0),
        };
        let config =
            GrpoLossConfig { loss_type, epsilon: 0.2, epsilon_high: Some(0.28), beta: 0.04, max_completion_length: 8 };
        let GrpoLoss { loss, metrics } = config.loss(&batch);
        let found = f64::from(host_values(loss.clone())[0]);
        assert!(close(found, expected_loss), "{loss_type:?} loss {found} vs {expected_loss}");
        assert!(metrics.kl.is_some_and(|kl| close(kl, KL)), "{loss_type:?}: {metrics:?}");
        let clipped = [metrics.clip_ratio_low_mean, metrics.clip_ratio_high_mean, metrics.clip_ratio_region_mean];
        assert!(clipped.iter().zip(CLIPPED).all(|(f, e)| close(*f, e)), "{loss_type:?}: {metrics:?}");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = global_grad_norm(&model, &grads);
        assert!(close(norm, expected_norm), "{loss_type:?} grad norm {norm} vs {expected_norm}");
    }
}
