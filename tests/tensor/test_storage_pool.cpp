#include <minimoe/tensor/storage_pool.hpp>
#include <minimoe/tensor/tensor.hpp>

#include <thread>
#include <vector>

#include "../test_util.hpp"

using namespace minimoe;
using detail::StoragePool;

namespace {
bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kTensorAlignment == 0; }
}  // namespace

TEST_CASE("StoragePool size classes hold the request and waste at most a quarter") {
  CHECK(StoragePool::block_size(1) == 64);
  CHECK(StoragePool::block_size(64) == 64);
  CHECK(StoragePool::block_size(65) == 80);
  CHECK(StoragePool::block_size(128) == 128);
  CHECK(StoragePool::block_size(129) == 160);
  CHECK(StoragePool::block_size(StoragePool::kLargestPooled) == StoragePool::kLargestPooled);
  CHECK(StoragePool::block_size(StoragePool::kLargestPooled + 1) ==
        StoragePool::kLargestPooled + 1);
  size_t previous = 0;
  for (size_t bytes = 1; bytes <= (size_t{1} << 22); bytes = bytes * 9 / 8 + 1) {
    const size_t block = StoragePool::block_size(bytes);
    CHECK(block >= bytes);
    CHECK(block >= previous);  // monotonic: a larger request never gets a smaller block
    if (bytes > 64) CHECK(4 * block <= 5 * bytes + 4 * 64);
    previous = block;
  }
}

TEST_CASE("StoragePool reuses a freed block of the same class, aligned") {
  StoragePool::release();
  for (size_t bytes : {size_t{1}, size_t{100}, size_t{4096}, size_t{3} << 20}) {
    void* a = StoragePool::allocate(bytes);
    REQUIRE(a != nullptr);
    CHECK(aligned(a));
    StoragePool::deallocate(a, bytes);
    void* b = StoragePool::allocate(StoragePool::block_size(bytes));  // the same class
    CHECK(aligned(b));
    if (detail::kStoragePoolEnabled) CHECK(b == a);
    StoragePool::deallocate(b, StoragePool::block_size(bytes));
  }
  if (detail::kStoragePoolEnabled) CHECK(StoragePool::cached_bytes() > 0);
  StoragePool::release();
  CHECK(StoragePool::cached_bytes() == 0);
}

TEST_CASE("StoragePool caches at most kMaxCachedBytes per thread and not the largest blocks") {
  StoragePool::release();
  const size_t big = StoragePool::kLargestPooled;
  std::vector<void*> blocks;
  for (size_t total = 0; total <= StoragePool::kMaxCachedBytes; total += big)
    blocks.push_back(StoragePool::allocate(big));
  for (void* p : blocks) StoragePool::deallocate(p, big);
  CHECK(StoragePool::cached_bytes() <= StoragePool::kMaxCachedBytes);
  const size_t before = StoragePool::cached_bytes();
  void* huge = StoragePool::allocate(big + 1);
  CHECK(aligned(huge));
  StoragePool::deallocate(huge, big + 1);
  CHECK(StoragePool::cached_bytes() == before);  // above kLargestPooled: back to the system
  StoragePool::release();
}

TEST_CASE("StoragePool: blocks freed on another thread, and threads that exit") {
  StoragePool::release();
  std::vector<void*> blocks;
  for (int i = 0; i < 16; ++i) blocks.push_back(StoragePool::allocate(1000));
  std::thread other([&] {
    for (void* p : blocks) StoragePool::deallocate(p, 1000);  // into the other thread's cache
    if (detail::kStoragePoolEnabled) CHECK(StoragePool::cached_bytes() == 16 * 1024);
    Tensor<float> kept = Tensor<float>::ones({300});  // still alive when the pool goes away
    static Tensor<float> outlives;
    outlives = kept;
  });
  other.join();
  CHECK(StoragePool::cached_bytes() == 0);  // this thread's cache saw none of them
}

TEST_CASE("Tensors allocated through the pool keep their contents and alignment") {
  std::vector<Tensor<double>> tensors;
  for (int64_t n = 1; n < 5000; n = n * 3 + 1) {
    tensors.push_back(Tensor<double>::full({n}, static_cast<double>(n)));
    CHECK(aligned(tensors.back().data()));
  }
  tensors.erase(tensors.begin() + 2);  // its block goes back to the pool
  const size_t filled = tensors.size();
  for (int64_t n = 1; n < 5000; n = n * 3 + 1) tensors.push_back(Tensor<double>::zeros({n}));
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor<double>& t = tensors[i];
    const double expected = i < filled ? static_cast<double>(t.numel()) : 0.0;
    for (int64_t j = 0; j < t.numel(); ++j) REQUIRE(t.data()[j] == expected);
  }
}
