//! The SFT loss and its gradient through the whole decoder match PyTorch + transformers on the
//! same tiny checkpoint (`tests/fixtures/tiny-llama`, written by `precept random-weights --seed 11`),
//! through the CPU backend's kernels as training runs them: SwiGLU, attention and the
//! cross-entropy as single graph nodes with hand-written backward passes on host memory. (Unit
//! tests check each of those against the composed burn operations other backends run.)

mod common;

#[test]
fn the_training_loss_and_its_gradients_match_pytorch_on_a_tiny_llama() {
    common::golden::check_loss_and_gradients();
}
