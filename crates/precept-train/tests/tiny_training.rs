//! The decoder trains: gradients flow through the whole forward pass (embeddings, grouped-query
//! attention, RoPE, RMSNorm, SwiGLU, tied head) and a few optimiser steps lower the masked loss.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use precept_model::{AttentionInputs, LlamaConfig};
use precept_train::loss::masked_next_token_loss;

type A = Autodiff<Flex>;

#[test]
fn twenty_adamw_steps_on_a_tiny_model_halve_the_masked_loss() {
    let device = Default::default();
    A::seed(&device, 7);
    let config = LlamaConfig::tiny().with_tie_word_embeddings(true);
    let mut model = config.init::<A>(&device);
    let ids: Vec<i64> = (0..24).map(|i| (i * 29 + 3) % 97).collect();
    let tokens = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let mask: Vec<bool> = (0..24).map(|i| i % 12 >= 4).collect();
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask, [2, 12]), &device);
    let inputs = AttentionInputs::causal(2, 12, 0, &device);
    let mut optimizer = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..20 {
        let logits = model.forward(tokens.clone(), &inputs, None);
        let loss = masked_next_token_loss(logits, tokens.clone(), mask.clone());
        let loss = loss.normalised(loss.tokens);
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads);
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[19] < 0.5 * losses[0], "{losses:?}");
}
