// minimoe/autograd/var.hpp: the reverse-mode autograd engine (define-by-run).
//
// A Var is a cheap handle (one shared_ptr) to a Node holding a value, its gradient, the Vars it
// was computed from and a backward closure. Each op builds its output and its backward closure
// in one function (see ops/); the closure receives the node's inputs and the output gradient as
// arguments and never captures its own node, so the graph has no shared_ptr cycles.
//
//   Var<double> x(Tensor<double>({2}, {1.0, 2.0}), /*requires_grad=*/true);
//   Var<double> y = sum(x * x);
//   y.backward();                    // x.grad() == [2, 4]
//
// backward() sorts the graph topologically without recursion, runs each closure once, and then
// frees the graph (inputs and closures) unless retain_graph is set. Leaf gradients accumulate
// across backward calls until zero_grad(); gradients of intermediate nodes are released as soon
// as they have been propagated. Inside a NoGradGuard scope ops record nothing.
//
// A leaf can carry a grad-ready hook, called during a backward pass as soon as no op of that
// pass will add to its gradient any more: data-parallel training starts averaging a gradient
// there while the rest of the backward runs (distributed/gradient_reducer.hpp).
//
//   w.set_grad_ready_hook([&] { send(w.grad()); });
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "minimoe/autograd/profiler.hpp"
#include "minimoe/error.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/tensor/tensor.hpp"

namespace minimoe {

template <typename T>
struct Node;

namespace detail {
inline bool& grad_mode() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

// Whether ops on this thread currently record the graph.
inline bool grad_enabled() { return detail::grad_mode(); }

// Disables graph recording on this thread for its lifetime (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(detail::grad_mode()) { detail::grad_mode() = false; }
  ~NoGradGuard() { detail::grad_mode() = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

template <typename T>
class Var {
 public:
  using Scalar = T;

  // An undefined Var (no node).
  Var() = default;

  // A leaf holding `value`.
  explicit Var(Tensor<T> value, bool requires_grad = false) : node_(std::make_shared<Node<T>>()) {
    check<ValueError>(value.defined(), "Var: value is an undefined tensor");
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
  }

  bool defined() const { return node_ != nullptr; }
  const Tensor<T>& value() const { return get().value; }
  // Mutable access for in-place updates of leaves (optimizers, initialisation).
  Tensor<T>& value() { return get().value; }
  // The accumulated gradient; undefined until a backward pass reaches this Var.
  const Tensor<T>& grad() const { return get().grad; }
  bool has_grad() const { return get().grad.defined(); }

  const Shape& shape() const { return value().shape(); }
  int64_t dim() const { return value().dim(); }
  int64_t size(int64_t axis) const { return value().size(axis); }
  int64_t numel() const { return value().numel(); }
  T item() const { return value().item(); }

  bool requires_grad() const { return get().requires_grad; }
  bool is_leaf() const { return get().is_leaf; }
  // The name of the op that produced this Var ("leaf" for leaves).
  const char* op() const { return get().op; }

  Var& set_requires_grad(bool requires) {
    check<ValueError>(is_leaf(),
                      "set_requires_grad: only leaves can change requires_grad, not "
                      "the output of {}",
                      op());
    get().requires_grad = requires;
    return *this;
  }

  // A leaf sharing this Var's value, cut off from the graph.
  Var detach() const { return Var(value(), false); }

  // Forgets the accumulated gradient (it reads as zero until the next backward).
  void zero_grad() { get().grad = Tensor<T>(); }

  // Calls `hook` in every backward pass that reaches this leaf, right after the last op of the
  // pass that adds to its gradient (the gradient may still be undefined if none of them had a
  // gradient to give). An empty function removes the hook. The hook must not hold this Var:
  // the node would keep itself alive.
  Var& set_grad_ready_hook(std::function<void()> hook) {
    check<ValueError>(is_leaf(), "set_grad_ready_hook: only leaves have one, not the output of {}",
                      op());
    get().grad_ready = std::move(hook);
    return *this;
  }

  // Adds g (same shape) into the gradient. A g that nobody else holds is adopted without a
  // copy; pass temporaries with std::move to benefit. An intermediate node adopts a shared g
  // too (the output gradient that add or reshape hand on unchanged): it is only read by the
  // node's backward, and a second gradient is then summed into new storage instead of into the
  // shared one. A leaf's gradient is its own, as optimizers update it in place.
  void add_grad(Tensor<T> g) const {
    Node<T>& n = get();
    if (!n.requires_grad) return;
    check<ShapeError>(g.shape() == n.value.shape(),
                      "add_grad: gradient of shape {} for a value of shape {} (op {})", g.shape(),
                      n.value.shape(), n.op);
    if (!n.grad.defined()) {
      const bool adopt = g.is_contiguous() && (!n.is_leaf || g.storage_use_count() == 1);
      n.grad = adopt ? std::move(g) : g.clone();
      return;
    }
    const Tensor<T> gc = g.contiguous();
    const T* src = gc.data();
    const int64_t count = gc.numel();
    if (!n.is_leaf && n.grad.storage_use_count() > 1) {  // adopted while shared: sum anew
      Tensor<T> sum = Tensor<T>::empty(n.grad.shape());
      const T* acc = n.grad.data();
      T* dst = sum.data();
      detail::parallel_for(count, [&](int64_t i) { dst[i] = acc[i] + src[i]; });
      n.grad = std::move(sum);
      return;
    }
    T* dst = n.grad.data();
    detail::parallel_for(count, [&](int64_t i) { dst[i] += src[i]; });
  }

  // Adds rows[i] into row index[i] of the gradient, in order of i: a gather's (an embedding's)
  // gradient without a dense tensor the size of the table. index holds n row numbers of the
  // [V, C] value, rows is [n, C] (contiguous).
  void add_grad_rows(const Tensor<int32_t>& index, const Tensor<T>& rows) const {
    Node<T>& n = get();
    if (!n.requires_grad) return;
    check<ShapeError>(n.value.dim() == 2 && rows.dim() == 2 && rows.size(0) == index.numel() &&
                          rows.size(1) == n.value.size(1),
                      "add_grad_rows: {} rows of shape {} for a value of shape {} (op {})",
                      index.numel(), rows.shape(), n.value.shape(), n.op);
    const int64_t V = n.value.size(0), C = n.value.size(1);
    const Tensor<int32_t> ic = index.contiguous();
    const Tensor<T> rc = rows.contiguous();
    for (int64_t i = 0; i < ic.numel(); ++i)
      check<IndexError>(ic.data()[i] >= 0 && ic.data()[i] < V,
                        "add_grad_rows: row {} out of range [0, {}) at position {} (op {})",
                        ic.data()[i], V, i, n.op);
    if (!n.grad.defined())
      n.grad = Tensor<T>(n.value.shape());
    else if (!n.is_leaf && n.grad.storage_use_count() > 1)  // adopted while shared (add_grad)
      n.grad = n.grad.clone();
    for (int64_t i = 0; i < ic.numel(); ++i) {
      const T* src = rc.data() + i * C;
      T* dst = n.grad.data() + int64_t{ic.data()[i]} * C;
      for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
    }
  }

  // Backpropagates from a one-element Var (seed 1).
  void backward(bool retain_graph = false) {
    check<ShapeError>(numel() == 1,
                      "backward: output of shape {} is not a scalar; pass a seed gradient",
                      shape());
    backward(Tensor<T>(shape(), T(1)), retain_graph);
  }

  // Backpropagates `seed` (the gradient of some scalar with respect to this Var).
  void backward(const Tensor<T>& seed, bool retain_graph = false) {
    check<ValueError>(requires_grad(), "backward: output of {} does not require grad", op());
    check<ShapeError>(seed.shape() == shape(), "backward: seed of shape {} for output of shape {}",
                      seed.shape(), shape());
    const std::vector<Node<T>*> order = topological_order();
    for (Node<T>* n : order) {
      check<ValueError>(n->is_leaf || n->backward,
                        "backward: the graph through {} was already freed; pass "
                        "retain_graph=true to the first backward",
                        n->op);
    }
    add_grad(seed.clone());
    // For each hooked leaf, the ops of this pass that still have to add to its gradient.
    std::unordered_map<Node<T>*, int64_t> pending_ops;
    for (Node<T>* n : order)
      for (const Var<T>& input : n->inputs)
        if (input.node()->grad_ready && input.requires_grad()) ++pending_ops[input.node()];
    if (node_->grad_ready) node_->grad_ready();  // a leaf as the output: no op adds to it
    // Inputs unlinked from the graph are kept alive here until the walk is over: `order`
    // holds raw pointers to them.
    std::vector<Var<T>> released;
    Profiler& profiler = Profiler::instance();
    // order lists inputs before outputs; walk it from the output back to the leaves.
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      Node<T>& n = **it;
      if (n.is_leaf) continue;
      if (n.grad.defined()) {
        if (profiler.enabled()) {
          const auto start = Profiler::Clock::now();
          n.backward(n.inputs, n.grad);
          profiler.add_backward(
              n.region, std::chrono::duration<double>(Profiler::Clock::now() - start).count());
        } else {
          n.backward(n.inputs, n.grad);
        }
      }
      n.grad = Tensor<T>();  // intermediate gradients are not kept
      if (!pending_ops.empty()) {
        for (const Var<T>& input : n.inputs) {
          const auto pending = pending_ops.find(input.node());
          if (pending != pending_ops.end() && --pending->second == 0) input.node()->grad_ready();
        }
      }
      if (!retain_graph) {
        n.backward = nullptr;
        for (auto& input : n.inputs) released.push_back(std::move(input));
        n.inputs.clear();
      }
    }
  }

  Node<T>* node() const { return node_.get(); }
  // Handles sharing the node (the graph's own references included).
  long use_count() const { return node_.use_count(); }

  // Used by make_op to wire an output into the graph.
  static Var from_node(std::shared_ptr<Node<T>> node) {
    Var v;
    v.node_ = std::move(node);
    return v;
  }

 private:
  Node<T>& get() const {
    check<ValueError>(node_ != nullptr, "Var: use of an undefined Var");
    return *node_;
  }

  // Nodes reachable from this one, every node after all of its inputs. Iterative DFS with a
  // visited set: shared subgraphs are visited once, and deep graphs cannot overflow the stack.
  std::vector<Node<T>*> topological_order() const {
    std::vector<Node<T>*> order;
    std::unordered_set<Node<T>*> visited;
    std::vector<std::pair<Node<T>*, size_t>> stack{{node_.get(), 0}};
    visited.insert(node_.get());
    while (!stack.empty()) {
      auto& [n, next_input] = stack.back();
      if (next_input < n->inputs.size()) {
        Node<T>* child = n->inputs[next_input++].node();
        if (child->requires_grad && visited.insert(child).second) stack.push_back({child, 0});
      } else {
        order.push_back(n);
        stack.pop_back();
      }
    }
    return order;
  }

  std::shared_ptr<Node<T>> node_;
};

template <typename T>
struct Node {
  using BackwardFn =
      std::function<void(const std::vector<Var<T>>& inputs, const Tensor<T>& grad_output)>;

  Tensor<T> value;
  Tensor<T> grad;
  bool requires_grad = false;
  bool is_leaf = true;
  const char* op = "leaf";
  const char* region = "other";  // the profiler region that recorded the op
  std::vector<Var<T>> inputs;
  BackwardFn backward;
  std::function<void()> grad_ready;  // leaves only: Var::set_grad_ready_hook

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Releases the chain of inputs iteratively: a long graph that is dropped without a backward
  // pass would otherwise be destroyed by recursion as deep as the graph.
  ~Node() {
    std::vector<Var<T>> pending = std::move(inputs);
    while (!pending.empty()) {
      Var<T> v = std::move(pending.back());
      pending.pop_back();
      Node* n = v.node();
      if (n != nullptr && !n->inputs.empty() && v.use_count() == 1) {
        for (auto& input : n->inputs) pending.push_back(std::move(input));
        n->inputs.clear();
      }
    }
  }
};

// Records an op: wraps `value` in a Var and, when grad mode is on and some input requires grad,
// links it to `inputs` with `backward`, which must add the gradient of each input that
// requires grad (Var::add_grad) given the output gradient.
template <typename T>
Var<T> make_op(const char* op, Tensor<T> value, std::vector<Var<T>> inputs,
               typename Node<T>::BackwardFn backward) {
  Var<T> out(std::move(value));
  if (!grad_enabled()) return out;
  bool any = false;
  for (const auto& input : inputs) any = any || input.requires_grad();
  if (!any) return out;
  Node<T>& n = *out.node();
  n.requires_grad = true;
  n.is_leaf = false;
  n.op = op;
  n.region = Profiler::instance().current();
  n.inputs = std::move(inputs);
  n.backward = std::move(backward);
  return out;
}

}  // namespace minimoe
