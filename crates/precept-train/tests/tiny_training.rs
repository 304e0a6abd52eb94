//! The decoder trains: gradients flow through the whole forward pass (embeddings, grouped-query
//! attention, RoPE, RMSNorm, SwiGLU, tied head) and a few optimiser steps lower the masked loss.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

mod common;

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use precept_model::lora::{LoraConfig, Trainable};
use precept_model::{AttentionInputs, LlamaConfig, LlamaForCausalLM};
use precept_train::loss::masked_next_token_loss;
use precept_train::optim::{AdamW, AdamWConfig};

use common::serial;

type A = Autodiff<Flex>;

#[test]
fn twenty_adamw_steps_on_a_tiny_model_halve_the_masked_loss() {
    let _serial = serial();
    let device = Default::default();
    A::seed(&device, 7);
    let config = LlamaConfig::tiny().with_tie_word_embeddings(true);
    let mut model = config.init::<A>(&device).set_trainable(Trainable::All);
    let ids: Vec<i64> = (0..24).map(|i| (i * 29 + 3) % 97).collect();
    let tokens = Tensor::<A, 2, Int>::from_data(TensorData::new(ids, [2, 12]), &device);
    let mask: Vec<bool> = (0..24).map(|i| i % 12 >= 4).collect();
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(mask, [2, 12]), &device);
    let inputs = AttentionInputs::causal(2, 12, 0, &device);
    let mut optimizer = AdamW::new(AdamWConfig::default());
    let mut losses = Vec::new();
    for _ in 0..20 {
        let logits = model.forward(tokens.clone(), &inputs, None);
        let loss = masked_next_token_loss(logits, tokens.clone(), mask.clone());
        let loss = loss.normalised(loss.tokens);
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads, 1.0);
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[19] < 0.5 * losses[0], "{losses:?}");
}

/// Every parameter as a vector, in module order.
fn parameters(model: &LlamaForCausalLM<A>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor<A> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<A, D>>) {
            self.0.push(param.val().into_data().convert::<f32>().into_vec().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

#[test]
fn a_lora_step_moves_only_adapter_weights_and_the_base_gets_no_gradient() {
    let _serial = serial();
    let device = Default::default();
    A::seed(&device, 9);
    let base = LlamaConfig::tiny().init::<A>(&device);
    let config = LoraConfig { r: 2, target_modules: vec!["q_proj".into(), "up_proj".into()], ..LoraConfig::default() };
    let model = base.with_lora(&config).unwrap();
    let before = parameters(&model);
    let tokens = Tensor::<A, 2, Int>::from_data(
        TensorData::new((0..12).map(|i| i * 5 % 97).collect::<Vec<i64>>(), [1, 12]),
        &device,
    );
    let mask = Tensor::<A, 2, Bool>::from_data(TensorData::new(vec![true; 12], [1, 12]), &device);
    let logits = model.forward(tokens.clone(), &AttentionInputs::causal(1, 12, 0, &device), None);
    let loss = masked_next_token_loss(logits, tokens, mask);
    let grads = GradientsParams::from_grads(loss.normalised(loss.tokens).backward(), &model);
    // Two adapters (A and B) on two projections in each of two layers.
    assert_eq!(grads.len(), 2 * 2 * 2, "only adapter factors have gradients");
    let model = AdamW::new(AdamWConfig::default()).step(1e-2, model, grads, 1.0);
    let after = parameters(&model);
    let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
    // With B = 0 at init, the first step moves B only (A's gradient is zero).
    assert_eq!(changed.len(), 2 * 2, "changed parameters: {changed:?} of {}", before.len());
    let lora_b_shapes: Vec<usize> = changed.iter().map(|&i| after[i].len()).collect();
    assert!(lora_b_shapes.iter().all(|&n| n == 2 * 32 || n == 2 * 48), "{lora_b_shapes:?}");
}
