// ggml block encoders, one block at a time, reproducing ggml's reference quantizer bit for bit.
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
#include <bit>
#include <cmath>
#include <cstring>

#include "ggml_internal.hpp"


namespace qk::ggml::detail {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS

// ---------------------------------------------------------------- scale searches
// Symmetric levels [-nmax, nmax-1] (codes stored + nmax) for n values, weighted least squares over 18 trial
// scales around nmax/max (make_qx_quants with rmse_type 1: weights x^2 when qw is null).
float search_sym(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = qw ? qw[i] : x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's symmetric search: start at nmax/max, then up to 5 sweeps of coordinate descent on each level with
// weights x^2 (make_q3_quants, do_rmse = true). Codes in [0, 2*nmax).
float search_q3(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        int nl = nearest_int(x[i] * sl2 / slx);
        nl = std::max(-nmax, std::min(nmax - 1, nl));
        if (nl != L[i]) {
          const float fn = static_cast<float>(nl);
          slx += w * x[i] * fn;
          sl2 += w * fn * fn;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(nl);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// Asymmetric levels [0, nmax] with a min <= 0: start at (max - min)/nmax, then nstep+1 trial scales
// (rmin + rdelta*is + nmax)/(max - min), each refined by a weighted least-squares fit of scale and min, keeping
// the lowest weighted error (squared, or absolute with use_mad). make_qkx2_quants; `strict` selects
// make_qkx3_quants' degenerate test (max <= min instead of max == min). Returns the scale, *the_min = -min.
float search_affine(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                    float rmin, float rdelta, int nstep, bool use_mad, bool strict) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (strict ? max <= min : max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_mad += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        mad += weights[i] * diff;
      }
      if (mad < best_mad) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// search_affine on G independent groups of N values at once, lane k = group k (the K-quants' sub-blocks).
// Every lane performs exactly the scalar operations in the scalar order (so the results are bit-identical); the
// lanes only interleave, which hides the latency of the sequential sums and lets the compiler vectorize across
// groups. x, weights: G groups of N consecutive values; L: G*N codes (same layout); scale/the_min: G results.
// Four lanes of floats / ints (GCC/Clang vector extensions: SSE2 on x86-64, NEON on ARM). Each lane performs
// IEEE single-precision operations, so a lane computes exactly what the scalar code computes.
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store4(float* p, v4f v) { std::memcpy(p, &v, sizeof(v)); }
inline v4f splat4(float x) { return v4f{x, x, x, x}; }
// a < b ? a : b and a > b ? a : b per lane (exactly what SSE minps / maxps compute).
#if defined(__SSE__)
inline v4f vmin(v4f a, v4f b) { return __builtin_ia32_minps(a, b); }
inline v4f vmax(v4f a, v4f b) { return __builtin_ia32_maxps(a, b); }
#else
inline v4f vmin(v4f a, v4f b) { return a < b ? a : b; }
inline v4f vmax(v4f a, v4f b) { return a > b ? a : b; }
#endif
// Lanes of b where take is set, else of a.
inline v4f vselect(v4i take, v4f b, v4f a) {
  return std::bit_cast<v4f>((std::bit_cast<v4i>(b) & take) | (std::bit_cast<v4i>(a) & ~take));
}
inline v4f vabs(v4f a) {
  return std::bit_cast<v4f>(std::bit_cast<v4i>(a) & 0x7fffffff);
}
// nearest_int per lane, clamped to [lo, hi], as float.
inline v4f vnearest_clamp(v4f v, v4f lo, v4f hi) {
  const v4f t = v + splat4(12582912.f);
  const v4i i = (std::bit_cast<v4i>(t) & 0x007fffff) - 0x00400000;
  return vmin(hi, vmax(lo, __builtin_convertvector(i, v4f)));
}

// search_affine on G independent groups of N values at once, lane k = group k (the K-quants' sub-blocks).
// Every lane performs exactly the scalar operations in the scalar order (so the results are bit-identical); the
// lanes run side by side in vector registers, which hides the latency of the sequential sums.
// x, weights: G groups of N consecutive values; L: G*N codes (same layout); scale/the_min: G results.
template <int G, int N>
void search_affine_batch(int nmax, const float* x, const float* weights, uint8_t* L, float* scale_out,
                         float* the_min_out, float rmin, float rdelta, int nstep, bool use_mad, bool strict) {
  static_assert(G % 4 == 0);
  constexpr int C = G / 4;
  alignas(64) float xt[N][G], wt[N][G], Lb[N][G], La[N][G];
  for (int k = 0; k < G; ++k)
    for (int i = 0; i < N; ++i) {
      xt[i][k] = x[k * N + i];
      wt[i][k] = weights[k * N + i];
    }
  const float fmax_l = static_cast<float>(nmax);
  const v4f vzero = splat4(0.0f), vnmax = splat4(fmax_l);
  alignas(64) float min[G], max[G], sum_w[G], sum_x[G], scale[G], best_mad[G], iscale[G];
  bool degenerate[G];
  for (int k = 0; k < G; ++k) {
    min[k] = max[k] = xt[0][k];
    sum_w[k] = wt[0][k];
    sum_x[k] = sum_w[k] * xt[0][k];
  }
  for (int i = 1; i < N; ++i)
    for (int k = 0; k < G; ++k) {
      min[k] = xt[i][k] < min[k] ? xt[i][k] : min[k];
      max[k] = xt[i][k] > max[k] ? xt[i][k] : max[k];
      sum_w[k] += wt[i][k];
      sum_x[k] += wt[i][k] * xt[i][k];
    }
  for (int k = 0; k < G; ++k) {
    if (min[k] > 0) min[k] = 0;
    degenerate[k] = strict ? max[k] <= min[k] : max[k] == min[k];
    // degenerate lanes compute harmlessly with a unit range; their results are discarded
    iscale[k] = fmax_l / (degenerate[k] ? 1.0f : max[k] - min[k]);
    scale[k] = 1 / iscale[k];
  }
  {
    v4f isc[C], mn[C], sc[C], acc[C];
    for (int c = 0; c < C; ++c) {
      isc[c] = load4(iscale + 4 * c);
      mn[c] = load4(min + 4 * c);
      sc[c] = load4(scale + 4 * c);
      acc[c] = vzero;
    }
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < C; ++c) {
        const v4f xv = load4(&xt[i][4 * c]);
        const v4f l = vnearest_clamp(isc[c] * (xv - mn[c]), vzero, vnmax);
        store4(&Lb[i][4 * c], l);
        v4f diff = sc[c] * l + mn[c] - xv;
        diff = use_mad ? vabs(diff) : diff * diff;
        acc[c] += load4(&wt[i][4 * c]) * diff;
      }
    for (int c = 0; c < C; ++c) store4(best_mad + 4 * c, acc[c]);
  }
  if (nstep >= 1) {
    for (int is = 0; is <= nstep; ++is) {
      alignas(64) float sum_l[G], sum_l2[G], sum_xl[G];
      for (int k = 0; k < G; ++k)  // (max - min) with the lane's current min, as the scalar search does
        iscale[k] = (rmin + rdelta * static_cast<float>(is) + fmax_l) / (degenerate[k] ? 1.0f : max[k] - min[k]);
      {
        v4f isc[C], mn[C], s1[C], s2[C], s3[C];
        for (int c = 0; c < C; ++c) {
          isc[c] = load4(iscale + 4 * c);
          mn[c] = load4(min + 4 * c);
          s1[c] = s2[c] = s3[c] = vzero;
        }
        for (int i = 0; i < N; ++i)
          for (int c = 0; c < C; ++c) {
            const v4f xv = load4(&xt[i][4 * c]);
            const v4f fl = vnearest_clamp(isc[c] * (xv - mn[c]), vzero, vnmax);
            store4(&La[i][4 * c], fl);
            const v4f w = load4(&wt[i][4 * c]);
            s1[c] += w * fl;
            s2[c] += w * fl * fl;
            s3[c] += w * fl * xv;
          }
        for (int c = 0; c < C; ++c) {
          store4(sum_l + 4 * c, s1[c]);
          store4(sum_l2 + 4 * c, s2[c]);
          store4(sum_xl + 4 * c, s3[c]);
        }
      }
      alignas(64) float this_scale[G], this_min[G], mad[G];
      bool ok[G];
      for (int k = 0; k < G; ++k) {
        const float D = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
        ok[k] = D > 0;
        this_scale[k] = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / (ok[k] ? D : 1.0f);
        this_min[k] = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / (ok[k] ? D : 1.0f);
        if (this_min[k] > 0) {
          this_min[k] = 0;
          this_scale[k] = sum_xl[k] / sum_l2[k];
        }
      }
      {
        v4f ts[C], tm[C], acc[C];
        for (int c = 0; c < C; ++c) {
          ts[c] = load4(this_scale + 4 * c);
          tm[c] = load4(this_min + 4 * c);
          acc[c] = vzero;
        }
        for (int i = 0; i < N; ++i)
          for (int c = 0; c < C; ++c) {
            v4f diff = ts[c] * load4(&La[i][4 * c]) + tm[c] - load4(&xt[i][4 * c]);
            diff = use_mad ? vabs(diff) : diff * diff;
            acc[c] += load4(&wt[i][4 * c]) * diff;
          }
        for (int c = 0; c < C; ++c) store4(mad + 4 * c, acc[c]);
      }
      bool take[G];
      bool any = false;
      for (int k = 0; k < G; ++k) {
        take[k] = !degenerate[k] && ok[k] && mad[k] < best_mad[k];
        any |= take[k];
        if (take[k]) {
          best_mad[k] = mad[k];
          scale[k] = this_scale[k];
          min[k] = this_min[k];
        }
      }
      if (any) {
        v4i tk[C];
        for (int c = 0; c < C; ++c)
          tk[c] = v4i{-take[4 * c], -take[4 * c + 1], -take[4 * c + 2], -take[4 * c + 3]};
        for (int i = 0; i < N; ++i)
          for (int c = 0; c < C; ++c)
            store4(&Lb[i][4 * c], vselect(tk[c], load4(&La[i][4 * c]), load4(&Lb[i][4 * c])));
      }
    }
  }
  for (int k = 0; k < G; ++k) {
    for (int i = 0; i < N; ++i) L[k * N + i] = degenerate[k] ? 0 : static_cast<uint8_t>(Lb[i][k]);
    scale_out[k] = degenerate[k] ? 0.0f : scale[k];
    the_min_out[k] = -min[k];
  }
}

// search_sym on G groups of N values at once (see search_affine_batch); qw: G*N weights or nullptr (x^2).
template <int G, int N>
void search_sym_batch(int nmax, const float* x, int8_t* L, const float* qw, float* scale_out) {
  static_assert(G % 4 == 0);
  constexpr int C = G / 4;
  alignas(64) float xt[N][G], wt[N][G], Lb[N][G], La[N][G];
  for (int k = 0; k < G; ++k)
    for (int i = 0; i < N; ++i) {
      const float v = x[k * N + i];
      xt[i][k] = v;
      wt[i][k] = qw ? qw[k * N + i] : v * v;
    }
  alignas(64) float max[G], amax[G], den[G], iscale[G], sumlx[G], suml2[G], scale[G], best[G];
  bool zero[G];
  for (int k = 0; k < G; ++k) max[k] = amax[k] = 0;
  for (int i = 0; i < N; ++i)
    for (int k = 0; k < G; ++k) {
      const float ax = std::fabs(xt[i][k]);
      if (ax > amax[k]) {
        amax[k] = ax;
        max[k] = xt[i][k];
      }
    }
  for (int k = 0; k < G; ++k) {
    zero[k] = amax[k] < kGroupMaxEps;
    den[k] = zero[k] ? 1.0f : max[k];
  }
  const v4f lo = splat4(static_cast<float>(-nmax)), hi = splat4(static_cast<float>(nmax - 1));
  const v4f off = splat4(static_cast<float>(nmax)), vzero = splat4(0.0f);
  // One pass of trial inverse scales iscale[]: codes into dst, sums into sumlx/suml2.
  auto pass = [&](float (*dst)[G]) {
    v4f isc[C], a[C], b[C];
    for (int c = 0; c < C; ++c) {
      isc[c] = load4(iscale + 4 * c);
      a[c] = b[c] = vzero;
    }
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < C; ++c) {
        const v4f xv = load4(&xt[i][4 * c]);
        const v4f fl = vnearest_clamp(isc[c] * xv, lo, hi);
        store4(&dst[i][4 * c], fl + off);
        const v4f w = load4(&wt[i][4 * c]);
        a[c] += w * xv * fl;
        b[c] += w * fl * fl;
      }
    for (int c = 0; c < C; ++c) {
      store4(sumlx + 4 * c, a[c]);
      store4(suml2 + 4 * c, b[c]);
    }
  };
  for (int k = 0; k < G; ++k) iscale[k] = static_cast<float>(-nmax) / den[k];
  pass(Lb);
  for (int k = 0; k < G; ++k) {
    scale[k] = suml2[k] != 0.0f ? sumlx[k] / suml2[k] : 0.0f;
    best[k] = scale[k] * sumlx[k];
  }
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    for (int k = 0; k < G; ++k) iscale[k] = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / den[k];
    pass(La);
    bool take[G];
    bool any = false;
    for (int k = 0; k < G; ++k) {
      take[k] = suml2[k] > 0 && sumlx[k] * sumlx[k] > best[k] * suml2[k];
      any |= take[k];
      if (take[k]) {
        scale[k] = sumlx[k] / suml2[k];
        best[k] = scale[k] * sumlx[k];
      }
    }
    if (any) {
      v4i tk[C];
      for (int c = 0; c < C; ++c) tk[c] = v4i{-take[4 * c], -take[4 * c + 1], -take[4 * c + 2], -take[4 * c + 3]};
      for (int i = 0; i < N; ++i)
        for (int c = 0; c < C; ++c)
          store4(&Lb[i][4 * c], vselect(tk[c], load4(&La[i][4 * c]), load4(&Lb[i][4 * c])));
    }
  }
  for (int k = 0; k < G; ++k) {
    for (int i = 0; i < N; ++i) L[k * N + i] = zero[k] ? 0 : static_cast<int8_t>(Lb[i][k]);
    scale_out[k] = zero[k] ? 0.0f : scale[k];
  }
}

// Non-negative levels [0, nmax] for the sub-block scales/mins of the weighted K-quant paths: 9 trial scales
// around nmax/max by weighted squared error, then up to 5 coordinate-descent sweeps (make_qp_quants).
float search_pos(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max == 0.0f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = qw[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const int nl = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (nl != L[i]) {
          const float fn = static_cast<float>(nl);
          slx += w * x[i] * fn;
          sl2 += w * fn * fn;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(nl);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  return sumlx / suml2;
}

// Signed value of largest magnitude (first one on ties).
float signed_absmax(const float* x, int n, float* amax_out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  if (amax_out) *amax_out = amax;
  return max;
}

void minmax(const float* x, int n, float* mn, float* mx) {
  float lo = 3.402823466e+38f, hi = -3.402823466e+38f;  // FLT_MAX, -FLT_MAX
  for (int j = 0; j < n; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  *mn = lo;
  *mx = hi;
}

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
