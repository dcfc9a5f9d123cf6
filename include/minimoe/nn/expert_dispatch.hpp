// minimoe/nn/expert_dispatch.hpp: running the routed experts of an MoE layer, two ways.
//
//   Var<T> y = dispatch_grouped(tokens, weights, plan, experts);   // tokens [N, C] -> [N, C]
//   Var<T> y = dispatch_loop(tokens, weights, plan, experts);      // same values
//   y[n] = sum_k weights[n, k] * expert_{e(n, k)}(tokens[n])        (dropped pairs add nothing)
//
// dispatch_loop is the textbook version, built from autograd ops: per expert, gather its rows,
// run the module, scale by the weights, scatter-add back. It works for any expert module and
// is the reference the fast path is tested against.
//
// dispatch_grouped is MoELayer's path for the standard Expert: one op that runs every expert's
// projections as grouped GEMMs (kernels/grouped_gemm.hpp) over the rows of the routing plan,
// with the elementwise work fused into the GEMM epilogues, and writes its own backward:
//
//   forward   P = X_g W_up^T + b_up, A = act(P)          [R, h]   R = routed rows
//             GLU: P = [G | H] in one GEMM (gate and up), A = act(G) * H
//             O = A W_down^T + b_down                    [R, C]
//             y[n] = sum_k w[n, k] O[row(n, k)]          (each token owns its sum)
//   backward  dw[n, k] = <dy[n], O[row]>,  dO[r] = w[pair(r)] dy[token(r)]
//             dA = dO W_down, then dP from the activation derivative in the epilogue
//             dW_down = dO^T A, db_down = colsum dO      (ragged K, one owner per tile)
//             dW_up = dH^T X_g, db_up = colsum dH (gate likewise)
//             dX_rows = dP [W_gate; W_up] (one GEMM, K = 2h for GLU), dx[n] = sum_k dX_rows[row]
//
// Every GEMM reads X through the plan's row index; dW tiles and token sums each have one owner,
// so there are no atomics and results are deterministic. Forward runs in one parallel region
// (two GEMM phases and the combine), backward in another (the dO / dw pass, two GEMM phases,
// the dx sums). The op keeps P, A and O for backward; with `recompute_activation` it drops A
// ([R, h]) after the forward and recomputes it from P in the backward (one more activation
// pass for that much less memory between the passes). Without autograd (inference) A
// overwrites P and nothing is kept.
//
// Experts with int8 weights (models/quantize.hpp) take the same plan through the int8 grouped
// products (kernels/int8_gemm.hpp), with the same epilogues and combine, for inference only:
// only the experts that received rows have their int8 weights read.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "minimoe/kernels/activation.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"
#include "minimoe/kernels/int8_gemm.hpp"
#include "minimoe/kernels/routing.hpp"
#include "minimoe/nn/expert.hpp"
#include "minimoe/ops/gather.hpp"
#include "minimoe/ops/shape.hpp"

namespace minimoe {

namespace detail {

// Which parameter Vars each expert contributes to the op's inputs, in order.
struct ExpertSlots {
  bool bias = false, glu = false;
  int64_t per_expert() const { return 2 + (glu ? 1 : 0) + (bias ? (glu ? 3 : 2) : 0); }
  // Offsets within one expert's block of inputs; -1 when absent.
  int64_t up_weight() const { return 0; }
  int64_t up_bias() const { return bias ? 1 : -1; }
  int64_t gate_weight() const { return glu ? (bias ? 2 : 1) : -1; }
  int64_t gate_bias() const { return glu && bias ? 3 : -1; }
  int64_t down_weight() const { return per_expert() - (bias ? 2 : 1); }
  int64_t down_bias() const { return bias ? per_expert() - 1 : -1; }
};

template <typename T>
void add_row(T* dst, const T* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// y[n] = sum_k w[n, k] O[row(n, k)] over the pairs of token n that were not dropped.
template <typename T>
void combine_rows(const RoutingPlan& plan, int64_t n, const T* w, const T* o, int64_t C, T* y) {
  T* yn = y + n * C;
  std::fill_n(yn, C, T(0));
  for (int64_t k = 0; k < plan.top_k; ++k) {
    const int64_t pair = n * plan.top_k + k;
    const int32_t r = plan.row_of[pair];
    if (r < 0) continue;
    const T wk = w[pair];
    const T* orow = o + int64_t{r} * C;
    for (int64_t c = 0; c < C; ++c) yn[c] += wk * orow[c];
  }
}

// The backward of combine_rows for token n: dw[n, k] = <dy[n], O[row(n, k)]>, 0 for a
// dropped pair.
template <typename T>
void combine_weight_grads(const RoutingPlan& plan, int64_t n, const T* dy, const T* o, int64_t C,
                          T* dw) {
  for (int64_t k = 0; k < plan.top_k; ++k) {
    const int32_t r = plan.row_of[n * plan.top_k + k];
    T dot = 0;
    for (int64_t c = 0; r >= 0 && c < C; ++c) dot += dy[n * C + c] * o[int64_t{r} * C + c];
    dw[n * plan.top_k + k] = dot;
  }
}

template <typename T>
std::vector<const T*> data_of(const std::vector<Var<T>>& vars, int64_t first, int64_t stride,
                              int64_t count) {
  std::vector<const T*> out;
  for (int64_t e = 0; e < count; ++e) out.push_back(vars[first + e * stride].value().data());
  return out;
}

// The up projection's epilogue on rows [r0, r0 + rows) and hidden units [j0, j1) of expert g:
// the biases, then A = act(P), or A = act(G) * H for GLU (P = [G | H], [R, hp]). A may be P.
template <typename T>
struct UpEpilogue {
  bool glu = false, bias = false;
  Activation act = Activation::GELU;
  int64_t h = 0, hp = 0, lda = 0;
  T* p = nullptr;
  T* a = nullptr;
  const T* const* b_up = nullptr;
  const T* const* b_gate = nullptr;

  void operator()(int64_t g, int64_t r0, int64_t rows, int64_t j0, int64_t j1) const {
    for (int64_t r = r0; r < r0 + rows; ++r) {
      T* pr = p + r * hp + j0;  // G (GLU) or H
      T* ar = a + r * lda + j0;
      if (bias) add_row(pr, (glu ? b_gate : b_up)[g] + j0, j1 - j0);
      if (bias && glu) add_row(pr + h, b_up[g] + j0, j1 - j0);
      if (glu)
        glu_forward(act, pr, pr + h, ar, j1 - j0);
      else
        activation_forward(act, pr, ar, j1 - j0);
    }
  }
};

// The down projection's epilogue: O[r, j0:j1] += b_down[g].
template <typename T>
struct DownBiasEpilogue {
  T* o = nullptr;
  int64_t C = 0;
  const T* const* b_down = nullptr;

  void operator()(int64_t g, int64_t r0, int64_t rows, int64_t j0, int64_t j1) const {
    for (int64_t r = r0; r < r0 + rows; ++r) add_row(o + r * C + j0, b_down[g] + j0, j1 - j0);
  }
};

// Whether the experts carry int8 weights: all of them, on every projection, or none.
template <typename T>
bool experts_are_int8(const std::vector<Expert<T>>& experts) {
  auto quantised = [](const Expert<T>& e) {
    return e.up.int8 && e.down.int8 && (!e.config.glu || e.gate.int8);
  };
  const bool first = quantised(experts.front());
  for (const Expert<T>& e : experts)
    check<ValueError>(quantised(e) == first && (e.up.int8 || e.down.int8 || e.gate.int8) == first,
                      "dispatch_grouped: some experts have int8 weights and some do not");
  return first;
}

// The grouped forward with int8 expert weights (inference only): the products of the float
// path below, through Int8Phase, and A overwriting P.
inline Var<float> dispatch_grouped_int8(const Var<float>& tokens, const Var<float>& weights,
                                        const RoutingPlan& plan,
                                        const std::vector<Expert<float>>& experts) {
  check<ValueError>(!grad_enabled(),
                    "dispatch_grouped: int8 expert weights are for inference only; run the "
                    "model under a NoGradGuard (gradients cannot flow through quantised weights)");
  const ExpertConfig& config = experts.front().config;
  const int64_t N = plan.tokens, E = plan.experts, C = config.d_model, h = config.hidden,
                R = plan.rows();
  const bool glu = config.glu, bias = config.bias;
  const int64_t hp = glu ? 2 * h : h;
  const Tensor<float> x = tokens.value().contiguous();
  const Tensor<float> w = weights.value().contiguous();
  Tensor<float> P = Tensor<float>::empty({R, hp});  // A overwrites it
  Tensor<float> O = Tensor<float>::empty({R, C});
  Tensor<float> y = Tensor<float>::empty({N, C});

  struct Projection {
    std::vector<const int8_t*> q;
    std::vector<const float*> scale, bias;
    void add(const Linear<float>& l) {
      q.push_back(l.int8->q.data());
      scale.push_back(l.int8->scale.data());
      bias.push_back(l.bias.defined() ? l.bias.value().data() : nullptr);
    }
    Int8WeightRows rows(int64_t ld) const { return {q.data(), scale.data(), ld}; }
  } up, gate, down;
  for (const Expert<float>& e : experts) {
    up.add(e.up);
    if (glu) gate.add(e.gate);
    down.add(e.down);
  }

  const RowGroups groups{plan.offsets.data(), E};
  Int8Phase up_phase, down_phase;
  Int8GroupedProduct up_product;
  up_product.groups = groups;
  up_product.a = x.data();
  up_product.lda = C;
  up_product.index = plan.token_of.data();
  up_product.k = C;
  up_product.w[0] = (glu ? gate : up).rows(C);
  up_product.w[1] = up.rows(C);
  up_product.n = h;
  up_product.segments = glu ? 2 : 1;
  up_product.c = P.data();
  up_product.ldc = hp;
  up_product.epilogue =
      UpEpilogue<float>{glu,      bias,           config.activation, h, hp, hp, P.data(),
                        P.data(), up.bias.data(), gate.bias.data()};
  up_phase.add(up_product);

  Int8GroupedProduct down_product;
  down_product.groups = groups;
  down_product.a = P.data();
  down_product.lda = hp;
  down_product.k = h;
  down_product.w[0] = down.rows(h);
  down_product.n = C;
  down_product.c = O.data();
  down_product.ldc = C;
  if (bias) down_product.epilogue = DownBiasEpilogue<float>{O.data(), C, down.bias.data()};
  down_phase.add(down_product);

#pragma omp parallel if (detail::worth_parallel(up_phase.cost() + down_phase.cost()))
  {
    up_phase.run();
    down_phase.run();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) combine_rows(plan, n, w.data(), O.data(), C, y.data());
  }
  return Var<float>(std::move(y));
}

}  // namespace detail

struct DispatchOptions {
  bool recompute_activation = false;  // keep only P for backward and recompute A from it
};

template <typename ExpertT, typename T = typename ExpertT::Scalar>
Var<T> dispatch_loop(const Var<T>& tokens, const Var<T>& weights, const RoutingPlan& plan,
                     const std::vector<ExpertT>& experts) {
  auto index_tensor = [](const std::vector<int32_t>& v, int64_t begin, int64_t end) {
    Tensor<int32_t> t({end - begin});
    std::copy(v.begin() + begin, v.begin() + end, t.data());
    return t;
  };
  const int64_t N = tokens.size(0), C = tokens.size(1);
  std::vector<Var<T>> outputs;
  for (int64_t e = 0; e < plan.experts; ++e) {
    if (plan.load(e) == 0) continue;
    const Tensor<int32_t> rows = index_tensor(plan.token_of, plan.offsets[e], plan.offsets[e + 1]);
    outputs.push_back(experts[e](index_select(tokens, 0, rows)));  // [n_e, C]
  }
  if (outputs.empty()) return Var<T>(Tensor<T>({N, C}));
  const Tensor<int32_t> pairs = index_tensor(plan.pair_of, 0, plan.rows());
  const Var<T> w = reshape(index_select(reshape(weights, {-1}), 0, pairs), {-1, 1});  // [R, 1]
  const Var<T> routed = outputs.size() == 1 ? outputs[0] : concat(outputs, 0);        // [R, C]
  return index_add(routed * w, index_tensor(plan.token_of, 0, plan.rows()), N);
}

template <typename T>
Var<T> dispatch_grouped(const Var<T>& tokens, const Var<T>& weights, const RoutingPlan& plan,
                        const std::vector<Expert<T>>& experts,
                        const DispatchOptions& options = {}) {
  check<ValueError>(!experts.empty() && static_cast<int64_t>(experts.size()) == plan.experts,
                    "dispatch_grouped: {} experts for a routing plan over {}", experts.size(),
                    plan.experts);
  const ExpertConfig& config = experts.front().config;
  for (const Expert<T>& e : experts)
    check<ValueError>(e.config.d_model == config.d_model && e.config.hidden == config.hidden &&
                          e.config.glu == config.glu && e.config.bias == config.bias &&
                          e.config.activation == config.activation,
                      "dispatch_grouped: experts must share one configuration");
  const int64_t N = plan.tokens, K = plan.top_k, E = plan.experts, C = config.d_model,
                h = config.hidden, R = plan.rows();
  check<ShapeError>(tokens.dim() == 2 && tokens.size(0) == N && tokens.size(1) == C,
                    "dispatch_grouped: tokens of shape {}, expected [{}, {}]", tokens.shape(), N,
                    C);
  check<ShapeError>(weights.dim() == 2 && weights.size(0) == N && weights.size(1) == K,
                    "dispatch_grouped: weights of shape {}, expected [{}, {}]", weights.shape(), N,
                    K);
  if constexpr (std::is_same_v<T, float>)
    if (detail::experts_are_int8(experts))
      return detail::dispatch_grouped_int8(tokens, weights, plan, experts);

  const detail::ExpertSlots slots{config.bias, config.glu};
  const int64_t S = slots.per_expert();
  std::vector<Var<T>> inputs{tokens, weights};
  for (const Expert<T>& e : experts) {
    for (const Var<T>* p :
         {&e.up.weight, &e.up.bias, &e.gate.weight, &e.gate.bias, &e.down.weight, &e.down.bias}) {
      if (!p->defined()) continue;
      check<ShapeError>(p->value().is_contiguous(), "dispatch_grouped: non-contiguous weights");
      inputs.push_back(*p);
    }
  }
  auto param = [S](int64_t e, int64_t slot) { return 2 + e * S + slot; };
  bool needs_grad = false;  // the rule of make_op: will there be a backward?
  for (const Var<T>& v : inputs) needs_grad = needs_grad || v.requires_grad();
  needs_grad = needs_grad && grad_enabled();

  const bool glu = config.glu, bias = config.bias;
  const Activation act = config.activation;
  const int64_t hp = glu ? 2 * h : h;  // width of P: H, or [G | H]
  const RowGroups groups{plan.offsets.data(), E};
  const Tensor<T> x = tokens.value().contiguous();
  const Tensor<T> w = weights.value().contiguous();
  auto params = [&](int64_t slot) {
    return slot < 0 ? std::vector<const T*>() : detail::data_of(inputs, param(0, slot), S, E);
  };

  // Every element of these is written before it is read. Without a backward, A overwrites P
  // (its first h columns for GLU) and nothing is kept.
  Tensor<T> P = Tensor<T>::empty({R, hp});
  Tensor<T> A = needs_grad ? Tensor<T>::empty({R, h}) : P;
  const int64_t lda = needs_grad ? h : hp;
  Tensor<T> O = Tensor<T>::empty({R, C});
  Tensor<T> y = Tensor<T>::empty({N, C});
  T* const p_data = P.data();
  T* const a_data = A.data();
  T* const o_data = O.data();

  const std::vector<const T*> w_up = params(slots.up_weight()),
                              w_gate = params(slots.gate_weight()),
                              w_down = params(slots.down_weight()), b_up = params(slots.up_bias()),
                              b_gate = params(slots.gate_bias()),
                              b_down = params(slots.down_bias());

  GemmPhase<T> up_phase, down_phase;
  GroupedProduct<T> up;
  up.groups = groups;
  up.a = x.data();
  up.lda = C;
  up.index = plan.token_of.data();
  up.k = C;
  up.w = glu ? WeightRows<T>{w_gate.data(), w_up.data(), h, C} : WeightRows<T>{w_up.data()};
  up.w.ld = C;
  up.n = h;
  up.segments = glu ? 2 : 1;
  up.c = p_data;
  up.ldc = hp;
  up.epilogue =
      detail::UpEpilogue<T>{glu, bias, act, h, hp, lda, p_data, a_data, b_up.data(), b_gate.data()};
  up_phase.add(up);

  GroupedProduct<T> down;
  down.groups = groups;
  down.a = a_data;
  down.lda = lda;
  down.k = h;
  down.w = WeightRows<T>{w_down.data()};
  down.w.ld = h;
  down.n = C;
  down.c = o_data;
  down.ldc = C;
  if (bias) down.epilogue = detail::DownBiasEpilogue<T>{o_data, C, b_down.data()};
  down_phase.add(down);

#pragma omp parallel if (detail::worth_parallel(up_phase.cost() + down_phase.cost()))
  {
    up_phase.run();
    down_phase.run();
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) detail::combine_rows(plan, n, w.data(), O.data(), C, y.data());
  }
  if (!needs_grad) return Var<T>(std::move(y));

  auto saved = std::make_shared<const RoutingPlan>(plan);  // the layer reuses its plan
  const bool recompute = options.recompute_activation;
  if (recompute) A = Tensor<T>();  // freed with the forward; the backward makes it again
  return make_op<T>(
      "dispatch_grouped", std::move(y), std::move(inputs),
      [=](const std::vector<Var<T>>& in, const Tensor<T>& grad) {
        const RoutingPlan& p = *saved;
        const RowGroups groups{p.offsets.data(), E};
        const Tensor<T> gy = grad.contiguous();
        auto weights_of = [&](int64_t slot) { return detail::data_of(in, param(0, slot), S, E); };
        // A projection's gradients are computed when its weight or bias wants one, for the
        // experts that received rows; the others get none, as in autograd.
        auto wanted = [&](int64_t slot) {
          for (int64_t e = 0; e < E && slot >= 0; ++e)
            if (groups.rows(e) > 0 && in[param(e, slot)].requires_grad()) return true;
          return false;
        };
        struct Grads {
          std::vector<Tensor<T>> tensors;
          std::vector<T*> ptrs;
        };
        auto make_grads = [&](bool on, Shape shape) {
          Grads out;
          out.tensors.resize(E);
          out.ptrs.assign(E, nullptr);
          for (int64_t e = 0; e < E && on; ++e)
            if (groups.rows(e) > 0) {
              out.tensors[e] = Tensor<T>::empty(shape);
              out.ptrs[e] = out.tensors[e].data();
            }
          return out;
        };
        const bool need_down = wanted(slots.down_weight()) || wanted(slots.down_bias());
        const bool need_up = wanted(slots.up_weight()) || wanted(slots.up_bias());
        const bool need_gate = wanted(slots.gate_weight()) || wanted(slots.gate_bias());
        const bool need_x = in[0].requires_grad(), need_w = in[1].requires_grad();
        const bool need_dp = need_x || need_up || need_gate;
        Tensor<T> A_used = recompute && need_down ? Tensor<T>::empty({R, h}) : A;
        Grads dw_down = make_grads(need_down, {C, h}), db_down = make_grads(need_down && bias, {C});
        Grads dw_up = make_grads(need_up, {h, C}), db_up = make_grads(need_up && bias, {h});
        Grads dw_gate = make_grads(need_gate, {h, C}), db_gate = make_grads(need_gate && bias, {h});

        Tensor<T> dO = Tensor<T>::empty({R, C});
        Tensor<T> dw = need_w ? Tensor<T>::empty({N, K}) : Tensor<T>();
        Tensor<T> dP = need_dp ? Tensor<T>::empty({R, hp}) : Tensor<T>();  // dH or [dG | dH]
        Tensor<T> dX_rows = need_x ? Tensor<T>::empty({R, C}) : Tensor<T>();
        Tensor<T> dx = need_x ? Tensor<T>::empty({N, C}) : Tensor<T>();
        const std::vector<const T*> down_w = weights_of(slots.down_weight()),
                                    up_w = weights_of(slots.up_weight()),
                                    gate_w = glu ? weights_of(slots.gate_weight())
                                                 : std::vector<const T*>();

        GemmPhase<T> phase1, phase2;
        if (need_dp) {  // dA = dO W_down, then through the activation (and the gate)
          GroupedProduct<T> da;
          da.groups = groups;
          da.a = dO.data();
          da.lda = C;
          da.k = C;
          da.w = WeightRows<T>{down_w.data()};
          da.w.ld = h;
          da.transposed = false;
          da.n = h;
          da.c = dP.data() + (glu ? h : 0);
          da.ldc = hp;
          da.epilogue = [&](int64_t, int64_t r0, int64_t rows, int64_t j0, int64_t j1) {
            for (int64_t r = r0; r < r0 + rows; ++r) {
              const T* pr = P.data() + r * hp + j0;
              T* dr = dP.data() + r * hp + j0;
              if (glu)
                glu_backward(act, pr, pr + h, dr, dr + h, j1 - j0);
              else
                activation_backward(act, pr, dr, j1 - j0);
            }
          };
          phase1.add(da);
        }
        auto weight_grad = [&](GemmPhase<T>& phase, const T* d, int64_t ldd, const T* xs,
                               int64_t ldx, const int32_t* index, int64_t m, int64_t n, Grads& g,
                               Grads& b) {
          GroupedWeightGrad<T> wg;
          wg.groups = groups;
          wg.d = d;
          wg.ldd = ldd;
          wg.x = xs;
          wg.ldx = ldx;
          wg.index = index;
          wg.m = m;
          wg.n = n;
          wg.grads = g.ptrs.data();
          wg.bias_grads = bias ? b.ptrs.data() : nullptr;
          phase.add(wg);
        };
        if (need_down)
          weight_grad(phase1, dO.data(), C, A_used.data(), h, nullptr, C, h, dw_down, db_down);
        if (need_up)
          weight_grad(phase2, dP.data() + (glu ? h : 0), hp, x.data(), C, p.token_of.data(), h, C,
                      dw_up, db_up);
        if (need_gate)
          weight_grad(phase2, dP.data(), hp, x.data(), C, p.token_of.data(), h, C, dw_gate,
                      db_gate);
        if (need_x) {  // dX_rows = [dG | dH] [W_gate; W_up]: one GEMM over K = 2h
          GroupedProduct<T> dxr;
          dxr.groups = groups;
          dxr.a = dP.data();
          dxr.lda = hp;
          dxr.k = hp;
          dxr.w =
              glu ? WeightRows<T>{gate_w.data(), up_w.data(), h, C} : WeightRows<T>{up_w.data()};
          dxr.w.ld = C;
          dxr.transposed = false;
          dxr.n = C;
          dxr.c = dX_rows.data();
          dxr.ldc = C;
          phase2.add(dxr);
        }

#pragma omp parallel if (detail::worth_parallel(phase1.cost() + phase2.cost()))
        {
#pragma omp for schedule(static) nowait
          for (int64_t r = 0; r < R; ++r) {  // dO[r] = w[pair(r)] dy[token(r)]
            const T wr = w.data()[p.pair_of[r]];
            const T* src = gy.data() + int64_t{p.token_of[r]} * C;
            T* dst = dO.data() + r * C;
            for (int64_t c = 0; c < C; ++c) dst[c] = wr * src[c];
          }
          if (need_w) {
#pragma omp for schedule(static) nowait
            for (int64_t n = 0; n < N; ++n)
              detail::combine_weight_grads(p, n, gy.data(), O.data(), C, dw.data());
          }
          if (recompute && need_down) {
#pragma omp for schedule(static) nowait
            for (int64_t r = 0; r < R; ++r) {  // A = act(P), as in the forward's epilogue
              const T* pr = P.data() + r * hp;
              T* ar = A_used.data() + r * h;
              if (glu)
                glu_forward(act, pr, pr + h, ar, h);
              else
                activation_forward(act, pr, ar, h);
            }
          }
#pragma omp barrier
          phase1.run();
          phase2.run();
          if (need_x) {
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; ++n) {  // dx[n] = sum_k dX_rows[row(n, k)]
              T* dst = dx.data() + n * C;
              std::fill_n(dst, C, T(0));
              for (int64_t k = 0; k < K; ++k) {
                const int32_t r = p.row_of[n * K + k];
                if (r >= 0) detail::add_row(dst, dX_rows.data() + int64_t{r} * C, C);
              }
            }
          }
        }

        if (need_w) in[1].add_grad(std::move(dw));
        auto add_expert_grads = [&](int64_t slot, Grads& g) {
          for (int64_t e = 0; e < E && slot >= 0; ++e)
            if (g.ptrs[e] && in[param(e, slot)].requires_grad())
              in[param(e, slot)].add_grad(std::move(g.tensors[e]));
        };
        add_expert_grads(slots.down_weight(), dw_down);
        add_expert_grads(slots.down_bias(), db_down);
        add_expert_grads(slots.up_weight(), dw_up);
        add_expert_grads(slots.up_bias(), db_up);
        add_expert_grads(slots.gate_weight(), dw_gate);
        add_expert_grads(slots.gate_bias(), db_gate);
        if (need_x) in[0].add_grad(std::move(dx));
      });
}

}  // namespace minimoe
