#include <doctest/doctest.h>

#include <minimoe/train/schedule.hpp>

using namespace minimoe;

TEST_CASE("the warmup rises linearly to the peak, from peak / warmup at step 0") {
  const LRSchedule s{ScheduleKind::Cosine, 1e-3, 1e-4, 10, 100};
  CHECK(s(0) == doctest::Approx(1e-4));
  CHECK(s(4) == doctest::Approx(5e-4));
  CHECK(s(9) == doctest::Approx(1e-3));
}

TEST_CASE("cosine decays from the peak to min_lr at the last step, monotonically") {
  const LRSchedule s{ScheduleKind::Cosine, 1e-3, 1e-4, 10, 110};
  CHECK(s(10) == doctest::Approx(1e-3));
  CHECK(s(60) == doctest::Approx(5.5e-4).epsilon(1e-3));  // halfway: the mean of both ends
  CHECK(s(109) == doctest::Approx(1e-4));
  for (int64_t step = 11; step < 110; ++step) CHECK(s(step) <= s(step - 1));
  CHECK(s(500) == doctest::Approx(1e-4));  // past the end it stays at the floor
}

TEST_CASE("warmup-stable-decay holds the peak, then decays linearly over its last fraction") {
  const LRSchedule s{ScheduleKind::WSD, 1e-3, 0.0, 10, 100, 0.2};
  CHECK(s(10) == doctest::Approx(1e-3));
  CHECK(s(79) == doctest::Approx(1e-3));
  CHECK(s(80) == doctest::Approx(1e-3));
  CHECK(s(99) == doctest::Approx(0.0));
  CHECK(s(90) < s(85));
  CHECK(s(90) > s(95));
}

TEST_CASE("constant stays at the peak after the warmup") {
  const LRSchedule s{ScheduleKind::Constant, 2e-3, 0.0, 4, 50};
  CHECK(s(0) == doctest::Approx(5e-4));
  CHECK(s(4) == doctest::Approx(2e-3));
  CHECK(s(49) == doctest::Approx(2e-3));
}

TEST_CASE("bad schedules are refused with the field named") {
  CHECK_THROWS_WITH_AS(schedule_from_string("linear"),
                       doctest::Contains("unknown learning-rate schedule 'linear'"), ValueError);
  LRSchedule s;
  s.min_lr = 2 * s.peak_lr;
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("min_lr"), ValueError);
  s = LRSchedule{};
  s.total = 0;
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("steps must be positive"), ValueError);
  s = LRSchedule{};
  s.warmup = -1;
  CHECK_THROWS_AS(s.validate(), ValueError);
}
