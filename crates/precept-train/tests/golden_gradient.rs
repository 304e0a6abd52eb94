//! The SFT loss and its gradient through the whole decoder match PyTorch + transformers on the
//! same tiny checkpoint (`tests/fixtures/tiny-llama`, written by `precept random-weights --seed 11`),
//! with the backend's composed operations (no host kernels in this test binary).

mod common;

#[test]
fn the_training_loss_and_its_gradients_match_pytorch_on_a_tiny_llama() {
    common::golden::check_loss_and_gradients();
}
