#include <doctest/doctest.h>

#include <chrono>

#include <minimoe/autograd/profiler.hpp>
#include <minimoe/autograd/var.hpp>
#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/pointwise.hpp>
#include <minimoe/ops/reduce.hpp>

using namespace minimoe;

namespace {

// Enables the profiler for a test and leaves it off and empty afterwards: it is process-wide.
struct ProfilerOn {
  ProfilerOn() {
    Profiler::instance().reset();
    Profiler::instance().enable(true);
  }
  ~ProfilerOn() {
    Profiler::instance().enable(false);
    Profiler::instance().reset();
  }
};

void busy_for(std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

}  // namespace

TEST_CASE("profile regions nest: inner time is not counted in the outer region") {
  ProfilerOn on;
  {
    ProfileRegion outer("outer");
    busy_for(std::chrono::milliseconds(10));
    {
      ProfileRegion inner("inner");
      busy_for(std::chrono::milliseconds(200));
    }
    busy_for(std::chrono::milliseconds(10));
  }
  const auto& times = Profiler::instance().times();
  REQUIRE(times.count("outer") == 1);
  REQUIRE(times.count("inner") == 1);
  CHECK(times.at("inner").forward >= 0.200);
  CHECK(times.at("outer").forward >= 0.020);
  // Counting the inner region would give the outer one >= 0.22 s; the margin absorbs a
  // shared machine's stalls between the statements.
  CHECK(times.at("outer").forward < 0.150);
  CHECK(times.at("inner").backward == 0);
  CHECK(Profiler::instance().current() == std::string("other"));
}

TEST_CASE("the backward pass charges each op to the region that recorded it") {
  ProfilerOn on;
  Var<double> x(Tensor<double>::full({64, 64}, 0.5), true);
  Var<double> y;
  {
    ProfileRegion r("first");
    y = tanh(x) * x;
  }
  Var<double> loss;
  {
    ProfileRegion r("second");
    loss = sum(exp(y));
  }
  loss.backward();
  const auto& times = Profiler::instance().times();
  REQUIRE(times.count("first") == 1);
  REQUIRE(times.count("second") == 1);
  CHECK(times.at("first").backward > 0);
  CHECK(times.at("second").backward > 0);
  CHECK(times.count("other") == 0);  // every op was made inside a region
  CHECK(x.grad().defined());
}

TEST_CASE("a disabled profiler records nothing, and ops made then belong to no region") {
  Profiler::instance().reset();
  REQUIRE_FALSE(Profiler::instance().enabled());
  Var<double> x(Tensor<double>::full({4}, 1.0), true);
  Var<double> loss;
  {
    ProfileRegion r("ignored");
    CHECK(Profiler::instance().current() == std::string("other"));
    loss = sum(square(x));
  }
  loss.backward();
  CHECK(Profiler::instance().times().empty());
}

TEST_CASE("a region opened while the profiler was on closes cleanly after it is turned off") {
  ProfilerOn on;
  {
    ProfileRegion r("closing");
    Profiler::instance().enable(false);
  }
  CHECK(Profiler::instance().current() == std::string("other"));
  CHECK(Profiler::instance().times().count("closing") == 1);
}
