// TensorFile: mmap + format detection + conversion of any dtype to float32.
#include "qk/io/tensor_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/ranges.h>

#include "detail.hpp"
#include "qk/core/half.hpp"
#include "qk/io/gguf.hpp"
#include "qk/io/llama2c.hpp"

namespace qk::io {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I16: return "I16";
    case DType::U16: return "U16";
    case DType::I32: return "I32";
    case DType::U32: return "U32";
    case DType::I64: return "I64";
    case DType::U64: return "U64";
    case DType::Bool: return "BOOL";
    case DType::Ggml: return "GGML";
    case DType::F8_E5M2: return "F8_E5M2";
    case DType::F8_E4M3: return "F8_E4M3";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: case DType::U64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
    case DType::I8: case DType::U8: case DType::Bool: case DType::F8_E5M2: case DType::F8_E4M3: return 1;
    case DType::Ggml: return 0;
  }
  return 0;
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::string TensorInfo::type_name() const {
  if (dtype == DType::Ggml) {
    const GgmlTypeInfo* ti = ggml_type_info(ggml_type);
    return ti ? ti->name : fmt::format("ggml#{}", ggml_type);
  }
  return dtype_name(dtype);
}

namespace {

// The concrete view: owns the mapping (or borrows a memory buffer) and the parsed header.
class MappedFile final : public TensorFile {
 public:
  MappedFile(std::filesystem::path path, const std::byte* base, size_t size, bool owns, FileFormat fmt)
      : owns_(owns), fmt_(fmt) {
    path_ = std::move(path);
    base_ = base;
    size_ = size;
    mapped_ = owns;
  }
  ~MappedFile() override {
    if (owns_ && base_) munmap(const_cast<std::byte*>(base_), size_);
  }
  FileFormat format() const override { return fmt_; }
  void take(detail::Parsed&& p) {
    tensors_ = std::move(p.tensors);
    metadata_ = std::move(p.metadata);
  }

 private:
  bool owns_;
  FileFormat fmt_;
};

FileFormat detect(std::span<const std::byte> d, const std::string& name) {
  auto starts = [&](std::string_view magic) {
    return d.size() >= magic.size() && std::memcmp(d.data(), magic.data(), magic.size()) == 0;
  };
  if (starts("\x93NUMPY")) return FileFormat::Npy;
  if (starts("GGUF")) return FileFormat::Gguf;
  // llama2.c has no magic: only a plausible header whose implied size is exactly the file's (never a safetensors
  // file, whose u64 header length puts zeros where llama2.c has hidden_dim). Newer exports are refused by name.
  if (looks_like_llama2c(d) || starts("24ka")) return FileFormat::Llama2c;
  // safetensors: u64 header length then '{' (JSON object)
  if (d.size() >= 9 && static_cast<char>(d[8]) == '{') return FileFormat::Safetensors;
  if (d.empty()) fail<FormatError>("{}: empty file", name);
  fail<FormatError>("{}: unknown format (not .npy, safetensors, GGUF or a llama2.c checkpoint by its content)", name);
}

std::unique_ptr<TensorFile> build(std::filesystem::path path, const std::byte* base, size_t size, bool owns,
                                  std::optional<FileFormat> forced) {
  const std::string name = path.string();
  std::span<const std::byte> d(base, size);
  FileFormat f;
  try {
    f = forced ? *forced : detect(d, name);
  } catch (...) {
    if (owns && base) munmap(const_cast<std::byte*>(base), size);
    throw;
  }
  auto file = std::make_unique<MappedFile>(std::move(path), base, size, owns, f);  // unmaps on throw below
  switch (f) {
    case FileFormat::Npy: file->take(detail::parse_npy(d, name)); break;
    case FileFormat::Safetensors: file->take(detail::parse_safetensors(d, name)); break;
    case FileFormat::Gguf: file->take(detail::parse_gguf(d, name)); break;
    case FileFormat::Llama2c: file->take(detail::parse_llama2c(d, name)); break;
  }
  return file;
}

template <typename T>
void convert(const std::byte* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

// OCP 8-bit floats as safetensors (and PyTorch) define them.
// E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN; E5M2: bias 15, IEEE-like with Inf/NaN.
float f8_e4m3_to_f32(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int e = (b >> 3) & 0xF, m = b & 0x7;
  if (e == 0xF && m == 0x7) return std::numeric_limits<float>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
  return sign * std::ldexp(1.0f + m / 8.0f, e - 7);
}
float f8_e5m2_to_f32(uint8_t b) { return fp16_to_fp32(static_cast<uint16_t>(b) << 8); }

}  // namespace

std::unique_ptr<TensorFile> TensorFile::open(const std::filesystem::path& path) {
  return detail::open_mapped(path, std::nullopt);
}

std::unique_ptr<TensorFile> TensorFile::open_memory(std::span<const std::byte> data, std::string name) {
  return detail::open_buffer(data, std::move(name), std::nullopt);
}

std::unique_ptr<TensorFile> detail::open_buffer(std::span<const std::byte> data, std::string name,
                                                std::optional<FileFormat> forced) {
  return build(std::filesystem::path(std::move(name)), data.data(), data.size(), false, forced);
}

std::unique_ptr<TensorFile> detail::open_mapped(const std::filesystem::path& path, std::optional<FileFormat> forced) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail<IoError>("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    fail<IoError>("{}: cannot stat: {}", path.string(), std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail<IoError>("{}: not a regular file", path.string());
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail<FormatError>("{}: empty file", path.string());
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) fail<IoError>("{}: cannot map: {}", path.string(), std::strerror(e));
  return build(path, static_cast<const std::byte*>(p), size, true, forced);
}

const TensorInfo* TensorFile::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorInfo& TensorFile::tensor(std::string_view name) const {
  if (const TensorInfo* t = find(name)) return *t;
  fail<FormatError>("{}: no tensor '{}'", path_.string(), name);
}

void TensorFile::release(std::span<const std::byte> b) const {
  if (!mapped_ || b.empty() || b.data() < base_ || b.data() + b.size() > base_ + size_) return;
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const auto a = reinterpret_cast<uintptr_t>(b.data());
  const uintptr_t begin = (a + page - 1) / page * page, end = (a + b.size()) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::span<const std::byte> TensorFile::bytes(const TensorInfo& t) const {
  // Parsers validated offset + nbytes <= size; re-check so a caller-made TensorInfo cannot read out of bounds.
  if (t.offset > size_ || t.nbytes > size_ - t.offset)
    fail<FormatError>("{}: tensor '{}': bytes [{}, +{}) outside the file ({} bytes)", path_.string(), t.name,
                      t.offset, t.nbytes, size_);
  return {base_ + t.offset, static_cast<size_t>(t.nbytes)};
}

void encode_floats(const float* src, int64_t n, DType d, std::byte* out) {
  auto bad = [&](int64_t i, const char* why) {
    fail<NumericError>("element {} = {} {} {}", i, src[i], why, dtype_name(d));
  };
  switch (d) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(src[i])) bad(i, "cannot be written as");
      if (n) std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(src[i])) bad(i, "cannot be written as");
        const double v = src[i];
        std::memcpy(out + 8 * i, &v, 8);
      }
      return;
    case DType::F16:
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(src[i])) bad(i, "cannot be written as");
        const uint16_t h = d == DType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
        if ((d == DType::F16 && (h & 0x7C00u) == 0x7C00u) || (d == DType::BF16 && (h & 0x7F80u) == 0x7F80u))
          bad(i, "overflows");
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    default: fail<InvalidArgument>("cannot encode floats as {}", dtype_name(d));
  }
}

void TensorFile::read_rows(const TensorInfo& t, int64_t r0, int64_t nr, float* out) const {
  const auto b = bytes(t);
  const int64_t n_all = t.numel();
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  const int64_t rows = cols == 0 ? 0 : n_all / cols;
  if (t.dtype == DType::Ggml)
    fail<FormatError>("{}: tensor '{}': {} blocks are not plain values (qk::formats::read_matrix decodes them)",
                      path_.string(), t.name, t.type_name());
  if (static_cast<uint64_t>(n_all) * dtype_size(t.dtype) != b.size())
    fail<FormatError>("{}: tensor '{}': {} elements of {} need {} bytes, not {}", path_.string(), t.name, n_all,
                      dtype_name(t.dtype), static_cast<uint64_t>(n_all) * dtype_size(t.dtype), b.size());
  if (r0 < 0 || nr < 0 || r0 > rows || nr > rows - r0)
    fail<InvalidArgument>("{}: tensor '{}': rows [{}, +{}) outside its {} rows", path_.string(), t.name, r0, nr, rows);
  const int64_t n = nr * cols;
  const std::byte* s = b.data() + static_cast<size_t>(r0 * cols) * dtype_size(t.dtype);
  switch (t.dtype) {
    case DType::F32:
      if (n) std::memcpy(out, s, static_cast<size_t>(n) * 4);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        out[i] = fp16_to_fp32(h);
      }
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        out[i] = bf16_to_fp32(h);
      }
      break;
    case DType::F64: convert<double>(s, out, n); break;
    case DType::I8: convert<int8_t>(s, out, n); break;
    case DType::U8: convert<uint8_t>(s, out, n); break;
    case DType::I16: convert<int16_t>(s, out, n); break;
    case DType::U16: convert<uint16_t>(s, out, n); break;
    case DType::I32: convert<int32_t>(s, out, n); break;
    case DType::U32: convert<uint32_t>(s, out, n); break;
    case DType::I64: convert<int64_t>(s, out, n); break;
    case DType::U64: convert<uint64_t>(s, out, n); break;
    case DType::Bool:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(s[i]) ? 1.0f : 0.0f;
      break;
    case DType::F8_E4M3:
      for (int64_t i = 0; i < n; ++i) out[i] = f8_e4m3_to_f32(static_cast<uint8_t>(s[i]));
      break;
    case DType::F8_E5M2:
      for (int64_t i = 0; i < n; ++i) out[i] = f8_e5m2_to_f32(static_cast<uint8_t>(s[i]));
      break;
    case DType::Ggml: break;  // refused above
  }
}

RowMatrixXf TensorFile::read_matrix(const TensorInfo& t) const {
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  RowMatrixXf m(rows, cols);
  read_rows(t, 0, rows, m.data());
  return m;
}

RowMatrixXf load_matrix(const std::filesystem::path& path, std::string_view name) {
  auto f = TensorFile::open(path);
  if (!name.empty()) return f->read_matrix(f->tensor(name));
  if (f->tensors().size() != 1)
    fail<InvalidArgument>("{}: holds {} tensors; name the one to load", path.string(), f->tensors().size());
  const TensorInfo& t = f->tensors().front();
  if (t.shape.size() > 2)
    fail<ShapeError>("{}: tensor '{}' has rank {}; a matrix needs rank 1 or 2", path.string(), t.name,
                     t.shape.size());
  return f->read_matrix(t);
}

}  // namespace qk::io
