// ggml block encoders of the K-quants (super-blocks of 256: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and Q8_K for
// activations), one super-block (or two) at a time, reproducing ggml's reference quantizer bit for bit.
//
// Origin of every algorithm and constant here: ggml/src/ggml-quants.c at llama.cpp commit c392e50
// (quantize_row_<type>_ref for the plain path, quantize_row_<type>_impl for the importance-weighted path, and
// the helpers nearest_int, make_qx_quants, make_q3_quants, make_qkx2_quants / make_qkx3_quants,
// make_qp_quants, best_index_int8, quantize_row_iq4_nl_impl). The code is written anew for qk; the float
// operations are kept in ggml's order and precision (single precision, no fused multiply-add, the magic-number
// rounding) because the bytes depend on them. tests/formats/test_ggml.cpp checks every type against bytes ggml
// produced.
// Bit-exactness with ggml needs every a*b+c rounded twice, as ggml's baseline build does: CMake compiles the
// ggml sources with -ffp-contract=off so FMA-enabled builds (-march=native) cannot fuse them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ggml_internal.hpp"
#include "ggml_search.hpp"
#include "ggml_search_batch.hpp"

namespace qk::ggml::detail {
using namespace enc;
namespace {

// Pack 256 2-bit values: byte l of chunk c (128 elements) holds elements c*128 + l + 32*s in bits 2s..2s+1.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                           (L[j + l + 96] << 6));
}

// Eight 6-bit scales and mins into 12 bytes (Q4_K / Q5_K).
void pack_scales_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = ls[j];
      s[j + 4] = lm[j];
    } else {
      s[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      s[j - 4] = static_cast<uint8_t>(s[j - 4] | ((ls[j] >> 4) << 6));
      s[j] = static_cast<uint8_t>(s[j] | ((lm[j] >> 4) << 6));
    }
  }
}

// Final pass of Q4_K / Q5_K: codes from the stored (rounded) scales; sub-blocks whose scale is 0 keep the
// codes of the search.
void requantize_k4(const float* x, const uint16_t d16, const uint16_t dmin16, const uint8_t* scales, int nmax,
                   uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, scales, &sc, &m);
    const float d = h2f(d16) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = h2f(dmin16) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

// The common tail of Q4_K/Q5_K: per-sub-block (scale, min) → 6-bit codes + super-block d/dmin.
// Reference path: codes = round(63 * v / max v); weighted path: make_qp_quants on the sub-block weights sw.
void k4_scales(const float* scales, const float* mins, const float* sw, uint8_t* s, uint16_t* d16, uint16_t* dmin16,
               bool clamp_weighted) {
  uint8_t ls[8], lm[8];
  if (!sw) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t a = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
      const uint8_t b = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
      ls[j] = std::min<uint8_t>(63, a);
      lm[j] = std::min<uint8_t>(63, b);
    }
    *d16 = f2h(max_scale / 63.f);
    *dmin16 = f2h(max_min / 63.f);
  } else {
    const float d_block = search_pos(8, 63, scales, ls, sw);
    const float m_block = search_pos(8, 63, mins, lm, sw);
    if (clamp_weighted) {
      for (int j = 0; j < 8; ++j) {
        ls[j] = std::min<uint8_t>(63, ls[j]);
        lm[j] = std::min<uint8_t>(63, lm[j]);
      }
    }
    *d16 = f2h(d_block);
    *dmin16 = f2h(m_block);
  }
  std::memset(s, 0, 12);
  pack_scales_k4(ls, lm, s);
}

// Sub-block searches of Q4_K / Q5_K (nmax 15 or 31).
// Sub-block searches of S consecutive Q4_K / Q5_K super-blocks (nmax 15 or 31), all 8*S sub-blocks side by side.
template <int S>
void k4_search(const float* x, const float* qw, int nmax, float* scales, float* mins, float* sw, uint8_t* L) {
  float weights[S * QK_K];
  if (!qw) {
    // reference: weights av_x + |x| with av_x the sub-block RMS; make_qkx2_quants
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    for (int j = 0; j < 8 * S; ++j) {
      const float* xb = x + 32 * j;
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xb[l] * xb[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + std::fabs(xb[l]);
    }
    search_affine_batch<8 * S, 32>(nmax, x, weights, L, scales, mins, rmin, 0.1f, nstep, false, false);
    return;
  }
  // weighted: weights qw * sqrt(sigma2 + x^2), sigma2 = 2 * mean(x^2) over the super-block; make_qkx3_quants
  for (int s = 0; s < S; ++s) {
    const float* xs = x + QK_K * s;
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; ++l) sum_x2 += xs[l] * xs[l];
    const float sigma2 = 2 * sum_x2 / QK_K;
    for (int j = 0; j < 8; ++j) {
      const float* xb = xs + 32 * j;
      float* wb = weights + QK_K * s + 32 * j;
      for (int l = 0; l < 32; ++l) wb[l] = qw[QK_K * s + 32 * j + l] * std::sqrt(sigma2 + xb[l] * xb[l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += wb[l];
      sw[8 * s + j] = sumw;
    }
  }
  search_affine_batch<8 * S, 32>(nmax, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false, true);
}

void finish_q4_K(const float* x, const float* qw, const float* scales, const float* mins, const float* sw, uint8_t* L,
                 BlockQ4_K* y) {
  k4_scales(scales, mins, qw ? sw : nullptr, y->scales, &y->d, &y->dmin, false);
  requantize_k4(x, y->d, y->dmin, y->scales, 15, L);
  uint8_t* q = y->qs;
  for (int j = 0; j < QK_K; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

void finish_q5_K(const float* x, const float* qw, const float* scales, const float* mins, const float* sw, uint8_t* L,
                 BlockQ5_K* y) {
  k4_scales(scales, mins, qw ? sw : nullptr, y->scales, &y->d, &y->dmin, true);
  requantize_k4(x, y->d, y->dmin, y->scales, 31, L);
  std::memset(y->qh, 0, sizeof(y->qh));
  uint8_t* ql = y->qs;
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        y->qh[j] = static_cast<uint8_t>(y->qh[j] | m1);
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        y->qh[j] = static_cast<uint8_t>(y->qh[j] | m2);
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}


}  // namespace

// ---------------------------------------------------------------- K-quants (super-blocks of 256)
void encode_q2_K(const float* x, const float* qw, BlockQ2_K* y) {
  uint8_t L[QK_K];
  float weights[QK_K];
  float mins[16], scales[16];
  if (!qw) {
    constexpr float q4scale = 15.f;
    float max_scale = 0, max_min = 0;
    for (int l = 0; l < QK_K; ++l) weights[l] = std::fabs(x[l]);
    search_affine_batch<16, 16>(3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, true, false);
    for (int j = 0; j < 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < 16; ++j) y->scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y->d = f2h(max_scale / q4scale);
    } else {
      for (int j = 0; j < 16; ++j) y->scales[j] = 0;
      y->d = f2h(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < 16; ++j) {
        const int l = nearest_int(iscale * mins[j]);
        y->scales[j] = static_cast<uint8_t>(y->scales[j] | (l << 4));
      }
      y->dmin = f2h(max_min / q4scale);
    } else {
      y->dmin = f2h(0.f);
    }
  } else {
    float sw[16];
    uint8_t Ls[16], Lm[16];
    for (int j = 0; j < 16; ++j) sw[j] = 0;
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = sumx2 / QK_K;
    for (int j = 0; j < 16; ++j) {
      const float* w = qw + 16 * j;
      float* wb = weights + 16 * j;
      for (int l = 0; l < 16; ++l) wb[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      for (int l = 0; l < 16; ++l) sw[j] += wb[l];
    }
    search_affine_batch<16, 16>(3, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false, true);
    const float dm = search_pos(16, 15, scales, Ls, sw);
    const float mm = search_pos(16, 15, mins, Lm, sw);
    y->d = f2h(dm);
    y->dmin = f2h(mm);
    for (int j = 0; j < 16; ++j) y->scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  }
  for (int j = 0; j < 16; ++j) {
    const float d = h2f(y->d) * static_cast<float>(y->scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = h2f(y->dmin) * static_cast<float>(y->scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
    }
  }
  pack_2bit(L, y->qs);
}

void encode_q3_K(const float* x, const float* qw, BlockQ3_K* y) {
  int8_t L[QK_K];
  float scales[16];
  std::memset(y->scales, 0, 12);
  auto put_scale = [&](int j, int l) {  // l in [0, 63]
    if (j < 8)
      y->scales[j] = static_cast<uint8_t>(l & 0xF);
    else
      y->scales[j - 8] = static_cast<uint8_t>(y->scales[j - 8] | ((l & 0xF) << 4));
    l >>= 4;
    y->scales[j % 4 + 8] = static_cast<uint8_t>(y->scales[j % 4 + 8] | (l << (2 * (j / 4))));
  };
  if (!qw) {
    float max_scale = 0, amax = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = search_q3(16, 4, x + 16 * j, L + 16 * j);
      const float s = std::fabs(scales[j]);
      if (s > amax) {
        amax = s;
        max_scale = scales[j];
      }
    }
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j) {
        int8_t l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
        l = static_cast<int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
        put_scale(j, l);
      }
      y->d = f2h(1 / iscale);
    } else {
      y->d = f2h(0.f);
    }
  } else {
    float weight[QK_K], sw[16];
    int8_t Ls[16];
    float sumx2 = 0;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int j = 0; j < 16; ++j) {
      const float* w = qw + 16 * j;
      float* wb = weight + 16 * j;
      for (int l = 0; l < 16; ++l) wb[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += wb[l];
      sw[j] = sumw;
    }
    search_sym_batch<16, 16>(4, x, L, weight, scales);
    const float d_block = search_sym(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) put_scale(j, Ls[j]);
    y->d = f2h(d_block);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = h2f(y->d) * static_cast<float>(scale_q3_K(j, y->scales));
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
    }
  }
  std::memset(y->hmask, 0, sizeof(y->hmask));
  uint8_t low[QK_K];
  for (int j = 0; j < QK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      y->hmask[j % 32] = static_cast<uint8_t>(y->hmask[j % 32] | (1u << (j / 32)));
      l -= 4;
    }
    low[j] = static_cast<uint8_t>(l);
  }
  pack_2bit(low, y->qs);
}

void encode_q4_K(const float* x, const float* qw, BlockQ4_K* y) {
  uint8_t L[QK_K];
  float scales[8], mins[8], sw[8];
  k4_search<1>(x, qw, 15, scales, mins, sw, L);
  finish_q4_K(x, qw, scales, mins, sw, L, y);
}

void encode_q4_K_pair(const float* x, const float* qw, BlockQ4_K* y) {
  uint8_t L[2 * QK_K];
  float scales[16], mins[16], sw[16];
  k4_search<2>(x, qw, 15, scales, mins, sw, L);
  for (int s = 0; s < 2; ++s)
    finish_q4_K(x + QK_K * s, qw, scales + 8 * s, mins + 8 * s, sw + 8 * s, L + QK_K * s, y + s);
}

void encode_q5_K(const float* x, const float* qw, BlockQ5_K* y) {
  uint8_t L[QK_K];
  float scales[8], mins[8], sw[8];
  k4_search<1>(x, qw, 31, scales, mins, sw, L);
  finish_q5_K(x, qw, scales, mins, sw, L, y);
}

void encode_q5_K_pair(const float* x, const float* qw, BlockQ5_K* y) {
  uint8_t L[2 * QK_K];
  float scales[16], mins[16], sw[16];
  k4_search<2>(x, qw, 31, scales, mins, sw, L);
  for (int s = 0; s < 2; ++s)
    finish_q5_K(x + QK_K * s, qw, scales + 8 * s, mins + 8 * s, sw + 8 * s, L + QK_K * s, y + s);
}

// Q6_K: the reference and the weighted path differ only in make_qx_quants' weights (x^2 or the importance).
void encode_q6_K(const float* x, const float* qw, BlockQ6_K* y) {
  int8_t L[QK_K];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  search_sym_batch<16, 16>(32, x, L, qw, scales);
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = scales[ib];
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(y, 0, sizeof(*y));
    return;
  }
  const float iscale = -128.f / max_scale;
  y->d = f2h(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) y->scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = h2f(y->d) * static_cast<float>(y->scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
    }
  }
  uint8_t* ql = y->ql;
  uint8_t* qh = y->qh;
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

void encode_q8_K(const float* x, BlockQ8_K* y) {
  float amax = 0;
  const float max = signed_absmax(x, QK_K, &amax);
  if (amax == 0.0f) {
    std::memset(y, 0, sizeof(*y));
    return;
  }
  const float iscale = -127.f / max;
  for (int j = 0; j < QK_K; ++j) y->qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
  for (int j = 0; j < 16; ++j) {
    int sum = 0;
    for (int ii = 0; ii < 16; ++ii) sum += y->qs[j * 16 + ii];
    y->bsums[j] = static_cast<int16_t>(sum);
  }
  y->d = 1 / iscale;
}


}  // namespace qk::ggml::detail
