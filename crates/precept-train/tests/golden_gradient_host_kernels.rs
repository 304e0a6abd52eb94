//! The golden check of `golden_gradient.rs` with host kernels, as the CLI trains on the CPU:
//! SwiGLU, attention and the cross-entropy are single graph nodes with hand-written backward
//! passes on host memory. A test binary of its own, as the kernels are chosen once per process.

use burn::backend::Flex;

mod common;

#[test]
fn with_host_kernels_the_training_loss_and_its_gradients_still_match_pytorch() {
    precept_model::set_host_kernels::<Flex>();
    common::golden::check_loss_and_gradients();
}
