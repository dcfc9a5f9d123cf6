#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <minimoe/distributed/data_parallel.hpp>
#include <minimoe/distributed/mpi.hpp>

using namespace minimoe;

TEST_CASE("MPI process group: sums, broadcasts, any") {
  MpiProcessGroup group(20);
  const int R = group.size(), r = group.rank();
  REQUIRE(R >= 2);

  std::vector<double> d = {double(r), 1.5};
  group.all_reduce_sum(d.data(), 2, "a test sum");
  CHECK(d[0] == double(R * (R - 1) / 2));
  CHECK(d[1] == 1.5 * R);

  int64_t big = (int64_t(1) << 40) + r;  // beyond 32 bits
  group.all_reduce_sum(&big, 1, "a test sum");
  CHECK(big == R * (int64_t(1) << 40) + R * (R - 1) / 2);

  std::vector<float> f(1000, float(r + 1));
  const auto request = group.start_all_reduce_sum(f.data(), 1000, "a test sum");
  group.wait(request);
  CHECK(f[999] == float(R * (R + 1) / 2));
  CHECK(group.test(request));  // finished requests stay finished

  std::string s = r == 1 ? "from rank one" : "";
  group.broadcast(s, 1, "a test broadcast");
  CHECK(s == "from rank one");

  CHECK_FALSE(group.any(false, "a test"));
  CHECK(group.any(r == R - 1, "a test"));
}

TEST_CASE("a rank that does not answer makes the others' waits time out, naming the exchange") {
  MpiProcessGroup group(0.3);
  double x = 1;
  const auto request = group.start_all_reduce_sum(&x, 1, "the late sum");
  if (group.rank() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(800));  // late, not dead
    group.wait(request);
  } else {
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(
        group.wait(request),
        fmt::format("rank {} of {}: no answer from the other ranks for 0.3 s in the late sum; a "
                    "rank died or hangs (the limit is --mpi-timeout)",
                    group.rank(), group.size())
            .c_str(),
        DistributedError);
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(waited >= 0.3);
    CHECK(waited < 1.0);
    // The collective itself is still intact: it completes once rank 0 has joined.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    group.wait(request);
  }
  CHECK(x == double(group.size()));
}

TEST_CASE("check_replicas names the ranks whose state differs from rank 0's") {
  MpiProcessGroup group(20);
  check_replicas(42, group, "the test state");
  const uint64_t hash = group.rank() == 1 ? 43 : 42;
  CHECK_THROWS_WITH_AS(check_replicas(hash, group, "the test state"),
                       "data parallel: the test state of rank(s) 1 differ from rank 0's: the "
                       "replicas diverged",
                       DistributedError);
}
