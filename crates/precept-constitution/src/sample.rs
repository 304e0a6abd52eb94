//! Reproducible choices: a small seeded generator and weighted sampling of principles.
//!
//! Each choice is seeded by `(run seed, prompt id, round)`, so the principle a prompt gets does not
//! depend on batch size, prompt order or whether the run was resumed.

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast and fully specified, so a seed gives the
/// same sequence on every platform and every version of this crate.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for one `(seed, key, round)` choice.
    pub fn for_choice(seed: u64, key: &str, round: usize) -> Self {
        // FNV-1a over the key, then mixed with the seed and the round.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in key.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut mixer = Self::new(seed ^ hash.rotate_left(17) ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Index `i` with probability `weights[i] / Σ weights`; `None` when `weights` is empty or sums to
/// no positive number.
pub fn sample_weighted(weights: &[f64], rng: &mut SplitMix64) -> Option<usize> {
    let total: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let mut target = rng.next_f64() * total;
    for (i, &w) in weights.iter().enumerate() {
        if !(w.is_finite() && w > 0.0) {
            continue;
        }
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    // Rounding can leave `target` a hair above the last weight: that is the last positive one.
    weights.iter().rposition(|w| w.is_finite() && *w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values of SplitMix64 from its published C code, seed 1234567:
    //   x = 1234567; for i in range(3):
    //       x = (x + 0x9e3779b97f4a7c15) & M; z = x
    //       z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    //       z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    //       print(z ^ (z >> 31))          # M = 2**64 - 1
    #[test]
    fn splitmix_matches_the_reference_sequence() {
        let mut rng = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(got, [6457827717110365317, 3203168211198807973, 9817491932198370423]);
    }

    #[test]
    fn sampling_is_reproducible_by_seed_and_independent_of_order() {
        let weights = [1.0, 2.0, 3.0];
        let pick = |seed, key: &str, round| sample_weighted(&weights, &mut SplitMix64::for_choice(seed, key, round));
        let first: Vec<_> = (0..50).map(|i| pick(7, &format!("p{i}"), 0)).collect();
        let again: Vec<_> = (0..50).rev().map(|i| pick(7, &format!("p{i}"), 0)).rev().collect();
        assert_eq!(first, again);
        let other_seed: Vec<_> = (0..50).map(|i| pick(8, &format!("p{i}"), 0)).collect();
        assert_ne!(first, other_seed);
        let other_round: Vec<_> = (0..50).map(|i| pick(7, &format!("p{i}"), 1)).collect();
        assert_ne!(first, other_round);
    }

    #[test]
    fn sampling_follows_the_weights() {
        let weights = [1.0, 0.0, 3.0];
        let mut counts = [0usize; 3];
        let mut rng = SplitMix64::new(42);
        for _ in 0..40_000 {
            counts[sample_weighted(&weights, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        // Binomial standard deviation is 0.0022; allow five of them.
        assert!((share - 0.75).abs() < 0.011, "{counts:?}");
        assert_eq!(sample_weighted(&[], &mut rng), None);
        assert_eq!(sample_weighted(&[0.0], &mut rng), None);
    }
}
