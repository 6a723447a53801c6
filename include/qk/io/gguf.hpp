#pragma once
// GGUF v3 (ggml docs/gguf.md, ggml/src/gguf.cpp): "GGUF", u32 version, u64 n_tensors, u64 n_kv, the key/value
// metadata, the tensor infos (name, u32 n_dims, u64 ne[n_dims] with ne[0] contiguous, u32 ggml type, u64 offset
// from the data section), zero padding to general.alignment (default 32), then the tensor data, each tensor at an
// aligned offset. qk presents shapes row-major (outermost first): ne reversed.
// Reading goes through TensorFile (qk/io/tensor_file.hpp); this header has the type table and the writer.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "qk/util/atomic_file.hpp"
#include "qk/io/tensor_file.hpp"

namespace qk::io {

using util::WriteOptions;  // what a writer may replace (qk/util/atomic_file.hpp)

// GGUF metadata value type ids.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12
};
const char* gguf_type_name(uint32_t t);
// The GGUF value type of a MetaValue (by the variant's alternative).
GgufType gguf_type_of(const MetaValue& v);

// One row of ggml's type table (ggml/src/ggml.c type_traits: blck_size, type_size).
struct GgmlTypeInfo {
  int id;
  const char* name;       // "Q4_K", "F16": the spelling qk prints
  const char* ggml_name;  // "q4_K", "f16": ggml's own (type_traits type_name)
  int block_size;  // elements per block (1 for plain types)
  int type_size;   // bytes per block
};
// nullptr for ids ggml does not define (or has removed).
const GgmlTypeInfo* ggml_type_info(int id);
// Every type of the table, in id order.
std::span<const GgmlTypeInfo> ggml_types();
// The id of a ggml type name ("Q4_K", case-insensitive); -1 when unknown.
int ggml_type_from_name(std::string_view name);
// The ggml type of a plain dtype (F32 0, F16 1, BF16 30, I8 24, I16 25, I32 26, I64 27, F64 28); -1 otherwise.
int ggml_type_of(DType t);
// Bytes of a tensor of `type` with row-major `shape`; FormatError-free: InvalidArgument when the last dimension is
// not a multiple of the block size or the type is unknown.
uint64_t ggml_nbytes(int type, const std::vector<int64_t>& shape);

// Metadata helpers for readers.
const MetaValue* find_meta(const std::vector<MetaEntry>& meta, std::string_view key);

// Declare metadata and tensor infos first, then stream each tensor's bytes in declaration order, then commit().
// The header (with all tensor offsets computed from the declared sizes) is written on the first write_tensor.
// general.alignment is always written (u32, `alignment`); given metadata is kept in order, later sets replace.
class GgufWriter {
 public:
  explicit GgufWriter(std::filesystem::path path, const WriteOptions& opts = {}, uint32_t alignment = 32);
  void set(std::string key, MetaValue value);   // any value type, arrays (nested too) included
  void set_file_type(uint32_t llama_ftype) { set("general.file_type", llama_ftype); }
  void set_quantization_version(uint32_t v = 2) { set("general.quantization_version", v); }
  // Copies every metadata entry of `meta` (general.alignment excepted: the writer sets its own).
  void copy_metadata(const std::vector<MetaEntry>& meta);
  // `shape` row-major; `ggml_type` an id of ggml_type_info.
  void add_tensor(std::string name, int ggml_type, std::vector<int64_t> shape);
  void write_tensor(std::span<const std::byte> bytes);
  void write_tensor(std::string_view name, std::span<const std::byte> bytes);
  void commit();
  uint32_t alignment() const { return alignment_; }

 private:
  struct Decl {
    std::string name;
    int type;
    std::vector<int64_t> shape;
    uint64_t nbytes, offset;
  };
  void write_header();
  util::AtomicFile file_;
  uint32_t alignment_;
  std::vector<MetaEntry> meta_;
  std::vector<Decl> decls_;
  size_t next_ = 0;
  uint64_t data_start_ = 0;
  bool header_written_ = false;
};

}  // namespace qk::io
