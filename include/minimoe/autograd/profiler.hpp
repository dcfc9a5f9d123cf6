// minimoe/autograd/profiler.hpp: where a training step's time goes, by named region.
//
//   Profiler::instance().enable(true);
//   { ProfileRegion r("attention");  y = attn(x); }        // forward time of the region
//   loss.backward();                                       // each op's backward time goes to
//                                                          // the region that recorded the op
//   for (auto& [name, t] : Profiler::instance().times()) ...   // forward / backward seconds
//
// Regions nest: time spent in an inner region is not counted in the outer one, so the regions
// of a step add up to the step. Ops record the innermost region active when they were made,
// and the backward pass charges each op's backward to it: "attention" covers the attention's
// forward and backward. When the profiler is off (the default), a region costs one branch.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace minimoe {

struct RegionTime {
  double forward = 0, backward = 0;
  double total() const { return forward + backward; }
};

class Profiler {
 public:
  using Clock = std::chrono::steady_clock;

  static Profiler& instance() {
    static Profiler p;
    return p;
  }

  void enable(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void reset() { times_.clear(); }
  const std::map<std::string, RegionTime>& times() const { return times_; }

  // The innermost open region, which new ops are recorded under ("other" outside any).
  const char* current() const { return stack_.empty() ? "other" : stack_.back().name; }

  void push(const char* name) {
    const Clock::time_point now = Clock::now();
    if (!stack_.empty()) charge_forward(stack_.back(), now);
    stack_.push_back({name, now});
  }

  void pop() {
    const Clock::time_point now = Clock::now();
    charge_forward(stack_.back(), now);
    stack_.pop_back();
    if (!stack_.empty()) stack_.back().since = now;
  }

  void add_backward(const char* region, double seconds) { times_[region].backward += seconds; }

 private:
  struct Open {
    const char* name;
    Clock::time_point since;  // when this region last became the innermost one
  };

  void charge_forward(Open& open, Clock::time_point now) {
    times_[open.name].forward += std::chrono::duration<double>(now - open.since).count();
    open.since = now;
  }

  bool enabled_ = false;
  std::vector<Open> stack_;
  std::map<std::string, RegionTime> times_;
};

// Opens a region for the scope's lifetime; a no-op while the profiler is off. `name` must
// outlive the profile (a string literal).
class ProfileRegion {
 public:
  explicit ProfileRegion(const char* name) : active_(Profiler::instance().enabled()) {
    if (active_) Profiler::instance().push(name);
  }
  ~ProfileRegion() {
    if (active_) Profiler::instance().pop();
  }
  ProfileRegion(const ProfileRegion&) = delete;
  ProfileRegion& operator=(const ProfileRegion&) = delete;

 private:
  bool active_;
};

}  // namespace minimoe
