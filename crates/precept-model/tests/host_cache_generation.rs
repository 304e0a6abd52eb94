//! Generation with the KV cache in host memory (as the CLI runs on the CPU) gives the tokens of a
//! plain greedy loop over full forward passes, for a batch with prompts of different lengths,
//! repeated prompts (a shared prefill), prompts with a common prefix (filled once) and rows that
//! stop early; and so does a call whose prompts continue the previous call's rows, started from
//! their kept caches.

#![allow(clippy::unwrap_used)] // test code: a failure should stop the test

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use precept_model::generate::{generate, generate_continuing, generate_each, GenerationConfig, RowRequest};
use precept_model::sampling::SamplingConfig;
use precept_model::{AttentionInputs, ContinuationCache, LlamaConfig, LlamaForCausalLM};

type B = Flex;

/// Greedy continuation by recomputing the whole sequence at every step, without a cache.
fn greedy_without_cache(model: &LlamaForCausalLM<B>, prompt: &[u32], new_tokens: usize, eos: u32) -> Vec<u32> {
    let device = Default::default();
    let mut ids: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
    let mut out = Vec::new();
    while out.len() < new_tokens {
        let len = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.clone(), [1, len]), &device);
        let logits = model.forward(tokens, &AttentionInputs::causal(1, len, 0, &device), None);
        let last: Vec<f32> = logits.slice([0..1, len - 1..len]).into_data().to_vec().unwrap();
        let next = (0..last.len()).fold(0, |best, i| if last[i] > last[best] { i } else { best }) as u32;
        out.push(next);
        if next == eos {
            break;
        }
        ids.push(next as i64);
    }
    out
}

#[test]
fn host_cache_generation_equals_greedy_full_forward_passes() {
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), 7);
    let model: LlamaForCausalLM<B> = LlamaConfig::tiny().init(&Default::default());
    assert!(model.new_cache().layers.iter().all(precept_model::LayerKv::is_on_host));
    let mut prompts: Vec<Vec<u32>> =
        (0..9).map(|i| (0..(1 + i % 5)).map(|j| (i * 7 + j * 3) as u32 % 97).collect()).collect();
    prompts.push(prompts[3].clone());
    prompts.push(prompts[3].clone());
    assert_same_as_greedy_full_forward_passes(&model, &prompts);
    // A common prefix, filled once for every row.
    let prefix: Vec<u32> = (0..11).map(|j| (j * 5 + 2) % 97).collect();
    let prefixed: Vec<Vec<u32>> = prompts.iter().map(|p| [prefix.as_slice(), p].concat()).collect();
    assert_same_as_greedy_full_forward_passes(&model, &prefixed);
}

#[test]
fn a_call_continuing_the_last_calls_rows_starts_from_their_caches_and_gives_the_same_tokens() {
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), 11);
    let model: LlamaForCausalLM<B> = LlamaConfig::tiny().init(&Default::default());
    let prompts: Vec<Vec<u32>> =
        (0..5).map(|i| (0..(9 + 3 * i)).map(|j| ((i * 7 + j * 3) % 97) as u32).collect()).collect();
    let free = generate(&model, &prompts, &GenerationConfig { max_new_tokens: 10, ..Default::default() }, |_, _| false)
        .unwrap();
    let eos = free[1].ids[2];
    let config = GenerationConfig { max_new_tokens: 10, eos_token_ids: vec![eos], ..Default::default() };
    let mut continuation = ContinuationCache::default();
    let first = generate_continuing(&model, &prompts, &config, &mut continuation, |_, _| false).unwrap();
    assert_eq!(continuation.last_reused(), 0, "nothing was kept before the first call");
    assert!(first.iter().any(|g| g.ids.len() < 10), "a row stopped early");
    // Each conversation with its reply and a new turn of its own length; one that leaves its
    // reply after two tokens; one the last call never saw.
    let turn = |i: usize| (0..(1 + i)).map(|j| ((50 + i * 5 + j) % 97) as u32).collect::<Vec<u32>>();
    let mut next: Vec<Vec<u32>> =
        prompts.iter().zip(&first).enumerate().map(|(i, (p, g))| [p.as_slice(), &g.ids, &turn(i)].concat()).collect();
    let longest = (0..first.len()).max_by_key(|&i| first[i].ids.len()).unwrap();
    assert!(first[longest].ids.len() > 2, "a reply longer than two tokens");
    next[longest] = [prompts[longest].as_slice(), &first[longest].ids[..2], &[96]].concat();
    next.push((0..12).map(|j| ((j * 13 + 1) % 97) as u32).collect());
    let second = generate_continuing(&model, &next, &config, &mut continuation, |_, _| false).unwrap();
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    assert!(continuation.last_reused() >= prompt_tokens, "{} tokens reused", continuation.last_reused());
    for (prompt, generation) in next.iter().zip(&second) {
        assert_eq!(generation.ids, greedy_without_cache(&model, prompt, 10, eos), "prompt {prompt:?}");
    }
    // A server's rows, each with its own settings, continue two of those conversations.
    let rows: Vec<RowRequest> = (0..2)
        .map(|i| RowRequest {
            prompt: [next[i].as_slice(), &second[i].ids, &turn(i + 2)].concat(),
            max_new_tokens: 10,
            sampling: SamplingConfig::default(),
        })
        .collect();
    let third = generate_each(&model, &rows, &[eos], Some(&mut continuation), |_, _, _| false).unwrap();
    assert!(continuation.last_reused() >= next[0].len() + next[1].len(), "{}", continuation.last_reused());
    for (row, generation) in rows.iter().zip(&third) {
        assert_eq!(generation.ids, greedy_without_cache(&model, &row.prompt, 10, eos), "prompt {:?}", row.prompt);
    }
}

/// Checks batched generation, with an EOS id that stops some rows early, against
/// [`greedy_without_cache`] for each prompt.
fn assert_same_as_greedy_full_forward_passes(model: &LlamaForCausalLM<B>, prompts: &[Vec<u32>]) {
    let free =
        generate(model, prompts, &GenerationConfig { max_new_tokens: 10, ..Default::default() }, |_, _| false).unwrap();
    // An EOS id that ends some rows early and leaves others running.
    let eos = free[1].ids[2];
    let settings = GenerationConfig { max_new_tokens: 10, eos_token_ids: vec![eos], ..Default::default() };
    let batched = generate(model, prompts, &settings, |_, _| false).unwrap();
    assert!(batched.iter().any(|g| g.ids.len() < 10) && batched.iter().any(|g| g.ids.len() == 10));
    for (prompt, generation) in prompts.iter().zip(&batched) {
        assert_eq!(generation.ids, greedy_without_cache(model, prompt, 10, eos), "prompt {prompt:?}");
    }
}
