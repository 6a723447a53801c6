#pragma once
// TensorFile: one read-only view over .npy, safetensors, GGUF v3 files and llama2.c checkpoints. The file is memory-mapped and parsed
// lazily: opening reads and validates the header only; tensor bytes are touched when asked for.
// Writers (safetensors.hpp, gguf.hpp, npy.hpp) stream tensors one at a time into a temporary file beside the
// target and commit by rename, so a failure never leaves a partial output.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <Eigen/Core>

#include "qk/core/error.hpp"

namespace qk::io {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Llama2c: a llama2.c checkpoint presented with GGUF names (qk/io/llama2c.hpp).
enum class FileFormat { Npy, Safetensors, Gguf, Llama2c };

// Element types of plain tensors; ggml block-quantized tensors use DType::Ggml plus TensorInfo::ggml_type.
// (F8_E5M2 / F8_E4M3 are safetensors' 8-bit floats; appended so the original values keep their numbers.)
enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, U16, I32, U32, I64, U64, Bool, Ggml, F8_E5M2, F8_E4M3 };

// "F32", "F16", "BF16", ... (safetensors spelling); "GGML" for DType::Ggml.
const char* dtype_name(DType t);
// Bytes per element; 0 for DType::Ggml (block types: see qk/io/gguf.hpp ggml_type_info).
size_t dtype_size(DType t);

// Encodes n float32 values as the plain float type d (F32, F16, BF16 or F64) into out (n * dtype_size(d) bytes).
// NumericError naming the element index when a value is NaN or Inf or overflows d (|x| > 65504 after rounding for
// F16): a conversion never writes a non-finite value. InvalidArgument for a type that is not a float type.
void encode_floats(const float* src, int64_t n, DType d, std::byte* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  int ggml_type = -1;          // GGUF tensors: ggml type id (F32 0, F16 1, Q4_0 2, ...); -1 elsewhere
  std::vector<int64_t> shape;  // row-major, outermost first: a linear weight is [out, in] in every format
  uint64_t offset = 0;         // byte offset from the start of the file
  uint64_t nbytes = 0;
  // The dtype's name, or the ggml type name ("Q4_K") for block-quantized GGUF tensors.
  std::string type_name() const;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// A shape as messages and tables print it: "[4096, 11008]".
std::string shape_text(const std::vector<int64_t>& shape);

// GGUF metadata values (safetensors __metadata__ is string to string; .npy has none).
struct MetaArray;
using MetaValue = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
                               uint64_t, int64_t, double, std::shared_ptr<MetaArray>>;
struct MetaArray {
  int element_type = 0;  // GGUF value type id of the elements
  std::vector<MetaValue> values;
};
struct MetaEntry {
  std::string key;
  MetaValue value;
};

class TensorFile {
 public:
  // Detects the format from the content (magic), not the extension; a llama2.c checkpoint (no magic) only by an
  // exact size match (qk/io/llama2c.hpp). Throws IoError / FormatError naming the file.
  static std::unique_ptr<TensorFile> open(const std::filesystem::path& path);
  // Parses a buffer already in memory (no copy: `data` must outlive the TensorFile). `name` stands for the
  // file in error messages. Same validation as open(); used by the fuzzers and tests.
  static std::unique_ptr<TensorFile> open_memory(std::span<const std::byte> data, std::string name = "<memory>");
  virtual ~TensorFile() = default;

  virtual FileFormat format() const = 0;
  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<MetaEntry>& metadata() const { return metadata_; }
  const TensorInfo* find(std::string_view name) const;
  const TensorInfo& tensor(std::string_view name) const;  // FormatError "file: no tensor 'name'"
  // The tensor's raw bytes inside the mapping (valid while the TensorFile lives).
  std::span<const std::byte> bytes(const TensorInfo& t) const;
  // The tensor converted to float32 as [rows, cols], rows = product of all dimensions but the last
  // (a 1-D tensor is one row). Plain element types only: ggml block types are decoded one floor down, by
  // qk::formats::read_matrix (qk/formats/tensor_values.hpp); here they are a FormatError. NaN/Inf are passed
  // through (callers check).
  RowMatrixXf read_matrix(const TensorInfo& t) const;
  // Rows [r0, r0 + n) of the same [rows, cols] view into out (n * cols floats), converted from the file's type.
  void read_rows(const TensorInfo& t, int64_t r0, int64_t n, float* out) const;
  size_t file_size() const { return size_; }
  // The whole mapped file.
  std::span<const std::byte> data() const { return {base_, size_}; }
  // Gives the mapped pages of `bytes` (a range inside data(), e.g. part of bytes(t)) back to the page cache: the
  // process's resident memory drops, and a later read maps them again (from the cache, or the disk). Pages that the
  // range only partly covers are kept. A no-op for buffers opened with open_memory.
  void release(std::span<const std::byte> bytes) const;
  void release(const TensorInfo& t) const { release(bytes(t)); }

 protected:
  std::filesystem::path path_;
  std::vector<TensorInfo> tensors_;
  std::vector<MetaEntry> metadata_;
  const std::byte* base_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // base_ is this object's own mapping
};

// A float matrix from a file: the array of a .npy, or the tensor `name` of a safetensors/GGUF file
// (when name is empty the file must hold exactly one tensor of rank 1 or 2). Plain element types only
// (qk::formats::load_matrix decodes ggml block types too).
RowMatrixXf load_matrix(const std::filesystem::path& path, std::string_view name = {});

}  // namespace qk::io
