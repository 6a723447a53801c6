#pragma once
// Token-id files: little-endian int32, one id after the other (what llama.cpp's `llama-tokenize --ids` gives,
// written as binary).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "qk/util/atomic_file.hpp"

namespace qk::model {

// Writes token ids as little-endian int32 (the format read_tokens reads), through a temporary file and a rename;
// opts says what the file may replace.
void write_tokens(const std::filesystem::path& path, std::span<const int32_t> tokens,
                  const util::WriteOptions& opts = {});

// Reads a file of little-endian int32 token ids. FormatError for a size that is not a multiple of 4.
std::vector<int32_t> read_tokens(const std::filesystem::path& path);

// read_tokens, checked for use with a model: FormatError naming the file for an empty file, fewer than
// `min_count` ids (`what` says what they must fill, e.g. "one context of 128 (--ctx)"), or an id outside
// [0, vocab).
std::vector<int32_t> read_tokens(const std::filesystem::path& path, int vocab, size_t min_count,
                                 const std::string& what);

}  // namespace qk::model
