//! Whole-model tests on tiny random models (flex backend, fixed seed).

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};

use crate::checkpoint::{load_model, save_model, SaveOptions};
use crate::generate::{generate, GenerationConfig};
use crate::{AttentionInputs, LlamaConfig, LlamaForCausalLM};

type B = Flex;

/// A model with seeded random weights, drawn (lazy weights are realised by a forward pass) while
/// no other test draws from the backend's generator.
fn tiny_model(config: &LlamaConfig) -> LlamaForCausalLM<B> {
    let _rng = crate::lock_backend_rng();
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), 42);
    let model = config.init(&Default::default());
    model.forward(tokens(&[1], 1), &AttentionInputs::causal(1, 1, 0, &Default::default()), None);
    model
}

fn tokens(ids: &[i64], batch: usize) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [batch, ids.len() / batch]), &Default::default())
}

fn max_abs_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn forward_returns_logits_for_every_position() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let inputs = AttentionInputs::causal(2, 5, 0, &Default::default());
    let logits = model.forward(tokens(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 2), &inputs, None);
    assert_eq!(logits.dims(), [2, 5, config.vocab_size]);
    assert!(logits.abs().max().into_scalar().is_finite());
}

#[test]
fn kv_cache_decoding_equals_the_full_forward() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let device = Default::default();
    let ids = [5i64, 17, 3, 88, 41, 9];
    let full = model.forward(tokens(&ids, 1), &AttentionInputs::causal(1, 6, 0, &device), None);
    let mut cache = model.new_cache();
    let first = model.forward(tokens(&ids[..4], 1), &AttentionInputs::causal(1, 4, 0, &device), Some(&mut cache));
    let mut steps = vec![first];
    for (i, &id) in ids[4..].iter().enumerate() {
        let inputs = AttentionInputs::causal(1, 1, 4 + i, &device);
        steps.push(model.forward(tokens(&[id], 1), &inputs, Some(&mut cache)));
    }
    assert_eq!(cache.len(), 6);
    assert!(max_abs_diff(full, Tensor::cat(steps, 1)) < 1e-5);
}

#[test]
fn host_cache_decoding_equals_the_full_forward_with_left_padding_and_gqa() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let device = Default::default();
    // Row 0 holds 7 tokens, row 1 the last 4 of them after 3 padding tokens.
    let ids = [5i64, 17, 3, 88, 41, 9, 60, 0, 0, 0, 88, 41, 9, 60];
    let pads = [0, 3];
    let full = model.forward(tokens(&ids, 2), &AttentionInputs::left_padded(&pads, 7, 0, &device), None);
    let mut cache = crate::KvCache::on_host(model.num_layers(), config.num_key_value_heads, config.head_dim);
    let prompt: Vec<i64> = [&ids[..4], &ids[7..11]].concat();
    let mut steps =
        vec![model.forward(tokens(&prompt, 2), &AttentionInputs::left_padded(&pads, 4, 0, &device), Some(&mut cache))];
    for position in 4..7 {
        let inputs = AttentionInputs::left_padded(&pads, 1, position, &device);
        steps.push(model.forward(tokens(&[ids[position], ids[7 + position]], 2), &inputs, Some(&mut cache)));
    }
    assert!(cache.layers.iter().all(crate::LayerKv::is_on_host));
    assert_eq!(cache.len(), 7);
    let decoded = Tensor::cat(steps, 1);
    // Padding positions' outputs are unused; compare the real ones.
    assert!(max_abs_diff(full.clone().slice([0..1, 0..7]), decoded.clone().slice([0..1, 0..7])) < 1e-5);
    assert!(max_abs_diff(full.slice([1..2, 3..7]), decoded.slice([1..2, 3..7])) < 1e-5);
}

#[test]
fn left_padding_does_not_change_a_rows_logits() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let device = Default::default();
    let alone = model.forward(tokens(&[7, 8, 9], 1), &AttentionInputs::causal(1, 3, 0, &device), None);
    let padded = model.forward(tokens(&[0, 0, 7, 8, 9], 1), &AttentionInputs::left_padded(&[2], 5, 0, &device), None);
    assert!(max_abs_diff(alone, padded.slice([0..1, 2..5, 0..config.vocab_size])) < 1e-5);
}

#[test]
fn packed_rows_equal_separate_sequences() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let device = Default::default();
    let a = model.forward(tokens(&[7, 8, 9], 1), &AttentionInputs::causal(1, 3, 0, &device), None);
    let b = model.forward(tokens(&[4, 5], 1), &AttentionInputs::causal(1, 2, 0, &device), None);
    let packed = model.forward(tokens(&[7, 8, 9, 4, 5], 1), &AttentionInputs::packed(&[vec![3, 2]], 5, &device), None);
    assert!(max_abs_diff(Tensor::cat(vec![a, b], 1), packed) < 1e-5);
}

#[test]
fn batched_greedy_generation_equals_single_runs() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let prompts: Vec<Vec<u32>> =
        (0..16).map(|i| (0..(1 + i % 5)).map(|j| (i * 7 + j * 3) as u32 % 97).collect()).collect();
    let settings = GenerationConfig { max_new_tokens: 8, ..Default::default() };
    let batched = generate(&model, &prompts, &settings, |_, _| false).unwrap();
    for (prompt, together) in prompts.iter().zip(&batched) {
        let alone = generate(&model, std::slice::from_ref(prompt), &settings, |_, _| false).unwrap();
        assert_eq!(alone[0], *together, "prompt {prompt:?}");
    }
}

#[test]
fn prompts_sharing_a_prefix_fill_it_once_and_decode_as_they_would_alone() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let prefix: Vec<u32> = (0..12).map(|j| (j * 5 + 3) % 97).collect();
    let mut prompts: Vec<Vec<u32>> = (0..7)
        .map(|i| [prefix.clone(), (0..(1 + i % 4)).map(|j| (i * 7 + j * 3) as u32 % 97).collect()].concat())
        .collect();
    prompts.push(prompts[2].clone());
    prompts.push(prefix[..9].to_vec());
    assert_batch_with_eos_equals_single_runs(&model, &prompts, [1, 2]);
}

#[test]
fn a_row_after_a_shared_prefix_and_padding_has_the_logits_it_has_alone() {
    let device = Default::default();
    let model = tiny_model(&LlamaConfig::tiny());
    let prefix = [4, 8, 15, 16];
    let alone = model.forward(tokens(&[4, 8, 15, 16, 23, 42], 1), &AttentionInputs::causal(1, 6, 0, &device), None);
    let mut cache = model.new_cache();
    model.forward(tokens(&prefix, 1), &AttentionInputs::causal(1, 4, 0, &device), Some(&mut cache));
    cache.retain_rows(&[0, 0], &device);
    // Row 0 continues with two tokens; row 1 with one, after one padding position.
    let inputs = AttentionInputs::padded_after(&[4, 4], &[0, 1], 2, 4, &device);
    let both = model.forward(tokens(&[23, 42, 0, 23], 2), &inputs, Some(&mut cache));
    let vocab = both.dims()[2];
    let after = |t: Tensor<B, 3>, row, range: std::ops::Range<usize>| t.slice([row..row + 1, range, 0..vocab]);
    assert!(max_abs_diff(after(alone.clone(), 0, 4..6), after(both.clone(), 0, 0..2)) < 1e-5);
    assert!(max_abs_diff(after(alone, 0, 4..5), after(both, 1, 1..2)) < 1e-5);
}

#[test]
fn rows_leaving_the_batch_at_eos_do_not_change_the_others() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let prompts: Vec<Vec<u32>> =
        (0..6).map(|i| (0..(2 + i % 3)).map(|j| (i * 11 + j * 5) as u32 % 97).collect()).collect();
    assert_batch_with_eos_equals_single_runs(&model, &prompts, [0, 1]);
}

/// Generates 8 tokens for `prompts` in one batch, with an EOS id (the free run's token at
/// `[row, index]`) that ends some rows early and leaves others running, and checks each row
/// against the prompt generated alone.
fn assert_batch_with_eos_equals_single_runs(
    model: &LlamaForCausalLM<B>,
    prompts: &[Vec<u32>],
    [row, index]: [usize; 2],
) {
    let free =
        generate(model, prompts, &GenerationConfig { max_new_tokens: 8, ..Default::default() }, |_, _| false).unwrap();
    let eos = free[row].ids[index];
    let settings = GenerationConfig { max_new_tokens: 8, eos_token_ids: vec![eos], ..Default::default() };
    let batched = generate(model, prompts, &settings, |_, _| false).unwrap();
    assert!(batched.iter().any(|g| g.ids.len() < 8) && batched.iter().any(|g| g.ids.len() == 8));
    for (prompt, together) in prompts.iter().zip(&batched) {
        let alone = generate(model, std::slice::from_ref(prompt), &settings, |_, _| false).unwrap();
        assert_eq!(alone[0], *together, "prompt {prompt:?}");
    }
}

#[test]
fn rows_with_their_own_settings_decode_as_they_would_alone() {
    use crate::generate::{generate_each, RowRequest};
    use crate::sampling::SamplingConfig;
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let rows: Vec<RowRequest> = (0..5)
        .map(|i| RowRequest {
            prompt: (0..(2 + i % 3)).map(|j| (i * 13 + j * 7) as u32 % 97).collect(),
            max_new_tokens: 3 + i,
            sampling: SamplingConfig { temperature: (i % 2) as f32, seed: i as u64, ..SamplingConfig::default() },
        })
        .collect();
    let mut raw_logits = vec![Vec::new(); rows.len()];
    let together = generate_each(&model, &rows, &[], None, |row, token, logits| {
        raw_logits[row].push((token, logits.len()));
        false
    })
    .unwrap();
    for (i, (row, generation)) in rows.iter().zip(&together).enumerate() {
        assert_eq!(generation.ids.len(), row.max_new_tokens, "row {i}");
        let alone = generate_each(&model, std::slice::from_ref(row), &[], None, |_, _, _| false).unwrap();
        assert_eq!(alone[0], *generation, "row {i}");
        assert!(raw_logits[i].iter().all(|&(_, vocab)| vocab == config.vocab_size));
    }
}

#[test]
fn rows_sharing_a_prompt_share_its_prefill_and_decode_as_they_would_alone() {
    use crate::generate::{generate_each, RowRequest};
    use crate::sampling::SamplingConfig;
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let prompts: [Vec<u32>; 2] = [vec![5, 9, 14], vec![21, 3]];
    let row = |prompt: usize, max_new_tokens: usize, temperature: f32, seed: u64| RowRequest {
        prompt: prompts[prompt].clone(),
        max_new_tokens,
        sampling: SamplingConfig { temperature, seed, ..SamplingConfig::default() },
    };
    // Duplicates before and after another prompt, one finishing early, sampled and greedy.
    let rows = [row(0, 6, 1.0, 0), row(1, 6, 0.0, 0), row(0, 6, 1.0, 1), row(0, 2, 0.0, 0), row(1, 6, 1.0, 3)];
    let together = generate_each(&model, &rows, &[], None, |_, _, _| false).unwrap();
    assert_ne!(together[0], together[2], "different seeds draw different continuations");
    for (i, (row, generation)) in rows.iter().zip(&together).enumerate() {
        let alone = generate_each(&model, std::slice::from_ref(row), &[], None, |_, _, _| false).unwrap();
        assert_eq!(alone[0], *generation, "row {i}");
    }
}

#[test]
fn generation_stops_at_eos_and_when_the_observer_asks() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let prompt = vec![vec![1u32, 2, 3]];
    let free =
        generate(&model, &prompt, &GenerationConfig { max_new_tokens: 6, ..Default::default() }, |_, _| false).unwrap();
    let eos = free[0].ids[2];
    let settings = GenerationConfig { max_new_tokens: 6, eos_token_ids: vec![eos], ..Default::default() };
    let stopped = generate(&model, &prompt, &settings, |_, _| false).unwrap();
    let first_eos = free[0].ids.iter().position(|&t| t == eos).unwrap();
    assert_eq!(stopped[0].ids, free[0].ids[..=first_eos]);
    assert_eq!(stopped[0].finish, crate::generate::FinishReason::Eos);
    let mut seen = 0;
    let observed = generate(&model, &prompt, &GenerationConfig { max_new_tokens: 6, ..Default::default() }, |_, _| {
        seen += 1;
        seen == 2
    })
    .unwrap();
    assert_eq!(observed[0].ids.len(), 2);
}

#[test]
fn over_long_and_empty_prompts_and_token_limits_that_would_overflow_are_errors() {
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let long = vec![vec![1u32; 120]];
    let err = generate(&model, &long, &GenerationConfig { max_new_tokens: 20, ..Default::default() }, |_, _| false);
    assert!(err.unwrap_err().to_string().contains("exceeds the model's 128 positions"));
    let huge = GenerationConfig { max_new_tokens: usize::MAX, ..Default::default() };
    let err = generate(&model, &[vec![1, 2]], &huge, |_, _| false).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("prompt 0: prompt of 2 tokens + {} new tokens exceeds the model's 128 positions", usize::MAX)
    );
    let err = generate(&model, &[vec![1], vec![]], &GenerationConfig::default(), |_, _| false);
    assert_eq!(err.unwrap_err().to_string(), "prompt 1: the prompt is empty");
}

fn save_and_reload(config: &LlamaConfig) -> (LlamaForCausalLM<B>, LlamaForCausalLM<B>, tempfile::TempDir) {
    let model = tiny_model(config);
    let dir = tempfile::tempdir().unwrap();
    save_model(&model, config, dir.path(), &SaveOptions::default()).unwrap();
    let (loaded_config, loaded) = load_model::<B>(dir.path(), &Default::default()).unwrap();
    assert_eq!(&loaded_config, config);
    (model, loaded, dir)
}

/// Parameters are equal bit for bit when their saved checkpoints are byte-identical.
fn assert_same_parameters(a: &LlamaForCausalLM<B>, b: &LlamaForCausalLM<B>, config: &LlamaConfig) {
    let saved = |m: &LlamaForCausalLM<B>| {
        let dir = tempfile::tempdir().unwrap();
        save_model(m, config, dir.path(), &SaveOptions::default()).unwrap();
        std::fs::read(dir.path().join("model.safetensors")).unwrap()
    };
    assert!(saved(a) == saved(b), "parameters differ after the round trip");
}

#[test]
fn save_then_load_round_trips_bit_for_bit_with_tied_embeddings() {
    let config = LlamaConfig::tiny().with_tie_word_embeddings(true);
    let (model, loaded, dir) = save_and_reload(&config);
    let files = crate::checkpoint::SafetensorsFiles::open(dir.path()).unwrap();
    assert!(!files.keys().any(|k| k == "lm_head.weight"));
    assert!(files.keys().any(|k| k == "model.layers.1.self_attn.q_proj.weight"));
    assert_same_parameters(&model, &loaded, &config);
}

#[test]
fn untied_gqa_model_with_qkv_bias_round_trips_and_keeps_its_logits() {
    let config = LlamaConfig { num_key_value_heads: 1, ..LlamaConfig::tiny() }.with_qkv_bias(true);
    let (model, loaded, dir) = save_and_reload(&config);
    let files = crate::checkpoint::SafetensorsFiles::open(dir.path()).unwrap();
    assert!(files.keys().any(|k| k == "lm_head.weight"));
    assert!(files.keys().any(|k| k == "model.layers.0.self_attn.k_proj.bias"));
    assert_eq!(files.read_f32("model.layers.0.self_attn.k_proj.weight", &[8, 32]).unwrap().len(), 256);
    assert_same_parameters(&model, &loaded, &config);
    let inputs = AttentionInputs::causal(1, 4, 0, &Default::default());
    let ids = tokens(&[3, 1, 4, 1], 1);
    assert_eq!(max_abs_diff(model.forward(ids.clone(), &inputs, None), loaded.forward(ids, &inputs, None)), 0.0);
}

#[test]
fn gqa_equals_multi_head_attention_with_repeated_kv_heads() {
    use burn::module::Param;
    // A GQA model (2 kv heads for 4 query heads) must equal an MHA model whose k/v projections
    // repeat each kv head for the two query heads that share it.
    let gqa_config = LlamaConfig { num_hidden_layers: 1, ..LlamaConfig::tiny() };
    let gqa = tiny_model(&gqa_config);
    let inputs = AttentionInputs::causal(1, 5, 0, &Default::default());
    let ids = tokens(&[9, 8, 7, 6, 5], 1);
    // Run first: parameters are lazy, and a clone of an unrealised one would draw new values.
    let expected = gqa.forward(ids.clone(), &inputs, None);
    let mut mha = gqa.clone();
    let repeat = |w: Tensor<B, 2>| {
        // [d_in, kv*hd] -> [d_in, kv, 1, hd] -> repeat group -> [d_in, heads*hd]
        let [d_in, _] = w.dims();
        w.reshape([d_in, 2, 1, 8]).repeat_dim(2, 2).reshape([d_in, 32])
    };
    let attn = &mut mha.model.layers[0].self_attn;
    attn.k_proj.weight = Param::from_tensor(repeat(attn.k_proj.weight.val()));
    attn.v_proj.weight = Param::from_tensor(repeat(attn.v_proj.weight.val()));
    attn.num_kv_heads = 4;
    assert!(max_abs_diff(expected, mha.forward(ids, &inputs, None)) < 1e-5);
}

#[test]
fn sharded_and_half_precision_checkpoints_load_back() {
    use crate::checkpoint::SaveDtype;
    let config = LlamaConfig::tiny();
    let model = tiny_model(&config);
    let dir = tempfile::tempdir().unwrap();
    let options = SaveOptions { max_shard_bytes: 20_000, ..SaveOptions::default() };
    save_model(&model, &config, dir.path(), &options).unwrap();
    assert!(dir.path().join("model.safetensors.index.json").is_file());
    let shards = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().starts_with("model-"))
        .count();
    assert!(shards > 1, "{shards} shard files");
    let (_, sharded) = load_model::<B>(dir.path(), &Default::default()).unwrap();
    assert_same_parameters(&model, &sharded, &config);

    let half = tempfile::tempdir().unwrap();
    save_model(&model, &config, half.path(), &SaveOptions { dtype: SaveDtype::BF16, ..SaveOptions::default() })
        .unwrap();
    let (_, loaded) = load_model::<B>(half.path(), &Default::default()).unwrap();
    let inputs = AttentionInputs::causal(1, 3, 0, &Default::default());
    let ids = tokens(&[1, 2, 3], 1);
    let diff = max_abs_diff(model.forward(ids.clone(), &inputs, None), loaded.forward(ids, &inputs, None));
    assert!(diff > 0.0 && diff < 1e-2, "bf16 weights change logits a little: {diff}");
}

#[test]
fn a_tensor_of_an_unsupported_dtype_is_named() {
    let config = LlamaConfig::tiny();
    let dir = tempfile::tempdir().unwrap();
    save_model(&tiny_model(&config), &config, dir.path(), &SaveOptions::default()).unwrap();
    // Rewrite the checkpoint with the norm weight stored as int32.
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = vec![0u8; 32 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().filter(|(name, _)| name != "model.norm.weight").collect();
    views.push((
        "model.norm.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![32], &ints).unwrap(),
    ));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let err = load_model::<B>(dir.path(), &Default::default()).unwrap_err().to_string();
    assert!(err.ends_with("model.safetensors: tensor `model.norm.weight` has unsupported dtype I32"), "{err}");
}
