//! One DPO step through the whole decoder matches PyTorch + transformers on the tiny checkpoint
//! (`tests/fixtures/tiny-llama`): sequence log-probabilities, sigmoid loss, rewards and the
//! gradient norm, with a precomputed reference.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use burn::optim::GradientsParams;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use common::A;
use precept_model::AttentionInputs;
use precept_train::loss::{combined_loss, rewards, sequence_logps, PairLogps, PreferenceLoss};
use precept_train::optim::global_grad_norm;

// transformers 5.24, torch 2.15, in the fixture folder (rows 0-1 chosen, 2-3 rejected):
//   m = transformers.LlamaForCausalLM.from_pretrained(".", torch_dtype=torch.float32, attn_implementation="eager")
//   ids = torch.tensor([[(i * 5 + r * 17 + 1) % 97 for i in range(8)] for r in range(4)])
//   mask = torch.tensor([[i >= 4 for i in range(8)], [i >= 3 for i in range(8)],
//                        [4 <= i < 7 for i in range(8)], [i >= 5 for i in range(8)]])
//   logp = torch.log_softmax(m(ids).logits.double()[:, :-1], -1).gather(2, ids[:, 1:, None])[..., 0]
//   seq = (logp * mask[:, 1:]).sum(1); chosen, rejected = seq[:2], seq[2:]
//   ref_c, ref_r = [-14.0, -18.0], [-13.5, -9.0]; beta = 0.1
//   loss = (-F.logsigmoid(beta * ((chosen - ref_c) - (rejected - ref_r)))).mean(); loss.backward()
//   torch.sqrt(sum((q.grad.double() ** 2).sum() for q in m.parameters()))
const LOGPS: [f64; 4] = [-18.221153757533834, -23.20419729028751, -13.916564345780774, -13.976244063605225];
const LOSS: f64 = 0.8029859929575633;
const REWARDS_CHOSEN: [f64; 2] = [-0.4221153757533834, -0.520419729028751];
const REWARDS_REJECTED: [f64; 2] = [-0.0416564345780774, -0.4976244063605226];
const GRAD_NORM: f64 = 0.9499163747369271;

fn close(found: f64, expected: f64) -> bool {
    (found - expected).abs() < 1e-5 + 1e-4 * expected.abs()
}

fn values(t: Tensor<A, 1>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec().unwrap()
}

#[test]
fn a_dpo_step_matches_pytorch_on_a_tiny_llama() {
    let device = Default::default();
    let model = common::tiny_llama();
    let ids: Vec<i64> = (0..4).flat_map(|r| (0..8).map(move |i| (i * 5 + r * 17 + 1) % 97)).collect();
    let ranges = [4..8, 3..8, 4..7, 5..8];
    let mask: Vec<bool> = ranges.iter().flat_map(|range| (0..8).map(move |i| range.contains(&i))).collect();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [4, 8]), &device);
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask, [4, 8]), &device);

    let sequences = sequence_logps(&model, ids, &AttentionInputs::causal(4, 8, 0, &device), mask);
    let found = values(sequences.logps.clone());
    assert!(found.iter().zip(LOGPS).all(|(f, e)| close(*f, e)), "{found:?} vs {LOGPS:?}");

    let constant = |v: [f64; 2]| Tensor::<A, 1>::from_data(TensorData::new(v.map(|x| x as f32).to_vec(), [2]), &device);
    let counts = |range: std::ops::Range<usize>| {
        let tokens: Vec<f32> = sequences.tokens[range].iter().map(|&t| t as f32).collect();
        Tensor::<A, 1>::from_data(TensorData::new(tokens, [2]), &device)
    };
    let pairs = PairLogps {
        chosen: sequences.logps.clone().narrow(0, 0, 2),
        rejected: sequences.logps.narrow(0, 2, 2),
        ref_chosen: constant([-14.0, -18.0]),
        ref_rejected: constant([-13.5, -9.0]),
        chosen_tokens: counts(0..2),
        rejected_tokens: counts(2..4),
    };
    let loss = combined_loss(&[(PreferenceLoss::Sigmoid, 1.0)], &pairs, 0.1, 0.0);
    assert!(close(values(loss.clone())[0], LOSS), "loss {:?}", values(loss.clone()));
    let (chosen, rejected) = rewards(&pairs, 0.1);
    for (found, expected) in
        values(chosen).into_iter().chain(values(rejected)).zip(REWARDS_CHOSEN.into_iter().chain(REWARDS_REJECTED))
    {
        assert!(close(found, expected), "reward {found} vs {expected}");
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = global_grad_norm(&model, &grads);
    assert!(close(norm, GRAD_NORM), "grad norm {norm} vs {GRAD_NORM}");
}
