#pragma once
namespace qk {
// The library's version, "major.minor.patch".
const char* version();
}  // namespace qk
