// libFuzzer target: the llama2.c checkpoint parser (see fuzz_common.hpp). Most mutations change the size a header
// implies, so the interesting inputs are the header fields themselves: bounds, divisibility, size arithmetic.
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return qk::fuzz::run(data, size, qk::io::detail::parse_llama2c);
}
