#pragma once
// HessianAccumulator: the layer Hessian of GPTQ, H = 2/n · Σ xᵢ xᵢᵀ over the n calibration tokens xᵢ (the rows
// of every activation batch X, tokens x in_features), accumulated batch by batch without keeping X. This is the
// scaling of the GPTQ reference (IST-DASLab/gptq, GPTQ.add_batch: H *= n/(n+t); H += 2/(n+t) XᵀX).
//
// It keeps the plain sum S = Σ XᵀX (float32, lower triangle) and n, so partial accumulators (threads, files,
// machines) merge exactly by addition. save()/load() use a small binary file:
//   offset 0  char[8]  "QKHESS\0\1"      magic
//          8  uint32   version (1)
//         12  uint32   element type (1 = float32)
//         16  int64    dim (in_features)
//         24  int64    n (tokens accumulated)
//         32  float32  S, dim x dim, column-major (full matrix)
//         ..  uint64   FNV-1a 64 of every byte before it
// all little-endian. A file of the wrong size, magic, version or checksum is a FormatError naming it.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"
#include "qk/core/params.hpp"
#include "qk/core/quantize.hpp"
#include "qk/core/threads.hpp"
#include "qk/util/atomic_file.hpp"
#include "qk/linalg/dense.hpp"

namespace qk {

class HessianAccumulator {
 public:
  HessianAccumulator() = default;
  explicit HessianAccumulator(int64_t dim) : dim_(dim) {
    if (dim <= 0) fail<InvalidArgument>("HessianAccumulator: dimension must be positive, got {}", dim);
    linalg::zero_touched(S_, dim, dim);
  }

  int64_t dim() const { return dim_; }
  int64_t samples() const { return n_; }

  // Adds a batch of activations (tokens x dim). NaN/Inf in X: NumericError naming [token, feature].
  void add(const Eigen::Ref<const RowMatrixXf>& X, int threads = 0) {
    if (X.cols() != dim_)
      fail<ShapeError>("HessianAccumulator: batch has {} features, the accumulator {}", X.cols(), dim_);
    if (X.rows() == 0) return;
    for (Eigen::Index t = 0; t < X.rows(); ++t)
      if (!detail::all_finite(X.row(t).data(), X.cols())) detail::report_non_finite(X, "calibration activations X");
    const int nt = resolve_threads(threads);
    detail::OmpThreadsScope scope(nt);
    linalg::gram_accumulate(S_, X, nt);
    n_ += X.rows();
  }

  // Adds another accumulator's tokens (same dimension).
  void merge(const HessianAccumulator& o) {
    if (o.dim_ != dim_) fail<ShapeError>("HessianAccumulator::merge: dimensions {} and {} differ", dim_, o.dim_);
    S_.triangularView<Eigen::Lower>() += o.S_;
    n_ += o.n_;
  }

  // H = 2/n Σ x xᵀ, the full symmetric matrix (zero when nothing was added).
  Eigen::MatrixXf hessian() const {
    return linalg::symmetric_from_lower(S_, n_ > 0 ? static_cast<float>(2.0 / static_cast<double>(n_)) : 1.0f);
  }
  // The plain sum Σ x xᵀ (full symmetric).
  Eigen::MatrixXf gram() const { return linalg::symmetric_from_lower(S_, 1.0f); }
  // Its diagonal alone: each feature's sum of squares Σ x_j².
  Eigen::VectorXf gram_diagonal() const { return S_.diagonal(); }

  // Writes the accumulator (format above); opts says what the file may replace (qk/util/atomic_file.hpp).
  void save(const std::filesystem::path& path, const util::WriteOptions& opts = {}) const {
    std::vector<char> buf(header_size + static_cast<size_t>(dim_ * dim_) * 4 + 8);
    std::memcpy(buf.data(), magic, 8);
    put<uint32_t>(buf, 8, version);
    put<uint32_t>(buf, 12, 1);
    put<int64_t>(buf, 16, dim_);
    put<int64_t>(buf, 24, n_);
    Eigen::MatrixXf full = gram();
    std::memcpy(buf.data() + header_size, full.data(), static_cast<size_t>(dim_ * dim_) * 4);
    put<uint64_t>(buf, buf.size() - 8, fnv1a(buf.data(), buf.size() - 8));
    // through qk's atomic writer: a temporary beside the file, removed on failure and on signals
    util::AtomicFile f(path, opts);
    f.write(buf.data(), buf.size());
    f.commit();
  }

  static HessianAccumulator load(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail<IoError>("{}: cannot open", path.string());
    std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const std::string name = path.string();
    if (buf.size() < header_size + 8) fail<FormatError>("{}: truncated Hessian file ({} bytes)", name, buf.size());
    if (std::memcmp(buf.data(), magic, 8) != 0) fail<FormatError>("{}: not a qk Hessian file (bad magic)", name);
    const auto ver = get<uint32_t>(buf, 8), et = get<uint32_t>(buf, 12);
    if (ver != version) fail<FormatError>("{}: unsupported Hessian file version {}", name, ver);
    if (et != 1) fail<FormatError>("{}: unsupported element type {}", name, et);
    const auto dim = get<int64_t>(buf, 16), n = get<int64_t>(buf, 24);
    if (dim <= 0 || dim > (int64_t{1} << 20) || n < 0)
      fail<FormatError>("{}: bad header (dim {}, samples {})", name, dim, n);
    const uint64_t want = header_size + static_cast<uint64_t>(dim) * static_cast<uint64_t>(dim) * 4 + 8;
    if (buf.size() != want)
      fail<FormatError>("{}: {} bytes, a {}x{} Hessian needs {} (truncated or corrupt)", name, buf.size(), dim, dim,
                        want);
    if (get<uint64_t>(buf, buf.size() - 8) != fnv1a(buf.data(), buf.size() - 8))
      fail<FormatError>("{}: checksum mismatch (corrupt file)", name);
    HessianAccumulator h(dim);
    std::memcpy(h.S_.data(), buf.data() + header_size, static_cast<size_t>(dim * dim) * 4);
    if (!h.S_.allFinite()) fail<FormatError>("{}: non-finite values in the Hessian", name);
    h.n_ = n;
    return h;
  }

 private:
  static constexpr char magic[8] = {'Q', 'K', 'H', 'E', 'S', 'S', '\0', '\1'};
  static constexpr uint32_t version = 1;
  static constexpr size_t header_size = 32;

  template <typename T>
  static void put(std::vector<char>& b, size_t off, T v) {
    std::memcpy(b.data() + off, &v, sizeof(T));
  }
  template <typename T>
  static T get(const std::vector<char>& b, size_t off) {
    T v;
    std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
  }
  static uint64_t fnv1a(const char* p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(p[i]);
      h *= 1099511628211ULL;
    }
    return h;
  }

  int64_t dim_ = 0;
  int64_t n_ = 0;
  Eigen::MatrixXf S_;
};

}  // namespace qk
