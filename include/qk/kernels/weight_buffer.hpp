#pragma once
// Storage for packed weights: a std::allocator that backs large buffers with transparent huge pages.
//
// A GEMV streams its weights once per call, so each 4 KiB page costs a TLB miss (and a page walk) per weight
// stream; 2 MiB pages remove nearly all of them. Buffers of at least kHugePageBytes are aligned to 2 MiB and
// advised MADV_HUGEPAGE, which Linux honours when transparent huge pages are "always" or "madvise"; elsewhere, or
// when the advice is refused, they are ordinary pages. Smaller buffers come from operator new.
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace qk::kernels {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

template <class T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() noexcept = default;
  template <class U>
  WeightAllocator(const WeightAllocator<U>&) noexcept {}

  T* allocate(size_t n) {
    if (n > static_cast<size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return static_cast<T*>(::operator new(bytes));
    const size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: a refusal leaves ordinary pages
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (n * sizeof(T) < kHugePageBytes)
      ::operator delete(p);
    else
      std::free(p);
  }
  template <class U>
  bool operator==(const WeightAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace qk::kernels
