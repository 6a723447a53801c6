// ggml block encoders of the 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL), one block at a time,
// reproducing ggml's reference quantizer bit for bit; the K-quants are in ggml_encode_k.cpp.
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

void pack_q5_nibbles(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t a = L[j], b = L[j + 16];
    qs[j] = static_cast<uint8_t>((a & 0x0F) | ((b & 0x0F) << 4));
    qh |= ((a & 0x10u) >> 4) << j;
    qh |= ((b & 0x10u) >> 4) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) qh_bytes[k] = static_cast<uint8_t>(qh >> (8 * k));
}

}  // namespace

// ---------------------------------------------------------------- oracle hooks for tests
// tests/formats/test_ggml_search.cpp checks the batched searches lane by lane against the one-group searches.
float search_affine_one(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, float rmin,
                        float rdelta, int nstep, bool use_mad, bool strict) {
  uint8_t Laux[32];
  return search_affine(n, nmax, x, w, L, the_min, Laux, rmin, rdelta, nstep, use_mad, strict);
}
void search_affine_lanes(int n, int nmax, const float* x, const float* w, uint8_t* L, float* scales, float* mins,
                         float rmin, float rdelta, int nstep, bool use_mad, bool strict) {
  if (n == 16)
    search_affine_batch<16, 16>(nmax, x, w, L, scales, mins, rmin, rdelta, nstep, use_mad, strict);
  else
    search_affine_batch<16, 32>(nmax, x, w, L, scales, mins, rmin, rdelta, nstep, use_mad, strict);
}
float search_sym_one(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  return search_sym(n, nmax, x, L, qw);
}
void search_sym_lanes(int nmax, const float* x, int8_t* L, const float* qw, float* scales) {
  search_sym_batch<16, 16>(nmax, x, L, qw, scales);
}


// ---------------------------------------------------------------- 32-element types
void encode_q4_0(const float* x, const float* qw, float sigma2, BlockQ4_0* y, LegacyAux* aux) {
  if (!qw) {
    const float max = signed_absmax(x, 32, nullptr);
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int b = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
      y->qs[j] = static_cast<uint8_t>(a | (b << 4));
    }
    if (aux) *aux = {id, 0.0f};
    return;
  }
  float weight[32];
  int8_t L[32];
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  const float d = search_sym(32, 8, x, L, weight);
  y->d = f2h(d);
  for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  if (aux) {
    const float dq = h2f(y->d);
    *aux = {dq != 0.0f ? 1.0f / dq : 0.0f, 0.0f};
  }
}

void encode_q4_1(const float* x, const float* qw, float sigma2, BlockQ4_1* y, LegacyAux* aux) {
  if (!qw) {
    float min, max;
    minmax(x, 32, &min, &max);
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    y->m = f2h(min);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, static_cast<int>((x[j] - min) * id + 0.5f));
      const int b = std::min(15, static_cast<int>((x[j + 16] - min) * id + 0.5f));
      y->qs[j] = static_cast<uint8_t>(a | (b << 4));
    }
    if (aux) *aux = {id, min};
    return;
  }
  float weight[32];
  uint8_t L[32], Laux[32];
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  float min;
  const float d = search_affine(32, 15, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false, true);
  y->d = f2h(d);
  y->m = f2h(-min);
  for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  if (aux) {
    const float dq = h2f(y->d);
    *aux = {dq != 0.0f ? 1.0f / dq : 0.0f, h2f(y->m)};
  }
}

void encode_q5_0(const float* x, const float* qw, float sigma2, BlockQ5_0* y, LegacyAux* aux) {
  uint8_t L[32];
  if (!qw) {
    const float max = signed_absmax(x, 32, nullptr);
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
    pack_q5_nibbles(L, y->qs, y->qh);
    if (aux) *aux = {id, 0.0f};
    return;
  }
  float weight[32];
  int8_t Ls[32];
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  const float d = search_sym(32, 16, x, Ls, weight);
  y->d = f2h(d);
  for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(Ls[j]);
  pack_q5_nibbles(L, y->qs, y->qh);
  if (aux) {
    const float dq = h2f(y->d);
    *aux = {dq != 0.0f ? 1.0f / dq : 0.0f, 0.0f};
  }
}

void encode_q5_1(const float* x, const float* qw, float sigma2, BlockQ5_1* y, LegacyAux* aux) {
  uint8_t L[32];
  if (!qw) {
    float min, max;
    minmax(x, 32, &min, &max);
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = f2h(d);
    y->m = f2h(min);
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(static_cast<int>((x[j] - min) * id + 0.5f));
    pack_q5_nibbles(L, y->qs, y->qh);
    if (aux) *aux = {id, min};
    return;
  }
  float weight[32];
  uint8_t Laux[32];
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  float min;
  const float d = search_affine(32, 31, x, weight, L, &min, Laux, -0.9f, 0.05f, 36, false, true);
  y->d = f2h(d);
  y->m = f2h(-min);
  pack_q5_nibbles(L, y->qs, y->qh);
  if (aux) {
    const float dq = h2f(y->d);
    *aux = {dq != 0.0f ? 1.0f / dq : 0.0f, h2f(y->m)};
  }
}

void encode_q8_0(const float* x, BlockQ8_0* y, LegacyAux* aux) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f2h(d);
  for (int j = 0; j < 32; ++j) y->qs[j] = static_cast<int8_t>(round_half_away(x[j] * id));
  if (aux) *aux = {id, 0.0f};
}

// quantize_iq4_nl: one block of 32 with ntry = 7 (the path ggml_quantize_chunk takes, with or without weights).
void encode_iq4_nl(const float* x, const float* qw, BlockIQ4_NL* y, LegacyAux* aux) {
  const int8_t* values = kIQ4NLValues;
  constexpr int ntry = 7;
  float sigma2 = 0;
  for (int j = 0; j < 32; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / 32;
  float weight[32];
  uint8_t L[32];
  if (qw) {
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < 32; ++j) weight[j] = x[j] * x[j];
  }
  float amax = 0;
  const float max = signed_absmax(x, 32, &amax);
  float scale = 0.0f;
  if (amax >= kGroupMaxEps) {
    float d = -max / static_cast<float>(values[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const int l = nearest_index(values, id * x[j]);
      const float q = static_cast<float>(values[l]);
      sumqx += weight[j] * q * x[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = static_cast<float>(itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const int l = nearest_index(values, id * x[j]);
        const float q = static_cast<float>(values[l]);
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scale = d;
  }
  y->d = f2h(scale);
  const float id = scale != 0.0f ? 1 / scale : 0.0f;
  for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(nearest_index(values, id * x[j]));
  for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  if (aux) *aux = {id, 0.0f};
}


}  // namespace qk::ggml::detail
