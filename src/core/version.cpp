// Compiled part of the core: the library's version string.
#include "qk/core/version.hpp"

namespace qk {
const char* version() { return "0.1.0"; }
}  // namespace qk
