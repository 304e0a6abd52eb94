//! Dequantisation of ggml tensor data to `f32`: floats and the 32-element "legacy" quants.
//!
//! Each `*_block` function mirrors ggml's reference `dequantize_row_*` in `ggml-quants.c` for one
//! block, operation for operation (same products, same order), so the results are bit-identical
//! to llama.cpp's and gguf-py's. The 256-element k-quants live in [`crate::kquants`].

use half::{bf16, f16};

use crate::ggml_type::GgmlType;
use crate::kquants;

/// Decodes `bytes` of type `ty` into `out`, one `f32` per element.
///
/// # Panics
///
/// If `ty` is not [`GgmlType::is_supported`] or `bytes.len()` is not the size of `out.len()`
/// elements of `ty`. [`GgufFile::tensor_f32`](crate::GgufFile::tensor_f32) checks both and
/// returns an error instead.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    assert!(ty.is_supported(), "dequantize: ggml type {ty} is not supported");
    assert!(
        out.len().is_multiple_of(ty.block_len()) && bytes.len() == out.len() / ty.block_len() * ty.block_bytes(),
        "dequantize: {} bytes of {ty} do not hold {} elements",
        bytes.len(),
        out.len()
    );
    let block_fn: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => f32_block,
        GgmlType::F16 => f16_block,
        GgmlType::Bf16 => bf16_block,
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_0 => q4_0_block,
        GgmlType::Q4_1 => q4_1_block,
        GgmlType::Q5_0 => q5_0_block,
        GgmlType::Q5_1 => q5_1_block,
        GgmlType::Q4K => kquants::q4_k_block,
        GgmlType::Q5K => kquants::q5_k_block,
        GgmlType::Q6K => kquants::q6_k_block,
        _ => unreachable!("checked by is_supported above"),
    };
    for (block, y) in bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(ty.block_len())) {
        block_fn(block, y);
    }
}

/// The little-endian IEEE half at `bytes[at..at + 2]`, widened exactly (`GGML_FP16_TO_FP32`).
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

fn f32_block(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

fn f16_block(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

fn bf16_block(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// `block_q8_0 { ggml_half d; int8_t qs[32]; }`: `y = qs * d`.
fn q8_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = f32::from(q as i8) * d;
    }
}

/// `block_q4_0 { ggml_half d; uint8_t qs[16]; }`: low nibbles are elements 0..16, high nibbles
/// 16..32, both offset by 8.
fn q4_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// `block_q4_1 { ggml_half d, m; uint8_t qs[16]; }`: `y = q * d + m`.
fn q4_1_block(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + 16] = f32::from(q >> 4) * d + m;
    }
}

/// The 5-bit quants of a Q5_0/Q5_1 block: nibble `j` plus bit `j` (low half) or `j + 16` (high
/// half) of `qh` as the fifth bit.
fn q5_values(qs: &[u8], qh: u32) -> [i32; 32] {
    let mut v = [0; 32];
    for (j, &q) in qs.iter().enumerate() {
        let xh_0 = ((qh >> j) << 4) & 0x10;
        let xh_1 = (qh >> (j + 12)) & 0x10;
        v[j] = (u32::from(q & 0x0F) | xh_0) as i32;
        v[j + 16] = (u32::from(q >> 4) | xh_1) as i32;
    }
    v
}

/// `block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }`: `y = (q - 16) * d`.
fn q5_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (y, q) in y.iter_mut().zip(q5_values(&b[6..22], qh)) {
        *y = (q - 16) as f32 * d;
    }
}

/// `block_q5_1 { ggml_half d, m; uint8_t qh[4]; uint8_t qs[16]; }`: `y = q * d + m`.
fn q5_1_block(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (y, q) in y.iter_mut().zip(q5_values(&b[8..24], qh)) {
        *y = q as f32 * d + m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // f16 bit patterns used to build blocks by hand.
    const HALF: u16 = 0x3800; // 0.5
    const ONE: u16 = 0x3C00; // 1.0
    const TWO: u16 = 0x4000; // 2.0
    const MINUS_ONE: u16 = 0xBC00; // -1.0

    fn run(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![f32::NAN; bytes.len() / ty.block_bytes() * ty.block_len()];
        dequantize(ty, bytes, &mut out);
        out
    }

    /// A block: the given halves, then the given bytes.
    fn block(halves: &[u16], rest: &[u8]) -> Vec<u8> {
        halves.iter().flat_map(|h| h.to_le_bytes()).chain(rest.iter().copied()).collect()
    }

    #[test]
    fn plain_floats_decode_exactly() {
        let f32s: Vec<u8> = [1.5f32, -0.25, 3e-8].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(run(GgmlType::F32, &f32s), [1.5, -0.25, 3e-8]);
        // 1.0, -2.0, 0.5, 65504 (largest half), 2^-24 (smallest subnormal half).
        let f16s = block(&[0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001], &[]);
        assert_eq!(run(GgmlType::F16, &f16s), [1.0, -2.0, 0.5, 65504.0, 5.960_464_5e-8]);
        // bf16 is the top half of an f32: 1.0, -2.0, 0.15625.
        let bf16s = block(&[0x3F80, 0xC000, 0x3E20], &[]);
        assert_eq!(run(GgmlType::Bf16, &bf16s), [1.0, -2.0, 0.15625]);
    }

    #[test]
    fn q8_0_multiplies_signed_bytes_by_the_scale() {
        // d = 0.5, qs[j] = j - 16 (so -16..=15), so y[j] = (j - 16) / 2.
        let qs: Vec<u8> = (0..32).map(|j| (j as i8 - 16) as u8).collect();
        let y = run(GgmlType::Q8_0, &block(&[HALF], &qs));
        assert_eq!(&y[..3], [-8.0, -7.5, -7.0]);
        assert_eq!(y[31], 7.5);
        assert_eq!(y, (0..32).map(|j| (j - 16) as f32 * 0.5).collect::<Vec<_>>());
        // Extremes: -128 and 127 with d = 2.
        let mut qs = vec![0u8; 32];
        (qs[0], qs[1]) = (0x80, 0x7F);
        assert_eq!(&run(GgmlType::Q8_0, &block(&[TWO], &qs))[..2], [-256.0, 254.0]);
    }

    #[test]
    fn q4_0_puts_low_nibbles_first_and_centres_on_eight() {
        // d = 2, qs[j] = j | (15 - j) << 4: y[j] = (j - 8) * 2, y[16 + j] = (7 - j) * 2.
        let qs: Vec<u8> = (0..16u8).map(|j| j | (15 - j) << 4).collect();
        let y = run(GgmlType::Q4_0, &block(&[TWO], &qs));
        assert_eq!(&y[..2], [-16.0, -14.0]);
        assert_eq!(&y[15..17], [14.0, 14.0]);
        assert_eq!(y[31], -16.0);
        for j in 0..16 {
            assert_eq!((y[j], y[16 + j]), ((j as f32 - 8.0) * 2.0, (7.0 - j as f32) * 2.0));
        }
    }

    #[test]
    fn q4_1_scales_and_adds_the_minimum() {
        // d = 0.5, m = -1, qs[j] = j | (15 - j) << 4: y[j] = j/2 - 1, y[16 + j] = (15 - j)/2 - 1.
        let qs: Vec<u8> = (0..16u8).map(|j| j | (15 - j) << 4).collect();
        let y = run(GgmlType::Q4_1, &block(&[HALF, MINUS_ONE], &qs));
        assert_eq!(&y[..3], [-1.0, -0.5, 0.0]);
        assert_eq!((y[15], y[16], y[31]), (6.5, 6.5, -1.0));
        for j in 0..16 {
            assert_eq!((y[j], y[16 + j]), (j as f32 * 0.5 - 1.0, (15 - j) as f32 * 0.5 - 1.0));
        }
    }

    #[test]
    fn q5_0_takes_the_fifth_bit_from_qh() {
        // d = 1, qh = 0x8000_0001: bit 0 lifts element 0, bit 31 lifts element 31 by 16.
        // qs[j] = j | (15 - j) << 4, so y[j] = j - 16 and y[16 + j] = (15 - j) - 16 otherwise.
        let qs: Vec<u8> = (0..16u8).map(|j| j | (15 - j) << 4).collect();
        let mut bytes = block(&[ONE], &0x8000_0001u32.to_le_bytes());
        bytes.extend(qs);
        let y = run(GgmlType::Q5_0, &bytes);
        let mut expected: Vec<f32> = (0..16).map(|j| j as f32 - 16.0).chain((0..16).map(|j| -1.0 - j as f32)).collect();
        expected[0] = 0.0; // (0 | 16) - 16
        expected[31] = 0.0; // (0 | 16) - 16
        assert_eq!(y, expected);
        assert_eq!((y[1], y[16], y[30]), (-15.0, -1.0, -15.0));
    }

    #[test]
    fn q5_1_lifts_the_high_half_when_the_top_qh_bits_are_set() {
        // d = 0.5, m = 1, qh = 0xFFFF_0000: every element of the high half gets +16.
        // qs[j] = j | (15 - j) << 4: y[j] = j/2 + 1, y[16 + j] = (31 - j)/2 + 1.
        let qs: Vec<u8> = (0..16u8).map(|j| j | (15 - j) << 4).collect();
        let mut bytes = block(&[HALF, ONE], &0xFFFF_0000u32.to_le_bytes());
        bytes.extend(qs);
        let y = run(GgmlType::Q5_1, &bytes);
        assert_eq!((y[0], y[15], y[16], y[31]), (1.0, 8.5, 16.5, 9.0));
        for j in 0..16 {
            assert_eq!((y[j], y[16 + j]), (j as f32 * 0.5 + 1.0, (31 - j) as f32 * 0.5 + 1.0));
        }
    }

    #[test]
    fn several_blocks_decode_in_order() {
        let one = block(&[ONE], &[1u8; 32]);
        let two = block(&[TWO], &[1u8; 32]);
        let y = run(GgmlType::Q8_0, &[one, two].concat());
        assert_eq!((y[0], y[31], y[32], y[63]), (1.0, 1.0, 2.0, 2.0));
    }

    #[test]
    #[should_panic(expected = "do not hold")]
    fn a_length_mismatch_is_a_programming_error() {
        dequantize(GgmlType::Q8_0, &[0; 33], &mut [0.0; 32]);
    }
}
