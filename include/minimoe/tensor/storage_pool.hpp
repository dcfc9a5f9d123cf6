// minimoe/tensor/storage_pool.hpp: where tensor storage comes from, a per-thread cache of
// freed blocks.
//
// Every op allocates its output, and decoding a token runs a few hundred small ops: through
// the system allocator, 64-byte-aligned blocks take the slow memalign path and reached a fifth
// of the decode time. Freed blocks therefore go onto a free list of their size class in the
// freeing thread, and the next allocation of that class in that thread pops one (no lock, no
// system call). Classes are 4 per power of two (a block is at most 25% larger than asked for),
// from 64 bytes to kLargestPooled; larger blocks and blocks beyond a thread's kMaxCachedBytes
// go straight back to the system. A block freed on another thread than the one that
// allocated it simply joins that thread's cache. The classes go up to 1 GiB because the
// largest tensors of a training step come back every step too (the `minimoe` preset's chunk
// of LM-head logits, 103 MB, and the head's gradient): from the system each arrives as a fresh
// mapping whose 4 KB pages the kernel faults in and zeroes at first touch (8% of a step,
// docs/architecture.md).
//
// Under AddressSanitizer the cache is off, so that a use after free is still caught.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>

namespace minimoe {

// Alignment of every tensor allocation: one cache line, enough for AVX-512 loads.
inline constexpr size_t kTensorAlignment = 64;

namespace detail {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kStoragePoolEnabled = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kStoragePoolEnabled = false;
#else
inline constexpr bool kStoragePoolEnabled = true;
#endif
#else
inline constexpr bool kStoragePoolEnabled = true;
#endif

class StoragePool {
 public:
  static constexpr size_t kSmallest = 64;
  static constexpr size_t kLargestPooled = size_t{1} << 30;  // 1 GiB
  static constexpr size_t kMaxCachedBytes = size_t{1} << 30;

  // The block size that serves a request of `bytes`: the smallest class holding it, or `bytes`
  // itself above kLargestPooled.
  static size_t block_size(size_t bytes) {
    const int c = size_class(bytes);
    return c < 0 ? bytes : class_bytes(c);
  }

  // A kTensorAlignment-aligned block of at least `bytes` (> 0) bytes; release it with
  // deallocate(p, bytes) with the same `bytes`.
  static void* allocate(size_t bytes) {
    const int c = size_class(bytes);
    if (c >= 0 && kStoragePoolEnabled && !destroyed()) {
      StoragePool& pool = local();
      if (FreeBlock* block = pool.heads_[c]) {
        pool.heads_[c] = block->next;
        pool.cached_bytes_ -= class_bytes(c);
        return block;
      }
    }
    return ::operator new(c < 0 ? bytes : class_bytes(c), std::align_val_t(kTensorAlignment));
  }

  static void deallocate(void* p, size_t bytes) {
    const int c = size_class(bytes);
    if (c >= 0 && kStoragePoolEnabled && !destroyed()) {
      StoragePool& pool = local();
      if (pool.cached_bytes_ + class_bytes(c) <= kMaxCachedBytes) {
        pool.heads_[c] = new (p) FreeBlock{pool.heads_[c]};
        pool.cached_bytes_ += class_bytes(c);
        return;
      }
    }
    ::operator delete(p, std::align_val_t(kTensorAlignment));
  }

  // Bytes this thread holds in free blocks.
  static size_t cached_bytes() { return destroyed() ? 0 : local().cached_bytes_; }

  // Returns this thread's free blocks to the system.
  static void release() {
    if (!destroyed()) local().release_all();
  }

  StoragePool(const StoragePool&) = delete;
  StoragePool& operator=(const StoragePool&) = delete;

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // kSmallest, then 4 classes per power of two: (5..8) / 8 of 2^p for 2^(p-1) < bytes <= 2^p.
  static constexpr int kSmallestLog2 = 6;
  static constexpr int kLargestLog2 = 30;
  static constexpr int kClasses = 1 + 4 * (kLargestLog2 - kSmallestLog2);
  static_assert(kLargestPooled == size_t{1} << kLargestLog2);

  static int size_class(size_t bytes) {
    if (bytes <= kSmallest) return 0;
    if (bytes > kLargestPooled) return -1;
    int log2 = kSmallestLog2 + 1;  // the smallest p with bytes <= 2^p
    while ((size_t{1} << log2) < bytes) ++log2;
    const size_t eighth = size_t{1} << (log2 - 3);
    const int eighths = static_cast<int>((bytes + eighth - 1) / eighth);  // 5..8
    return 1 + 4 * (log2 - kSmallestLog2 - 1) + (eighths - 5);
  }
  static size_t class_bytes(int c) {
    if (c == 0) return kSmallest;
    const int log2 = kSmallestLog2 + 1 + (c - 1) / 4;
    return (size_t{1} << (log2 - 3)) * static_cast<size_t>(5 + (c - 1) % 4);
  }

  StoragePool() = default;
  ~StoragePool() {
    release_all();
    destroyed() = true;  // blocks freed later in this thread's exit go to the system
  }

  void release_all() {
    for (FreeBlock*& head : heads_)
      while (head) {
        FreeBlock* next = head->next;
        ::operator delete(head, std::align_val_t(kTensorAlignment));
        head = next;
      }
    cached_bytes_ = 0;
  }

  static StoragePool& local() {
    thread_local StoragePool pool;
    return pool;
  }
  // Trivially destructible, so it can still be read after the pool of its thread is gone.
  static bool& destroyed() {
    thread_local bool flag = false;
    return flag;
  }

  std::array<FreeBlock*, kClasses> heads_{};
  size_t cached_bytes_ = 0;
};

// A standard allocator over the pool, for the control blocks of shared storage.
template <typename U>
struct StoragePoolAllocator {
  using value_type = U;
  StoragePoolAllocator() = default;
  template <typename V>
  StoragePoolAllocator(const StoragePoolAllocator<V>&) {}  // NOLINT: rebinding is implicit
  U* allocate(size_t n) { return static_cast<U*>(StoragePool::allocate(n * sizeof(U))); }
  void deallocate(U* p, size_t n) { StoragePool::deallocate(p, n * sizeof(U)); }
  template <typename V>
  bool operator==(const StoragePoolAllocator<V>&) const {
    return true;
  }
  template <typename V>
  bool operator!=(const StoragePoolAllocator<V>&) const {
    return false;
  }
};

}  // namespace detail
}  // namespace minimoe
