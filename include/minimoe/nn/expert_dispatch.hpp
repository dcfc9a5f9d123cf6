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
// and writes its own backward:
//
//   forward   H = X_g W_up^T + b_up   (G likewise for GLU)       [R, h]   R = routed rows
//             A = act(H)   or   act(G) * H                        [R, h]
//             O = A W_down^T + b_down                             [R, C]
//             y[n] = sum_k w[n, k] O[row(n, k)]                   (each token owns its sum)
//   backward  dw[n, k] = <dy[n], O[row]>,  dO[r] = w[pair(r)] dy[token(r)]
//             dW_down = dO^T A,  dA = dO W_down,  dH (dG) from dA and the activation derivative
//             dW_up = dH^T X_g,  dX_rows = dH W_up (+ dG W_gate),  dx[n] = sum_k dX_rows[row(n, k)]
//
// Every GEMM reads X through the plan's row index; dW tiles and token sums each have one owner,
// so there are no atomics and results are deterministic. The op keeps H (and G), A and O for
// backward.
#pragma once

#include <memory>
#include <vector>

#include "minimoe/kernels/grouped_gemm.hpp"
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

// Adds bias_g (length n) to every row of each group of a [R, n] matrix.
template <typename T>
void add_group_bias(const RowGroups& groups, const std::vector<const T*>& biases, T* m, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups.count; ++g)
    for (int64_t r = groups.begin(g); r < groups.begin(g) + groups.rows(g); ++r)
      for (int64_t c = 0; c < n; ++c) m[r * n + c] += biases[g][c];
}

// Sum over each group's rows of a [R, n] matrix: the bias gradients.
template <typename T>
std::vector<Tensor<T>> group_column_sums(const RowGroups& groups, const T* m, int64_t n) {
  std::vector<Tensor<T>> sums(static_cast<size_t>(groups.count));
  for (auto& s : sums) s = Tensor<T>({n});
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups.count; ++g)
    for (int64_t r = groups.begin(g); r < groups.begin(g) + groups.rows(g); ++r)
      for (int64_t c = 0; c < n; ++c) sums[g].data()[c] += m[r * n + c];
  return sums;
}

template <typename T>
std::vector<const T*> data_of(const std::vector<Var<T>>& vars, int64_t first, int64_t stride,
                              int64_t count) {
  std::vector<const T*> out;
  for (int64_t e = 0; e < count; ++e) out.push_back(vars[first + e * stride].value().data());
  return out;
}

}  // namespace detail

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
                        const std::vector<Expert<T>>& experts) {
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

  const RowGroups groups{plan.offsets.data(), E};
  const int32_t* token_of = plan.token_of.data();
  const Tensor<T> x = tokens.value().contiguous();
  const Tensor<T> w = weights.value().contiguous();

  // H, G: pre-activations; A: activations; O: expert outputs, one row per routed pair.
  Tensor<T> H({R, h}), G = config.glu ? Tensor<T>({R, h}) : Tensor<T>(), A({R, h}), O({R, C});
  grouped_matmul(groups, x.data(), C, token_of,
                 detail::data_of(inputs, param(0, slots.up_weight()), S, E).data(), true, C, h,
                 H.data(), h);
  if (config.bias)
    detail::add_group_bias(groups, detail::data_of(inputs, param(0, slots.up_bias()), S, E),
                           H.data(), h);
  if (config.glu) {
    grouped_matmul(groups, x.data(), C, token_of,
                   detail::data_of(inputs, param(0, slots.gate_weight()), S, E).data(), true, C, h,
                   G.data(), h);
    if (config.bias)
      detail::add_group_bias(groups, detail::data_of(inputs, param(0, slots.gate_bias()), S, E),
                             G.data(), h);
  }
  const Activation act = config.activation;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < R * h; ++i)
    A.data()[i] =
        config.glu ? activate(act, G.data()[i]) * H.data()[i] : activate(act, H.data()[i]);
  grouped_matmul(groups, A.data(), h, nullptr,
                 detail::data_of(inputs, param(0, slots.down_weight()), S, E).data(), true, h, C,
                 O.data(), C);
  if (config.bias)
    detail::add_group_bias(groups, detail::data_of(inputs, param(0, slots.down_bias()), S, E),
                           O.data(), C);

  Tensor<T> y({N, C});
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t r = plan.row_of[n * K + k];
      if (r < 0) continue;
      const T wk = w.data()[n * K + k];
      for (int64_t c = 0; c < C; ++c) y.data()[n * C + c] += wk * O.data()[r * C + c];
    }

  auto saved = std::make_shared<const RoutingPlan>(plan);  // the layer reuses its plan
  return make_op<T>(
      "dispatch_grouped", std::move(y), std::move(inputs),
      [=](const std::vector<Var<T>>& in, const Tensor<T>& grad) {
        const RoutingPlan& p = *saved;
        const RowGroups groups{p.offsets.data(), E};
        const int32_t* token_of = p.token_of.data();
        const Tensor<T> gy = grad.contiguous();
        auto weights_of = [&](int64_t slot) { return detail::data_of(in, param(0, slot), S, E); };
        // Gradients for the experts that received rows; the others get none, as in autograd.
        auto add_expert_grads = [&](int64_t slot, std::vector<Tensor<T>>& grads) {
          for (int64_t e = 0; e < E; ++e)
            if (groups.rows(e) > 0 && in[param(e, slot)].requires_grad())
              in[param(e, slot)].add_grad(std::move(grads[e]));
        };
        auto weight_grad = [&](int64_t slot, const Tensor<T>& d, int64_t n, const T* xs, int64_t k,
                               const int32_t* index) {
          std::vector<Tensor<T>> grads;
          std::vector<T*> ptrs;
          for (int64_t e = 0; e < E; ++e) {
            grads.emplace_back(Shape{n, k});
            ptrs.push_back(grads.back().data());
          }
          grouped_weight_grad(groups, d.data(), n, n, xs, k, index, k, ptrs.data());
          add_expert_grads(slot, grads);
        };

        if (in[1].requires_grad()) {  // routing weights: <dy[n], O[row]>
          Tensor<T> dw({N, K});
          for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k) {
              const int32_t r = p.row_of[n * K + k];
              if (r < 0) continue;
              T dot = 0;
              for (int64_t c = 0; c < C; ++c) dot += gy.data()[n * C + c] * O.data()[r * C + c];
              dw.data()[n * K + k] = dot;
            }
          in[1].add_grad(std::move(dw));
        }

        Tensor<T> dO({R, C});
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < R; ++r) {
          const T wr = w.data()[p.pair_of[r]];
          const T* src = gy.data() + int64_t{token_of[r]} * C;
          for (int64_t c = 0; c < C; ++c) dO.data()[r * C + c] = wr * src[c];
        }
        if (config.bias) {
          std::vector<Tensor<T>> db = detail::group_column_sums(groups, dO.data(), C);
          add_expert_grads(slots.down_bias(), db);
        }
        weight_grad(slots.down_weight(), dO, C, A.data(), h, nullptr);

        // dA = dO W_down, then through the activation (and the gate).
        Tensor<T> dH({R, h}), dG = config.glu ? Tensor<T>({R, h}) : Tensor<T>();
        grouped_matmul(groups, dO.data(), C, nullptr, weights_of(slots.down_weight()).data(), false,
                       C, h, dH.data(), h);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < R * h; ++i) {
          const T da = dH.data()[i];
          if (config.glu) {
            const T g = G.data()[i];
            dG.data()[i] = da * H.data()[i] * activate_derivative(act, g);
            dH.data()[i] = da * activate(act, g);
          } else {
            dH.data()[i] = da * activate_derivative(act, H.data()[i]);
          }
        }
        if (config.bias) {
          std::vector<Tensor<T>> db = detail::group_column_sums(groups, dH.data(), h);
          add_expert_grads(slots.up_bias(), db);
          if (config.glu) {
            db = detail::group_column_sums(groups, dG.data(), h);
            add_expert_grads(slots.gate_bias(), db);
          }
        }
        weight_grad(slots.up_weight(), dH, h, x.data(), C, token_of);
        if (config.glu) weight_grad(slots.gate_weight(), dG, h, x.data(), C, token_of);

        if (!in[0].requires_grad()) return;
        Tensor<T> dX_rows({R, C});
        grouped_matmul(groups, dH.data(), h, nullptr, weights_of(slots.up_weight()).data(), false,
                       h, C, dX_rows.data(), C);
        if (config.glu) {
          Tensor<T> from_gate({R, C});
          grouped_matmul(groups, dG.data(), h, nullptr, weights_of(slots.gate_weight()).data(),
                         false, h, C, from_gate.data(), C);
          dX_rows.array() += from_gate.array();
        }
        Tensor<T> dx({N, C});
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < K; ++k) {
            const int32_t r = p.row_of[n * K + k];
            if (r < 0) continue;
            for (int64_t c = 0; c < C; ++c) dx.data()[n * C + c] += dX_rows.data()[r * C + c];
          }
        in[0].add_grad(std::move(dx));
      });
}

}  // namespace minimoe
