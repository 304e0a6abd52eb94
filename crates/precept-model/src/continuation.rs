//! [`ContinuationCache`]: the KV caches of recent generation calls' rows, kept for later calls,
//! whose prompts often continue those conversations or share their start.
//!
//! The constitution loop asks for a revision with the critique conversation plus the critique
//! and one more user turn, and begins every critique conversation with the same system message
//! and examples; a chat client sends the whole conversation again with each message. Such a
//! prompt begins with tokens whose keys and values an earlier call already computed, so its
//! prefill can start where they end. Only caches in host memory are kept (the CPU's).

use crate::kv_cache::{KvCache, RowKv};

/// Fewest tokens worth taking from a kept row rather than prefilling.
const MIN_REUSED: usize = 8;

/// Most bytes of keys and values kept by default (about 45 rows of 1000 positions of
/// SmolLM2-135M, 46 KB a position).
const DEFAULT_MAX_BYTES: usize = 2 << 30;

/// The rows of recent generation calls of one model: the tokens each row's cache covers (its
/// prompt and reply but the last token) and that cache. Beyond a byte limit the oldest rows go
/// first; a row whose tokens another kept row continues is dropped as that one is kept.
#[derive(Debug)]
pub struct ContinuationCache {
    rows: Vec<KeptRow>,
    max_bytes: usize,
    reused: usize,
}

#[derive(Debug)]
struct KeptRow {
    tokens: Vec<u32>,
    cache: RowKv,
}

/// What a call's row takes from the continuation cache: the kept row and how many tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reuse {
    pub row: usize,
    pub tokens: usize,
}

impl Default for ContinuationCache {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

impl ContinuationCache {
    /// An empty cache that keeps at most `max_bytes` of keys and values.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self { rows: Vec::new(), max_bytes, reused: 0 }
    }

    /// Prompt tokens of the last call taken from kept rows instead of being prefilled.
    pub fn last_reused(&self) -> usize {
        self.reused
    }

    /// The kept row that shares the longest start with `prompt`, and how many tokens of it to
    /// take: at most all but the prompt's last token (whose logits choose the first new token),
    /// and none below [`MIN_REUSED`].
    pub(crate) fn longest_match(&self, prompt: &[u32]) -> Option<Reuse> {
        let most = prompt.len().saturating_sub(1);
        self.rows
            .iter()
            .enumerate()
            .map(|(row, kept)| Reuse {
                row,
                tokens: kept.tokens.iter().zip(prompt).take(most).take_while(|(a, b)| a == b).count(),
            })
            .max_by_key(|reuse| reuse.tokens)
            .filter(|reuse| reuse.tokens >= MIN_REUSED)
    }

    /// Seeds the host `cache` with `len` positions whose rows begin with their matches' tokens
    /// (rows without a match begin empty), and records how many tokens that saves.
    pub(crate) fn seed<B: burn::tensor::backend::Backend>(
        &mut self,
        cache: &mut KvCache<B>,
        matches: &[Option<Reuse>],
        len: usize,
    ) {
        let any = matches.iter().flatten().next().map_or(0, |reuse| reuse.row);
        let rows: Vec<(&RowKv, usize)> = matches
            .iter()
            .map(|reuse| reuse.map_or((&self.rows[any].cache, 0), |r| (&self.rows[r.row].cache, r.tokens)))
            .collect();
        cache.seed_host_rows(&rows, len);
        self.reused = matches.iter().flatten().map(|reuse| reuse.tokens).sum();
    }

    /// Starts a call: nothing taken from the kept rows yet.
    pub(crate) fn begin_call(&mut self) {
        self.reused = 0;
    }

    /// Keeps a finished row: the tokens its cache covers and the cache. Rows it continues are
    /// dropped, then the oldest rows while the kept bytes exceed the limit.
    pub(crate) fn keep(&mut self, tokens: Vec<u32>, cache: RowKv) {
        self.rows.retain(|kept| !tokens.starts_with(&kept.tokens));
        self.rows.push(KeptRow { tokens, cache });
        let mut bytes: usize = self.rows.iter().map(|kept| kept.cache.bytes()).sum();
        let mut dropped = 0;
        while bytes > self.max_bytes {
            bytes -= self.rows[dropped].cache.bytes();
            dropped += 1;
        }
        self.rows.drain(..dropped);
    }

    /// Whether any rows are kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    /// A row of `len` positions of a two-layer host cache.
    fn row(len: usize) -> RowKv {
        let mut cache = KvCache::<Flex>::on_host(2, 1, 4);
        for layer in &mut cache.layers {
            let host = layer.host_mut().expect("a host cache");
            host.append(&vec![1.0; len * 4], &vec![2.0; len * 4], [1, len]);
        }
        cache.host_row(0, 0..0).expect("a host cache")
    }

    #[test]
    fn a_match_leaves_the_prompt_its_last_token_and_short_overlaps_are_not_taken() {
        let mut continuation = ContinuationCache::default();
        let tokens: Vec<u32> = (0..20).collect();
        continuation.keep((100..120).collect(), row(20));
        continuation.keep(tokens.clone(), row(20));
        assert_eq!(continuation.longest_match(&tokens[..12]), Some(Reuse { row: 1, tokens: 11 }));
        let diverging = [&tokens[..15], &[99, 100]].concat();
        assert_eq!(continuation.longest_match(&diverging), Some(Reuse { row: 1, tokens: 15 }));
        let short = [&tokens[..7], &[99]].concat();
        assert_eq!(continuation.longest_match(&short), None, "7 tokens are not worth taking");
    }

    #[test]
    fn the_oldest_rows_go_beyond_the_byte_limit_and_a_continued_row_is_replaced() {
        let one = row(10).bytes();
        assert_eq!(one, 2 * 2 * 10 * 4 * 4, "two layers of keys and values, 10 positions of 4 floats");
        let mut continuation = ContinuationCache::with_max_bytes(2 * one);
        for i in 0..3u32 {
            continuation.keep(vec![i; 10], row(10));
        }
        let kept: Vec<u32> = continuation.rows.iter().map(|kept| kept.tokens[0]).collect();
        assert_eq!(kept, [1, 2], "the oldest row went");
        continuation.keep(vec![2; 12], row(10));
        let kept: Vec<&[u32]> = continuation.rows.iter().map(|kept| kept.tokens.as_slice()).collect();
        assert_eq!(kept, [&[1; 10][..], &[2; 12][..]], "the continued row was replaced");
    }
}
