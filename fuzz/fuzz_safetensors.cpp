// libFuzzer target: the safetensors parser (see fuzz_common.hpp).
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return qk::fuzz::run(data, size, qk::io::detail::parse_safetensors);
}
