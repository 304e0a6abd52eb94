//! [`AdamW`] with decoupled weight decay that spares norms and biases, global gradient-norm
//! clipping, and its state as named tensors for checkpoints.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use precept_model::{from_host, host_values};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW settings, with PyTorch's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to `√v̂` in the denominator.
    pub epsilon: f64,
    /// Decoupled weight decay `λ`, applied as `θ ← θ·(1 − lr·λ)` to matrices only: norm
    /// weights and biases (1-D parameters) are never decayed.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weight_decay: 0.0 }
    }
}

impl AdamWConfig {
    /// Checks that both betas are in `[0, 1)`, `epsilon` is positive and `weight_decay` is at
    /// least 0, all finite; errors name the setting as `optimizer.<field>`.
    pub fn validate(&self) -> Result<()> {
        let check = |field: &str, value: f64, ok: bool, range: &str| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(TrainError::setting(&format!("optimizer.{field}"), format!("{value:?} is not {range}")))
            }
        };
        check("beta1", self.beta1, (0.0..1.0).contains(&self.beta1), "in [0, 1)")?;
        check("beta2", self.beta2, (0.0..1.0).contains(&self.beta2), "in [0, 1)")?;
        check("epsilon", self.epsilon, self.epsilon > 0.0, "a positive number")?;
        check("weight_decay", self.weight_decay, self.weight_decay >= 0.0, "a number of at least 0")
    }
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
pub struct Moments<B: Backend> {
    /// `m`, the running mean of gradients.
    pub exp_avg: Tensor<B, 1>,
    /// `v`, the running mean of squared gradients.
    pub exp_avg_sq: Tensor<B, 1>,
}

/// AdamW over the parameters that have gradients; state is keyed by parameter id.
#[derive(Debug)]
pub struct AdamW<B: AutodiffBackend> {
    config: AdamWConfig,
    /// Updates applied so far (the bias-correction exponent of the next update is `steps + 1`).
    steps: u64,
    moments: HashMap<ParamId, Moments<B::InnerBackend>>,
}

impl<B: AutodiffBackend> AdamW<B> {
    /// A fresh optimiser.
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, steps: 0, moments: HashMap::new() }
    }

    /// Restores state saved with [`AdamW::state`].
    pub fn from_state(config: AdamWConfig, steps: u64, moments: HashMap<ParamId, Moments<B::InnerBackend>>) -> Self {
        Self { config, steps, moments }
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The moments of every parameter updated so far.
    pub fn state(&self) -> &HashMap<ParamId, Moments<B::InnerBackend>> {
        &self.moments
    }

    /// One update of every parameter of `module` that has a gradient in `grads`, each gradient
    /// multiplied by `grad_scale` first (the clipping factor).
    pub fn step<M: AutodiffModule<B>>(&mut self, lr: f64, module: M, grads: GradientsParams, grad_scale: f64) -> M
    where
        B::InnerBackend: OptimizerBackend,
    {
        self.steps += 1;
        let mut mapper = UpdateMapper { optimizer: self, lr, grads, grad_scale };
        module.map(&mut mapper)
    }
}

struct UpdateMapper<'a, B: AutodiffBackend> {
    optimizer: &'a mut AdamW<B>,
    lr: f64,
    grads: GradientsParams,
    grad_scale: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for UpdateMapper<'_, B>
where
    B::InnerBackend: OptimizerBackend,
{
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let config = &self.optimizer.config;
        let t = self.optimizer.steps as i32;
        let step = AdamWStep {
            lr: self.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            epsilon: config.epsilon,
            decay: if D >= 2 { self.lr * config.weight_decay } else { 0.0 },
            correction1: 1.0 - config.beta1.powi(t),
            correction2: 1.0 - config.beta2.powi(t),
            grad_scale: self.grad_scale,
        };
        let moments = self.optimizer.moments.remove(&id);
        let (value, moments) =
            B::InnerBackend::adamw_update(step, tensor.inner().reshape([numel]), grad.reshape([numel]), moments);
        self.optimizer.moments.insert(id, moments);
        let tensor = Tensor::from_inner(value.reshape(shape)).set_require_grad(require_grad);
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// The settings of one AdamW update of one parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to `√v̂` in the denominator.
    pub epsilon: f64,
    /// `lr·λ` for matrices, 0 for norms and biases.
    pub decay: f64,
    /// `1 − β₁ᵗ`.
    pub correction1: f64,
    /// `1 − β₂ᵗ`.
    pub correction2: f64,
    /// Factor applied to the gradient first (the clipping factor).
    pub grad_scale: f64,
}

/// Backends with AdamW's per-parameter update; the default uses burn operations.
pub trait OptimizerBackend: Backend {
    /// The updated value and moments of a flattened parameter (moments start at zero), in
    /// PyTorch's form: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `θ ← θ(1 − lr·λ) − lr/c₁ · m / (√v / √c₂ + ε)`.
    fn adamw_update(
        step: AdamWStep,
        value: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        moments: Option<Moments<Self>>,
    ) -> (Tensor<Self, 1>, Moments<Self>) {
        composed_adamw_update(step, value, grad, moments)
    }
}

/// [`OptimizerBackend::adamw_update`] in burn's element-wise operations.
fn composed_adamw_update<B: Backend>(
    step: AdamWStep,
    value: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    moments: Option<Moments<B>>,
) -> (Tensor<B, 1>, Moments<B>) {
    let grad = grad.mul_scalar(step.grad_scale);
    let (exp_avg, exp_avg_sq) = match moments {
        Some(Moments { exp_avg, exp_avg_sq }) => (
            exp_avg.mul_scalar(step.beta1) + grad.clone().mul_scalar(1.0 - step.beta1),
            exp_avg_sq.mul_scalar(step.beta2) + grad.powi_scalar(2).mul_scalar(1.0 - step.beta2),
        ),
        None => (grad.clone().mul_scalar(1.0 - step.beta1), grad.powi_scalar(2).mul_scalar(1.0 - step.beta2)),
    };
    let denominator = exp_avg_sq.clone().sqrt().div_scalar(step.correction2.sqrt()).add_scalar(step.epsilon);
    let update = exp_avg.clone().div(denominator).mul_scalar(step.lr / step.correction1);
    let value = match step.decay {
        0.0 => value,
        decay => value.mul_scalar(1.0 - decay),
    };
    (value - update, Moments { exp_avg, exp_avg_sq })
}

/// The CPU backend updates each parameter in one parallel pass over host memory.
impl OptimizerBackend for Flex {
    fn adamw_update(
        step: AdamWStep,
        value: Tensor<Self, 1>,
        grad: Tensor<Self, 1>,
        moments: Option<Moments<Self>>,
    ) -> (Tensor<Self, 1>, Moments<Self>) {
        HostStep::new(step).apply(value, grad, moments)
    }
}

#[cfg(feature = "cuda")]
impl OptimizerBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl OptimizerBackend for burn::backend::Wgpu {}

/// [`AdamWStep`] in `f32`, for one pass over host memory (the backend's element-wise operations
/// walk the value, gradient and moments a dozen times).
#[derive(Debug, Clone, Copy)]
struct HostStep {
    lr: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    decay: f32,
    correction1: f32,
    correction2_sqrt: f32,
    grad_scale: f32,
}

/// Values per parallel task of [`HostStep::apply`].
const ADAMW_TASK: usize = 1 << 16;

impl HostStep {
    fn new(step: AdamWStep) -> Self {
        Self {
            lr: step.lr as f32,
            beta1: step.beta1 as f32,
            beta2: step.beta2 as f32,
            epsilon: step.epsilon as f32,
            decay: step.decay as f32,
            correction1: step.correction1 as f32,
            correction2_sqrt: step.correction2.sqrt() as f32,
            grad_scale: step.grad_scale as f32,
        }
    }

    /// The updated value and moments of a flattened parameter; moments start at zero.
    fn apply<B: Backend>(
        self,
        value: Tensor<B, 1>,
        grad: Tensor<B, 1>,
        moments: Option<Moments<B>>,
    ) -> (Tensor<B, 1>, Moments<B>) {
        let device = value.device();
        let numel = value.dims()[0];
        let (mut value, grad) = (host_values(value), host_values(grad));
        let (mut exp_avg, mut exp_avg_sq) = match moments {
            Some(Moments { exp_avg, exp_avg_sq }) => (host_values(exp_avg), host_values(exp_avg_sq)),
            None => (vec![0.0; numel], vec![0.0; numel]),
        };
        value
            .par_chunks_mut(ADAMW_TASK)
            .zip(exp_avg.par_chunks_mut(ADAMW_TASK))
            .zip(exp_avg_sq.par_chunks_mut(ADAMW_TASK))
            .zip(grad.par_chunks(ADAMW_TASK))
            .for_each(|(((value, m), v), grad)| self.update(value, m, v, grad));
        let tensor = |values: Vec<f32>| from_host::<B, 1>(values, [numel], &device);
        (tensor(value), Moments { exp_avg: tensor(exp_avg), exp_avg_sq: tensor(exp_avg_sq) })
    }

    /// [`OptimizerBackend::adamw_update`]'s formula over one chunk.
    fn update(self, value: &mut [f32], exp_avg: &mut [f32], exp_avg_sq: &mut [f32], grad: &[f32]) {
        let step_size = self.lr / self.correction1;
        for (((theta, m), v), &g) in value.iter_mut().zip(exp_avg.iter_mut()).zip(exp_avg_sq.iter_mut()).zip(grad) {
            let g = g * self.grad_scale;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let denominator = v.sqrt() / self.correction2_sqrt + self.epsilon;
            *theta = *theta * (1.0 - self.decay) - step_size * *m / denominator;
        }
    }
}

/// `√Σ‖g‖²` over every gradient of `module`'s parameters in `grads`.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = NormVisitor::<B> { grads, sum: None };
    module.visit(&mut visitor);
    visitor.sum.map(|sum| sum.into_scalar().elem::<f64>().sqrt()).unwrap_or(0.0)
}

/// The factor that scales gradients of norm `norm` down to `max_norm` (1 when already within,
/// or when clipping is off), as PyTorch's `clip_grad_norm_`.
pub fn clip_factor(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) if norm > max => max / (norm + 1e-6),
        _ => 1.0,
    }
}

struct NormVisitor<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::tensor::TensorData;

    use super::*;

    type A = Autodiff<Flex>;

    #[derive(Module, Debug)]
    struct Affine<B: Backend> {
        w: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    fn param<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Param<Tensor<A, D>> {
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), &Default::default()))
    }

    // PyTorch (float64): w, b as below, x = [[1, 2], [-0.5, 0.3]];
    //   opt = AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    //   3 × { loss = ((x @ w + b) ** 2).sum(); loss.backward(); clip_grad_norm_([w, b], 0.5); opt.step() }
    #[test]
    fn three_clipped_steps_match_pytorch_adamw_with_decay_on_matrices_only() {
        let mut model =
            Affine { w: param(vec![0.5, -0.3, 0.8, 0.1, 0.4, -0.6], [2, 3]), b: param(vec![0.2, -0.1, 0.05], [3]) };
        let x = Tensor::<A, 2>::from_data(TensorData::new(vec![1.0f32, 2.0, -0.5, 0.3], [2, 2]), &Default::default());
        let mut optimizer = AdamW::<A>::new(AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() });
        for _ in 0..3 {
            let y = x.clone().matmul(model.w.val()) + model.b.val().unsqueeze();
            let grads = GradientsParams::from_grads(y.powi_scalar(2).sum().backward(), &model);
            let factor = clip_factor(global_grad_norm(&model, &grads), Some(0.5));
            model = optimizer.step(0.1, model, grads, factor);
        }
        let w: Vec<f32> = model.w.val().into_data().into_vec().unwrap();
        let b: Vec<f32> = model.b.val().into_data().into_vec().unwrap();
        let expected_w = [0.193_790_91, -0.380_741_25, 0.731_070_04, -0.185_637_89, 0.253_341_5, -0.432_118_82];
        let expected_b = [-0.061_798_96, -0.272_241_44, 0.334_583_6];
        for (found, expected) in w.iter().chain(&b).zip(expected_w.iter().chain(&expected_b)) {
            assert!((found - expected).abs() < 1e-5, "{w:?} {b:?}");
        }
        assert_eq!(optimizer.steps(), 3);
    }

    #[test]
    fn the_host_update_equals_the_composed_one_over_three_steps() {
        let values: Vec<f32> = (0..300).map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1).collect();
        let tensor =
            |values: Vec<f32>| Tensor::<Flex, 1>::from_data(TensorData::new(values, [300]), &Default::default());
        let (mut host, mut composed) = (tensor(values.clone()), tensor(values));
        let (mut host_moments, mut composed_moments): (Option<Moments<Flex>>, Option<Moments<Flex>>) = (None, None);
        for t in 1..=3 {
            let grad: Vec<f32> = (0..300).map(|i| ((i * 53 + t * 7) % 19) as f32 * 0.05 - 0.45).collect();
            let step = AdamWStep {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                decay: 0.01 * 0.1,
                correction1: 1.0 - 0.9f64.powi(t),
                correction2: 1.0 - 0.999f64.powi(t),
                grad_scale: 0.5,
            };
            let (value, next) = Flex::adamw_update(step, host, tensor(grad.clone()), host_moments.take());
            (host, host_moments) = (value, Some(next));
            let (value, next) = composed_adamw_update(step, composed, tensor(grad), composed_moments.take());
            (composed, composed_moments) = (value, Some(next));
        }
        let difference = (composed - host).abs().max().into_scalar();
        assert!(difference < 1e-6, "{difference}");
    }
}
