// The f32 GEMM driver (qk/linalg/sgemm.hpp): argument checks, the Goto/BLIS loop nest with packing, the split
// over threads and the portable micro-kernel. Compiled without ISA flags; the AVX2 and AVX-512 micro-kernels live
// in their own files and are chosen with the integer kernels' ISA (active_isa()).
//
// Loop nest (K. Goto, R. van de Geijn: "Anatomy of high-performance matrix multiplication", ACM TOMS 34(3), 2008;
// F. Van Zee, R. van de Geijn: "BLIS", ACM TOMS 41(3), 2015): for each NC-wide panel of B and KC-deep slice of K,
// pack the KC x NC block of B (L3); for each MC-tall block of A pack it (L2); then walk NR-wide micro-panels of B
// (L1) and MR-tall micro-panels of A through the register-tile micro-kernel.
#include <algorithm>
#include <cstdlib>
#include <memory>

#include <omp.h>

#include "qk/detail/omp.hpp"
#include "qk/core/error.hpp"
#include "qk/core/threads.hpp"
#include "qk/util/isa.hpp"
#include "qk/linalg/sgemm.hpp"
#include "sgemm_internal.hpp"

namespace qk::linalg {
namespace {

using detail::SgemmKernel;

constexpr int kPortableMr = 8, kPortableNr = 4;

void micro_portable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  float acc[kPortableNr][kPortableMr] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int j = 0; j < kPortableNr; ++j)
      for (int i = 0; i < kPortableMr; ++i) acc[j][i] += a[i] * b[j];
    a += kPortableMr;
    b += kPortableNr;
  }
  for (int j = 0; j < kPortableNr; ++j)
    for (int i = 0; i < kPortableMr; ++i) {
      float& cij = c[i + j * ldc];
      cij = beta == 0.0f ? alpha * acc[j][i] : alpha * acc[j][i] + beta * cij;
    }
}

const SgemmKernel& kernel_portable() {
  static const SgemmKernel k{"qk_sgemm_8x4__portable", kPortableMr, kPortableNr, micro_portable,
                             detail::pack_a<kPortableMr>, detail::pack_b<kPortableNr>};
  return k;
}

const SgemmKernel& active_kernel() {
  switch (active_isa()) {
    case Isa::avx512:
    case Isa::avx512vnni: return detail::sgemm_kernel_avx512();
    case Isa::avx2:
    case Isa::avxvnni: return detail::sgemm_kernel_avx2();
    case Isa::scalar: break;
  }
  return kernel_portable();
}

constexpr int64_t kKc = 384;       // depth of a packed slice (B micro-panel kKc x NR stays in L1)
constexpr int64_t kMcTarget = 192; // rows of a packed A block (kMc x kKc floats in L2)
constexpr int64_t kNcTarget = 3072;

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, AlignedFree>;

Buffer alloc_floats(int64_t n) {
  const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (!p) throw std::bad_alloc();
  return Buffer(p);
}

// Packing space of the calling thread, kept between calls: a fresh allocation per call was an mmap/munmap pair
// for these sizes, and every munmap of a multithreaded process interrupts the other cores to flush their TLBs
// (a fifth of the time of the 2-thread Hessian). It only grows, to at most (MC + NC) x KC floats (about 5 MB),
// and is freed when the thread ends. It holds no result: every call packs before it reads.
struct Scratch {
  Buffer buf;
  int64_t capacity = 0;
  float* get(int64_t n) {
    if (n > capacity) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
      auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      buf.reset(p);
      capacity = n;
    }
    return buf.get();
  }
};

float* scratch(int64_t n) {
  thread_local Scratch s;
  return s.get(n);
}

// C = beta·C (beta == 0: zero, without reading C).
void scale_c(int64_t m, int64_t n, float beta, const SgemmMutView& C) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      float& c = C.p[i * C.rs + j * C.cs];
      c = beta == 0.0f ? 0.0f : beta * c;
    }
}

// c[i, j] = alpha · tile[i, j] + beta · c[i, j] (beta == 0: c not read) for the rows x cols corner of a micro-tile
// computed into a column-major buffer (leading dimension mr), c a view of C. Column j starts at row
// max(0, first_row + j): first_row = (column offset - row offset) of the tile keeps only C's lower triangle, and
// first_row = -cols keeps every row.
void add_tile(const float* tile, int mr, int64_t rows, int64_t cols, float alpha, float beta, const SgemmMutView& C,
              float* c, int64_t first_row) {
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = std::max<int64_t>(0, first_row + j); i < rows; ++i) {
      float& cij = c[i * C.rs + j * C.cs];
      const float v = alpha * tile[i + j * mr];
      cij = beta == 0.0f ? v : v + beta * cij;
    }
}

// One thread's product; C column-major or with any strides (tiles that are partial or not unit-stride go through a
// small buffer). row_off / col_off: where this part's rows and columns sit in the whole product, for the triangle
// tests.
void serial(const SgemmKernel& K, int64_t m, int64_t n, int64_t k, float alpha, const SgemmView& A,
            const SgemmView& B, float beta, const SgemmMutView& C, SgemmTriangle tri, int64_t row_off,
            int64_t col_off) {
  const int mr = K.mr, nr = K.nr;
  const int64_t mc_max = std::max<int64_t>(mr, kMcTarget / mr * mr);
  const int64_t nc_max = std::max<int64_t>(nr, kNcTarget / nr * nr);
  const int64_t kc_max = std::min(kKc, k);
  const int64_t mc_alloc = std::min(mc_max, (m + mr - 1) / mr * mr);
  const int64_t nc_alloc = std::min(nc_max, (n + nr - 1) / nr * nr);
  float* const abase = scratch((mc_alloc + nc_alloc) * kc_max + 16);
  float* const abuf_p = abase;
  float* const bbuf_p = abase + (mc_alloc * kc_max + 15) / 16 * 16;
  alignas(64) float tile[32 * 16];  // the largest MR x NR of any micro-kernel
  const bool c_colmajor = C.rs == 1;

  for (int64_t j0 = 0; j0 < n; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, n - j0);
    const int64_t jg0 = j0 + col_off, jg1 = jg0 + nc;  // global column range
    for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - p0);
      // Depth slices where B is zero for every column of the panel.
      if (tri == SgemmTriangle::b_lower && p0 + kc <= jg0) continue;
      if (tri == SgemmTriangle::b_upper && p0 >= jg1) continue;
      K.pack_b(B, p0, kc, j0, nc, bbuf_p);
      for (int64_t i0 = 0; i0 < m; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, m - i0);
        const int64_t ig0 = i0 + row_off, ig1 = ig0 + mc;
        if (tri == SgemmTriangle::a_lower && p0 >= ig1) continue;
        if (tri == SgemmTriangle::a_upper && p0 + kc <= ig0) continue;
        K.pack_a(A, i0, mc, p0, kc, abuf_p);
        for (int64_t jb = 0; jb < nc; jb += nr) {
          const int64_t cols = std::min<int64_t>(nr, nc - jb);
          const int64_t jg = jg0 + jb;
          for (int64_t ib = 0; ib < mc; ib += mr) {
            const int64_t rows = std::min<int64_t>(mr, mc - ib);
            const int64_t ig = ig0 + ib;
            // The depth range [lo, hi) of this slice where the triangular operand can be non-zero for this tile,
            // and the first slice the tile receives (where beta applies).
            int64_t lo = 0, hi = kc, first = 0;
            switch (tri) {
              case SgemmTriangle::b_lower: lo = jg - p0; first = jg / kc_max * kc_max; break;
              case SgemmTriangle::b_upper: hi = jg + cols - p0; break;
              case SgemmTriangle::a_lower: hi = ig + rows - p0; break;
              case SgemmTriangle::a_upper: lo = ig - p0; first = ig / kc_max * kc_max; break;
              case SgemmTriangle::none: break;
            }
            lo = std::max<int64_t>(lo, 0);
            hi = std::min(hi, kc);
            if (lo >= hi) continue;
            const float b_eff = p0 == first ? beta : 1.0f;
            const float* ap = abuf_p + ib * kc + lo * mr;
            const float* bp = bbuf_p + jb * kc + lo * nr;
            float* c = C.p + (i0 + ib) * C.rs + (j0 + jb) * C.cs;
            if (c_colmajor && rows == mr && cols == nr) {
              K.fn(hi - lo, ap, bp, c, C.cs, alpha, b_eff);
            } else {
              K.fn(hi - lo, ap, bp, tile, mr, 1.0f, 0.0f);
              add_tile(tile, mr, rows, cols, alpha, b_eff, C, c, -cols);
            }
          }
        }
      }
    }
  }
}

void check_view(const char* what, const void* p, int64_t rows, int64_t cols) {
  if (rows > 0 && cols > 0 && !p) fail<InvalidArgument>("sgemm: {} is a null pointer", what);
}

}  // namespace

const char* sgemm_kernel_name() { return active_kernel().name; }

void ssyrk_lower(int64_t n, int64_t k, float alpha, SgemmView A, float beta, SgemmMutView C, int threads) {
  if (n < 0 || k < 0) fail<InvalidArgument>("ssyrk_lower: negative size {}x{}", n, k);
  check_view("A", A.p, n, k);
  check_view("C", C.p, n, n);
  if (n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = j; i < n; ++i) {
        float& c = C.p[i * C.rs + j * C.cs];
        c = beta == 0.0f ? 0.0f : beta * c;
      }
    return;
  }
  const SgemmKernel& K = active_kernel();
  const int mr = K.mr, nr = K.nr;
  const int64_t kc_max = std::min(kKc, k);
  const int64_t mc = std::max<int64_t>(mr, kMcTarget / mr * mr);
  const int64_t a_pad = (n + mr - 1) / mr * mr, b_pad = (n + nr - 1) / nr * nr;
  // One packed slice of A (as MR-row panels) and of Aᵀ (as NR-column panels), shared by the threads.
  Buffer pack = alloc_floats((a_pad + b_pad) * kc_max);
  float* const ap_all = pack.get();
  float* const bp_all = pack.get() + a_pad * kc_max;
  const SgemmView At{A.p, A.cs, A.rs};
  const bool c_colmajor = C.rs == 1;
  const int64_t blocks = (n + mc - 1) / mc;
  int nt = resolve_threads(threads);
  if (omp_in_parallel() || static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(k) < double(1 << 22))
    nt = 1;
  // the region packs and runs micro-kernels into buffers allocated above: nothing in it throws
#pragma omp parallel num_threads(nt)
  {
    alignas(64) float tile[32 * 16];
    const int me = omp_get_thread_num(), team = omp_get_num_threads();
    for (int64_t p0 = 0; p0 < k; p0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - p0);
      const float b_eff = p0 == 0 ? beta : 1.0f;
      {  // this thread's share of both packs, in whole micro-panels
        const int64_t pa = a_pad / mr, pb = b_pad / nr;
        const int64_t a0 = pa * me / team * mr, a1 = std::min(n, pa * (me + 1) / team * mr);
        const int64_t b0 = pb * me / team * nr, b1 = std::min(n, pb * (me + 1) / team * nr);
        if (a1 > a0) K.pack_a(A, a0, a1 - a0, p0, kc, ap_all + a0 * kc);
        if (b1 > b0) K.pack_b(At, p0, kc, b0, b1 - b0, bp_all + b0 * kc);
      }
#pragma omp barrier
      // Row blocks, the longest (bottom) first; each covers the columns up to its last row.
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = blocks - 1; blk >= 0; --blk) {
        const int64_t i0 = blk * mc, i1 = std::min(n, i0 + mc);
        for (int64_t j0 = 0; j0 < i1; j0 += nr) {
          const int64_t cols = std::min<int64_t>(nr, n - j0);
          const float* bp = bp_all + j0 * kc;
          for (int64_t ig = i0; ig < i1; ig += mr) {
            const int64_t rows = std::min<int64_t>(mr, i1 - ig);
            if (j0 > ig + rows - 1) continue;  // the tile lies above the diagonal
            const float* ap = ap_all + ig * kc;
            float* c = C.p + ig * C.rs + j0 * C.cs;
            const bool below = j0 + cols - 1 <= ig;
            if (below && c_colmajor && rows == mr && cols == nr) {
              K.fn(kc, ap, bp, c, C.cs, alpha, b_eff);
            } else {
              K.fn(kc, ap, bp, tile, mr, 1.0f, 0.0f);
              add_tile(tile, mr, rows, cols, alpha, b_eff, C, c, j0 - ig);
            }
          }
        }
      }
    }
  }
}

void sgemm(int64_t m, int64_t n, int64_t k, float alpha, SgemmView A, SgemmView B, float beta, SgemmMutView C,
           int threads, SgemmTriangle tri) {
  if (m < 0 || n < 0 || k < 0) fail<InvalidArgument>("sgemm: negative size {}x{}x{}", m, n, k);
  const bool tri_a = tri == SgemmTriangle::a_lower || tri == SgemmTriangle::a_upper;
  const bool tri_b = tri == SgemmTriangle::b_lower || tri == SgemmTriangle::b_upper;
  if ((tri_a && m != k) || (tri_b && n != k))
    fail<InvalidArgument>("sgemm: a triangular operand must be square ({}x{}x{})", m, n, k);
  check_view("A", A.p, m, k);
  check_view("B", B.p, k, n);
  check_view("C", C.p, m, n);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    scale_c(m, n, beta, C);
    return;
  }
  // The micro-kernels write columns of C: a row-major C is handled as Cᵀ = Bᵀ Aᵀ.
  if (C.rs != 1 && C.cs == 1) {
    std::swap(m, n);
    std::swap(A, B);
    std::swap(A.rs, A.cs);
    std::swap(B.rs, B.cs);
    std::swap(C.rs, C.cs);
    // (A lower)ᵀ is upper and becomes the B operand, and so on.
    switch (tri) {
      case SgemmTriangle::a_lower: tri = SgemmTriangle::b_upper; break;
      case SgemmTriangle::a_upper: tri = SgemmTriangle::b_lower; break;
      case SgemmTriangle::b_lower: tri = SgemmTriangle::a_upper; break;
      case SgemmTriangle::b_upper: tri = SgemmTriangle::a_lower; break;
      case SgemmTriangle::none: break;
    }
  }
  const SgemmKernel& K = active_kernel();
  const int nt = resolve_threads(threads);
  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (nt <= 1 || work < double(1 << 21) || omp_in_parallel()) {
    serial(K, m, n, k, alpha, A, B, beta, C, tri, 0, 0);
    return;
  }
  // Split the larger of the two output dimensions into parts aligned to the micro-tile.
  const bool by_cols = n / K.nr >= m / K.mr;
  const int64_t unit = by_cols ? K.nr : K.mr;
  const int64_t units = ((by_cols ? n : m) + unit - 1) / unit;
  const int parts = static_cast<int>(std::min<int64_t>(nt, units));
  qk::detail::FirstException errors;  // serial() allocates its packing buffers: nothing may leave the region
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int t = 0; t < parts; ++t) {
    const int64_t b = units * t / parts * unit, e = std::min(units * (t + 1) / parts * unit, by_cols ? n : m);
    if (e <= b) continue;
    errors.run([&] {
      if (by_cols) {
        SgemmView Bt{B.p + b * B.cs, B.rs, B.cs};
        SgemmMutView Ct{C.p + b * C.cs, C.rs, C.cs};
        serial(K, m, e - b, k, alpha, A, Bt, beta, Ct, tri, 0, b);
      } else {
        SgemmView At{A.p + b * A.rs, A.rs, A.cs};
        SgemmMutView Ct{C.p + b * C.rs, C.rs, C.cs};
        serial(K, e - b, n, k, alpha, At, B, beta, Ct, tri, b, 0);
      }
    });
  }
  errors.rethrow();
}

}  // namespace qk::linalg
