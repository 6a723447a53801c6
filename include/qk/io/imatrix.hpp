#pragma once
// Importance matrices written by llama.cpp's llama-imatrix: per weight tensor, the mean of x² over the
// calibration tokens for each input column (what ggml's importance-weighted encoders take as quant_weights).
// Two formats are read:
//  - GGUF (current llama-imatrix): tensors "<weight>.in_sum2" [rows, cols] and "<weight>.counts" [rows]:
//    importance = in_sum2 / count (1 where the count is 0), rows concatenated;
//  - the legacy binary file: i32 entry count; per entry i32 name length, name, i32 ncall, i32 nval, nval f32
//    values (divided here by ncall).
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qk::io {

// Weight name -> importance vector. IoError when the file cannot be read, FormatError naming the file and entry
// when it is neither format or is inconsistent.
std::map<std::string, std::vector<float>> read_imatrix(const std::filesystem::path& path);

}  // namespace qk::io
