//! The 256-element "k-quant" super-blocks: Q4_K, Q5_K and Q6_K.
//!
//! Q4_K and Q5_K split a super-block into eight sub-blocks of 32, each with a 6-bit scale and a
//! 6-bit minimum packed into 12 bytes (`get_scale_min_k4`), multiplied by the super-block's f16
//! `d` and `dmin`. Q6_K has sixteen signed 8-bit scales for sub-blocks of 16. The loops follow
//! ggml's `dequantize_row_q{4,5,6}_K` in `ggml-quants.c` exactly.

use crate::dequant::f16_at;

/// Scale and minimum of sub-block `j` (0..8) from the 12 packed bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K { ggml_half d, dmin; uint8_t scales[12]; uint8_t qs[128]; }`.
pub(crate) fn q4_k_block(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    for (chunk, (q, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc, m) = scale_min_k4(2 * chunk, scales);
        let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
        let (sc, m) = scale_min_k4(2 * chunk + 1, scales);
        let (d2, m2) = (d * f32::from(sc), min * f32::from(m));
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `block_q5_K { ggml_half d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }`:
/// like Q4_K with a fifth bit per element from `qh` (bit `2c` for the low nibbles of chunk `c`,
/// bit `2c + 1` for the high nibbles).
pub(crate) fn q5_k_block(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh) = (&b[4..16], &b[16..48]);
    for (chunk, (ql, y)) in b[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let (sc, m) = scale_min_k4(2 * chunk, scales);
        let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
        let (sc, m) = scale_min_k4(2 * chunk + 1, scales);
        let (d2, m2) = (d * f32::from(sc), min * f32::from(m));
        for l in 0..32 {
            let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * f32::from((ql[l] & 0x0F) + hi1) - m1;
            y[l + 32] = d2 * f32::from((ql[l] >> 4) + hi2) - m2;
        }
    }
}

/// `block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }`: 4 low bits
/// from `ql`, 2 high bits from `qh`, minus 32, times `d * scale`.
pub(crate) fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let scale = |k: usize| d * f32::from(sc[is + k] as i8);
            y[l] = scale(0) * q1 as f32;
            y[l + 32] = scale(2) * q2 as f32;
            y[l + 64] = scale(4) * q3 as f32;
            y[l + 96] = scale(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize, GgmlType};

    const HALF: u16 = 0x3800; // 0.5
    const ONE: u16 = 0x3C00; // 1.0

    /// Packed scales decoding (by hand, see `scale_min_k4`) to
    /// sc = [1, 2, 3, 4, 21, 6, 7, 8] and m = [0, 1, 2, 3, 34, 1, 0, 3]:
    /// q[0] = 65 = 1 | 1 << 6 gives sc0 = 1 and the top bits 01 of sc4;
    /// q[4] = 128 = 0 | 2 << 6 gives m0 = 0 and the top bits 10 of m4;
    /// q[8] = 0x25 gives the low nibbles sc4 = 5 | 16 = 21 and m4 = 2 | 32 = 34.
    const SCALES: [u8; 12] = [65, 2, 3, 4, 128, 1, 2, 3, 0x25, 0x16, 0x07, 0x38];
    const SC: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 21.0, 6.0, 7.0, 8.0];
    const M: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 34.0, 1.0, 0.0, 3.0];

    /// `qs` bytes whose low nibble is `l % 16` and high nibble `15 - l % 16`, in every chunk.
    fn ramp_qs() -> Vec<u8> {
        (0..128).map(|i| ((i % 32) % 16) as u8 | ((15 - (i % 32) % 16) as u8) << 4).collect()
    }

    fn run(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![f32::NAN; 256];
        dequantize(ty, bytes, &mut out);
        out
    }

    #[test]
    fn packed_k4_scales_unpack_to_six_bits_each() {
        let decoded: Vec<(u8, u8)> = (0..8).map(|j| scale_min_k4(j, &SCALES)).collect();
        assert_eq!(decoded, [(1, 0), (2, 1), (3, 2), (4, 3), (21, 34), (6, 1), (7, 0), (8, 3)]);
    }

    #[test]
    fn q4_k_applies_sub_block_scales_and_minimums() {
        // d = 1, dmin = 0.5. Chunk c: y[64c + l] = sc[2c] * (l % 16) - 0.5 * m[2c],
        // y[64c + 32 + l] = sc[2c + 1] * (15 - l % 16) - 0.5 * m[2c + 1].
        let bytes = [&ONE.to_le_bytes()[..], &HALF.to_le_bytes(), &SCALES, &ramp_qs()].concat();
        let y = run(GgmlType::Q4K, &bytes);
        assert_eq!((y[0], y[1], y[32], y[67]), (0.0, 1.0, 29.5, 8.0));
        assert_eq!((y[133], y[160], y[255]), (88.0, 89.5, -1.5));
        for c in 0..4 {
            for l in 0..32 {
                let q = (l % 16) as f32;
                assert_eq!(y[64 * c + l], SC[2 * c] * q - 0.5 * M[2 * c]);
                assert_eq!(y[64 * c + 32 + l], SC[2 * c + 1] * (15.0 - q) - 0.5 * M[2 * c + 1]);
            }
        }
    }

    #[test]
    fn q5_k_adds_sixteen_where_the_chunk_bit_of_qh_is_set() {
        // As the Q4_K test, with qh[l] = 0x01 for even l (fifth bit of chunk 0's low nibbles)
        // and 0x80 for odd l (fifth bit of chunk 3's high nibbles).
        let qh: Vec<u8> = (0..32).map(|l| if l % 2 == 0 { 0x01 } else { 0x80 }).collect();
        let bytes = [&ONE.to_le_bytes()[..], &HALF.to_le_bytes(), &SCALES, &qh, &ramp_qs()].concat();
        let y = run(GgmlType::Q5K, &bytes);
        assert_eq!((y[0], y[1], y[2]), (16.0, 1.0, 18.0));
        assert_eq!((y[254], y[255]), (6.5, 126.5));
        for c in 0..4 {
            for l in 0..32 {
                let q = (l % 16) as f32;
                let lift_low = if c == 0 && l % 2 == 0 { 16.0 } else { 0.0 };
                let lift_high = if c == 3 && l % 2 == 1 { 16.0 } else { 0.0 };
                assert_eq!(y[64 * c + l], SC[2 * c] * (q + lift_low) - 0.5 * M[2 * c]);
                assert_eq!(y[64 * c + 32 + l], SC[2 * c + 1] * (15.0 - q + lift_high) - 0.5 * M[2 * c + 1]);
            }
        }
    }

    #[test]
    fn q6_k_combines_low_and_high_bits_with_signed_scales() {
        // d = 0.5, scales = [1, -1, 2, -2, …, 8, -8], every ql = 0x21 and every qh = 0xE4
        // (2-bit fields 0, 1, 2, 3 from the bottom), so the four quants of each position are
        // q1 = 1 - 32 = -31, q2 = (1 | 1 << 4) - 32 = -15, q3 = (2 | 2 << 4) - 32 = 2,
        // q4 = (2 | 3 << 4) - 32 = 18, and y[128n + 32k + l] = 0.5 * sc[8n + l/16 + 2k] * q_k.
        let scales: Vec<u8> = (1..=8i8).flat_map(|s| [s as u8, (-s) as u8]).collect();
        let bytes = [&[0x21u8; 128][..], &[0xE4u8; 64], &scales, &HALF.to_le_bytes()].concat();
        let y = run(GgmlType::Q6K, &bytes);
        assert_eq!((y[0], y[16], y[32], y[64], y[96], y[255]), (-15.5, 15.5, -15.0, 3.0, 36.0, -72.0));
        let sc: Vec<f32> = scales.iter().map(|&s| f32::from(s as i8)).collect();
        let q = [-31.0, -15.0, 2.0, 18.0];
        for n in 0..2 {
            for k in 0..4 {
                for l in 0..32 {
                    assert_eq!(y[128 * n + 32 * k + l], 0.5 * sc[8 * n + l / 16 + 2 * k] * q[k]);
                }
            }
        }
    }
}
