//! The SFT loss and its gradient through the whole decoder against PyTorch + transformers on the
//! same tiny checkpoint (`tests/fixtures/tiny-llama`, written by `precept random-weights --seed 11`).

use burn::backend::Flex;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use precept_model::checkpoint::load_model;
use precept_model::lora::Trainable;
use precept_model::AttentionInputs;
use precept_train::loss::{masked_next_token_loss, next_token_loss};

use super::A;

// transformers 5.24, torch 2.15, in the fixture folder:
//   m = transformers.LlamaForCausalLM.from_pretrained(".", torch_dtype=torch.float32, attn_implementation="eager")
//   ids = torch.tensor([[(i * 7 + 3) % 97 for i in range(8)], [(i * 13 + 5) % 97 for i in range(8)]])
//   mask = torch.tensor([[i >= 3 for i in range(8)], [2 <= i < 6 for i in range(8)]])
//   logits = m(ids).logits.double()
//   lg, tg, mk = logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1), mask[:, 1:].reshape(-1)
//   loss = F.cross_entropy(lg[mk], tg[mk], reduction="sum") / mk.sum(); loss.backward()
//   p = dict(m.named_parameters())
//   p["model.layers.0.self_attn.q_proj.weight"].grad[1, :4], p["model.layers.1.mlp.down_proj.weight"].grad[0, :4],
//   p["model.norm.weight"].grad[:4], p["model.embed_tokens.weight"].grad[3, :4],
//   torch.sqrt(sum((q.grad.double() ** 2).sum() for q in m.parameters()))
const LOSS: f64 = 4.581600652365881;
const Q_PROJ: [f64; 4] = [0.0001215157171827741, 0.0006382131832651794, 0.0003180615312885493, -0.00030573600088246167];
const DOWN_PROJ: [f64; 4] =
    [0.0015959147131070495, -0.0017533714417368174, 0.0019365985644981265, -0.00019957059703301638];
const NORM: [f64; 4] = [-0.002319125458598137, -0.002948922570794821, -0.000941378646530211, 0.006538487039506435];
const EMBED: [f64; 4] = [0.017575977370142937, 0.01471494697034359, 0.07905063778162003, -0.08384966850280762];

fn assert_close(name: &str, found: &[f32], expected: &[f64]) {
    for (f, e) in found.iter().zip(expected) {
        let tolerance = 1e-5 + 1e-3 * e.abs();
        assert!((*f as f64 - e).abs() < tolerance, "{name}: {found:?} vs {expected:?}");
    }
}

fn values<const D: usize>(tensor: Tensor<Flex, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().into_vec().unwrap()
}

/// Checks the loss and four gradients against the PyTorch figures above.
pub fn check_loss_and_gradients() {
    let dir = super::package_dir().join("tests/fixtures/tiny-llama");
    let device = Default::default();
    let (_, model) = load_model::<A>(&dir, &device).unwrap();
    let model = model.set_trainable(Trainable::All);
    let ids: Vec<i64> = (0..8).map(|i| (i * 7 + 3) % 97).chain((0..8).map(|i| (i * 13 + 5) % 97)).collect();
    let mask: Vec<bool> = (0..8).map(|i| i >= 3).chain((0..8).map(|i| (2..6).contains(&i))).collect();
    let ids = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [2, 8]), &device);
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask, [2, 8]), &device);
    let inputs = AttentionInputs::causal(2, 8, 0, &device);
    // The composed loss over full logits and the trainer's fused one over the learnt positions.
    let composed = masked_next_token_loss(model.forward(ids.clone(), &inputs, None), ids.clone(), mask.clone());
    assert_close("composed loss", &values(composed.normalised(composed.tokens).inner()), &[LOSS]);
    let loss = next_token_loss(&model, ids, &inputs, mask).loss;
    assert_eq!(loss.tokens, 9);
    let loss = loss.normalised(loss.tokens);
    assert_close("loss", &values(loss.clone().inner()), &[LOSS]);

    let grads = loss.backward();
    // Projections hold `[d_in, d_out]`: PyTorch's row `r` of a weight gradient is column `r` here.
    let q = model.model.layers[0].self_attn.q_proj.weight.val().grad(&grads).unwrap();
    assert_close("q_proj", &values(q.slice([0..4, 1..2])), &Q_PROJ);
    let down = model.model.layers[1].mlp.down_proj.weight.val().grad(&grads).unwrap();
    assert_close("down_proj", &values(down.slice([0..4, 0..1])), &DOWN_PROJ);
    let norm = model.model.norm.weight.val().grad(&grads).unwrap();
    assert_close("norm", &values(norm.narrow(0, 0, 4)), &NORM);
    let embed = model.model.embed_tokens.weight.val().grad(&grads).unwrap();
    assert_close("embed_tokens", &values(embed.slice([3..4, 0..4])), &EMBED);
}
