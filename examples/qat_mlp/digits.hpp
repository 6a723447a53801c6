#pragma once
// The handwritten digits (digits.npy next to this file, see README.md): 1,797 8x8 images with pixel values 0..16
// and a label 0..9, split once into a training and a test set by a seeded shuffle.
#include <cstdint>
#include <filesystem>
#include <vector>

#include <qk/core/params.hpp>

#include "rng.hpp"

namespace qat_mlp {

struct Dataset {
  qk::RowMatrixXf x;   // [n, 64], pixels / 16 (values in [0, 1])
  std::vector<int> y;  // [n], labels 0..9
  int64_t size() const { return x.rows(); }
};

struct Split {
  Dataset train, test;
};

// Reads the [1797, 65] uint8 array (64 pixels then the label per row) through qk's TensorFile and splits it:
// a Fisher-Yates shuffle from `seed` (rng.hpp), the first `test_count` images are the test set.
// qk::FormatError for a file of another shape or dtype, pixel values above 16 or labels above 9.
Split load_digits(const std::filesystem::path& npy, uint64_t seed, int64_t test_count = 360);

}  // namespace qat_mlp
