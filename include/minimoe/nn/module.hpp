// minimoe/nn/module.hpp: the module convention every layer follows.
//
// A module is a plain struct with an operator() and one `visit` member that names its
// parameters, buffers (saved but not trained), train/eval flag, random streams (dropout,
// router noise) and child modules, once:
//
//   template <typename T> struct Mlp {
//     using Scalar = T;
//     Linear<T> fc, proj;
//     Var<T> operator()(const Var<T>& x) { return proj(gelu(fc(x))); }
//     void visit(const ModuleVisitor<T>& v) { v.child("fc", fc); v.child("proj", proj); }
//   };
//
// Everything that walks a model derives from that one list: parameters(), named_parameters()
// ("fc.weight", "proj.bias", ...), zero_grad(), parameter counts, set_training(), the weight
// decay rule and checkpoint save/load. Adding a parameter to `visit` is all it takes to have
// it trained, counted and saved.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "minimoe/autograd/var.hpp"
#include "minimoe/tensor/random.hpp"

namespace minimoe {

template <typename T>
class ModuleVisitor {
 public:
  using ParameterFn = std::function<void(const std::string& name, Var<T>& parameter)>;
  using BufferFn = std::function<void(const std::string& name, Tensor<T>& buffer)>;
  using ModeFn = std::function<void(bool& training)>;
  using RngFn = std::function<void(const std::string& name, Rng& rng)>;

  ModuleVisitor& on_parameter(ParameterFn fn) {
    parameter_fn_ = std::move(fn);
    return *this;
  }
  ModuleVisitor& on_buffer(BufferFn fn) {
    buffer_fn_ = std::move(fn);
    return *this;
  }
  ModuleVisitor& on_mode(ModeFn fn) {
    mode_fn_ = std::move(fn);
    return *this;
  }
  ModuleVisitor& on_rng(RngFn fn) {
    rng_fn_ = std::move(fn);
    return *this;
  }

  // A trainable tensor. Undefined Vars (an absent bias) are skipped.
  void parameter(const std::string& name, Var<T>& p) const {
    if (parameter_fn_ && p.defined()) parameter_fn_(prefix_ + name, p);
  }
  // State that is saved and loaded but not trained (running statistics, routing biases).
  void buffer(const std::string& name, Tensor<T>& b) const {
    if (buffer_fn_ && b.defined()) buffer_fn_(prefix_ + name, b);
  }
  // The train/eval flag of a module whose forward depends on it (dropout, router noise).
  void mode(bool& training) const {
    if (mode_fn_) mode_fn_(training);
  }
  // A random stream the forward pass draws from; training checkpoints save where it is.
  void rng(const std::string& name, Rng& r) const {
    if (rng_fn_) rng_fn_(prefix_ + name, r);
  }
  // A child module; its names get the prefix "name.".
  template <typename Module>
  void child(const std::string& name, Module& module) const {
    ModuleVisitor sub = *this;
    sub.prefix_ = prefix_ + name + ".";
    module.visit(sub);
  }

 private:
  ParameterFn parameter_fn_;
  BufferFn buffer_fn_;
  ModeFn mode_fn_;
  RngFn rng_fn_;
  std::string prefix_;
};

template <typename Module>
using ScalarOf = typename Module::Scalar;

template <typename Module>
std::vector<std::pair<std::string, Var<ScalarOf<Module>>>> named_parameters(Module& module) {
  std::vector<std::pair<std::string, Var<ScalarOf<Module>>>> out;
  module.visit(ModuleVisitor<ScalarOf<Module>>().on_parameter(
      [&](const std::string& name, Var<ScalarOf<Module>>& p) { out.emplace_back(name, p); }));
  return out;
}

template <typename Module>
std::vector<Var<ScalarOf<Module>>> parameters(Module& module) {
  std::vector<Var<ScalarOf<Module>>> out;
  module.visit(ModuleVisitor<ScalarOf<Module>>().on_parameter(
      [&](const std::string&, Var<ScalarOf<Module>>& p) { out.push_back(p); }));
  return out;
}

// Parameters and buffers by name, sharing storage with the module: what a checkpoint holds.
template <typename Module>
std::vector<std::pair<std::string, Tensor<ScalarOf<Module>>>> named_tensors(Module& module) {
  using T = ScalarOf<Module>;
  std::vector<std::pair<std::string, Tensor<T>>> out;
  module.visit(
      ModuleVisitor<T>()
          .on_parameter(
              [&](const std::string& name, Var<T>& p) { out.emplace_back(name, p.value()); })
          .on_buffer([&](const std::string& name, Tensor<T>& b) { out.emplace_back(name, b); }));
  return out;
}

template <typename Module>
void zero_grad(Module& module) {
  for (auto& p : parameters(module)) p.zero_grad();
}

template <typename Module>
int64_t num_parameters(Module& module) {
  int64_t n = 0;
  for (const auto& p : parameters(module)) n += p.numel();
  return n;
}

// The module's random streams by name ("blocks.0.attn_dropout.rng", ...), by reference.
template <typename Module>
std::vector<std::pair<std::string, Rng*>> named_rngs(Module& module) {
  std::vector<std::pair<std::string, Rng*>> out;
  module.visit(ModuleVisitor<ScalarOf<Module>>().on_rng(
      [&](const std::string& name, Rng& r) { out.emplace_back(name, &r); }));
  return out;
}

// Switches dropout, router noise and the like on (training) or off (evaluation).
template <typename Module>
void set_training(Module& module, bool training) {
  module.visit(ModuleVisitor<ScalarOf<Module>>().on_mode([&](bool& flag) { flag = training; }));
}

}  // namespace minimoe
