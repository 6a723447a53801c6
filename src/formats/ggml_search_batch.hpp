#pragma once
// The scale searches of ggml_search.hpp on many groups at once, lane by lane bit-identical to the one-group
// searches (tests/formats/test_ggml_search.cpp checks it). Private to src/formats.
#include <cstdint>
#include <cstring>

#include "ggml_search.hpp"

namespace qk::ggml::detail::enc {

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
inline void search_affine_batch(int nmax, const float* x, const float* weights, uint8_t* L, float* scale_out,
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
inline void search_sym_batch(int nmax, const float* x, int8_t* L, const float* qw, float* scale_out) {
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

}  // namespace qk::ggml::detail::enc
