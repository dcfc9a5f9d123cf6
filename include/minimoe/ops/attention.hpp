// minimoe/ops/attention.hpp: fused scaled dot-product attention (causal, grouped-query,
// optional logit soft-capping), forward and backward.
//
//   // q [B, Tq, H, D], k and v [B, Tk, Hkv, D]  ->  [B, Tq, H, D]
//   Var<float> y = scaled_dot_product_attention(q, k, v);
//
// Heads stay in the [B, T, H, D] layout that the projections produce, so no transpose copies
// are made: each (batch, head) is a strided [T, D] matrix. Per head and block of queries,
// S = scale Q K^T and O = softmax(S) V are Eigen GEMMs over the keys the block sees; the causal
// mask is applied while the softmax runs (no mask tensor), and the probabilities P are kept for
// backward only when a gradient is needed.
//
// Causality with a KV cache: query i of Tq sits at absolute position Tk - Tq + i and sees keys
// j <= Tk - Tq + i, so decoding one token (Tq = 1) against Tk cached keys sees all of them.
// Grouped-query attention: query head h reads key/value head h / (H / Hkv).
// Soft-capping (Gemma 2): s -> cap * tanh(s / cap) before the softmax, when cap > 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/parallel.hpp"

namespace minimoe {

struct AttentionOptions {
  bool causal = true;
  double scale = 0.0;    // 0 means 1 / sqrt(D)
  double softcap = 0.0;  // 0 means no soft-capping
};

namespace detail {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using StridedMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

// The [T, D] matrix of one (batch, head) inside a contiguous [B, T, heads, D] tensor.
template <typename T>
ConstStridedMap<T> head_matrix(const T* data, int64_t b, int64_t head, int64_t T_, int64_t heads,
                               int64_t D) {
  return ConstStridedMap<T>(data + (b * T_ * heads + head) * D, T_, D,
                            Eigen::OuterStride<>(heads * D));
}
template <typename T>
StridedMap<T> head_matrix(T* data, int64_t b, int64_t head, int64_t T_, int64_t heads, int64_t D) {
  return StridedMap<T>(data + (b * T_ * heads + head) * D, T_, D, Eigen::OuterStride<>(heads * D));
}

// Number of keys query i may see.
inline int64_t visible_keys(int64_t i, int64_t Tq, int64_t Tk, bool causal) {
  return causal ? i + Tk - Tq + 1 : Tk;
}

// Queries go in blocks of this many rows, each against the keys its last row sees: under a
// causal mask the products skip most of the masked upper triangle (at T = 256, 62.5% of the
// full products are computed), and blocks of 64 rows keep Eigen's GEMMs efficient.
inline constexpr int64_t kQueryBlock = 64;

// The attention probabilities of one query from its n raw scores q . k_j (in place):
// softmax(cap tanh(scale s / cap)), the cap only when cap > 0, stable (max subtracted).
template <typename T>
void attention_softmax(T* row, int64_t n, T scale, T cap) {
  T max = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    T s = row[j] * scale;
    if (cap > 0) s = cap * std::tanh(s / cap);
    row[j] = s;
    max = std::max(max, s);
  }
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> visible(row, n);
  visible = (visible - max).exp();  // vectorised
  visible *= T(1) / visible.sum();
}

}  // namespace detail

template <typename T>
Var<T> scaled_dot_product_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v,
                                    const AttentionOptions& options = {}) {
  check<ShapeError>(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
                    "attention: q, k, v must be [B, T, heads, D], got {}, {}, {}", q.shape(),
                    k.shape(), v.shape());
  check<ShapeError>(k.shape() == v.shape(), "attention: k {} and v {} differ", k.shape(),
                    v.shape());
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2);
  check<ShapeError>(k.size(0) == B && k.size(3) == D,
                    "attention: q {} and k {} differ in batch or head size", q.shape(), k.shape());
  check<ShapeError>(Hkv > 0 && H % Hkv == 0,
                    "attention: {} query heads are not a multiple of {} key/value heads", H, Hkv);
  check<ShapeError>(!options.causal || Tk >= Tq,
                    "attention: causal attention needs at least as many keys ({}) as queries ({})",
                    Tk, Tq);
  check<ValueError>(options.softcap >= 0.0, "attention: softcap must be >= 0, got {}",
                    options.softcap);

  const Tensor<T> qc = q.value().contiguous();
  const Tensor<T> kc = k.value().contiguous();
  const Tensor<T> vc = v.value().contiguous();
  const int64_t group = H / Hkv;
  const T scale = static_cast<T>(options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(D)));
  const T cap = static_cast<T>(options.softcap);
  const bool causal = options.causal;
  const bool record =
      grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());

  Tensor<T> out({B, Tq, H, D});
  Tensor<T> probs = record ? Tensor<T>({B, H, Tq, Tk}) : Tensor<T>();  // P, kept for backward

#pragma omp parallel if (detail::worth_parallel(double(B * H) * double(Tq * Tk) * double(D)))
  {
    detail::RowMatrix<T> p(Tq, Tk);  // [Tq, Tk]
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H, hk = h / group;
      const auto qm = detail::head_matrix(qc.data(), b, h, Tq, H, D);
      const auto km = detail::head_matrix(kc.data(), b, hk, Tk, Hkv, D);
      const auto vm = detail::head_matrix(vc.data(), b, hk, Tk, Hkv, D);
      auto om = detail::head_matrix(out.data(), b, h, Tq, H, D);
      for (int64_t i0 = 0; i0 < Tq; i0 += detail::kQueryBlock) {
        const int64_t rows = std::min(detail::kQueryBlock, Tq - i0);
        const int64_t keys = detail::visible_keys(i0 + rows - 1, Tq, Tk, causal);
        auto pb = p.block(i0, 0, rows, keys);
        pb.noalias() = qm.middleRows(i0, rows) * km.topRows(keys).transpose();
        for (int64_t i = i0; i < i0 + rows; ++i) {  // masked, capped, stable softmax of each row
          T* row = p.data() + i * Tk;
          const int64_t n = detail::visible_keys(i, Tq, Tk, causal);
          detail::attention_softmax(row, n, scale, cap);
          std::fill(row + n, row + Tk, T(0));
        }
        om.middleRows(i0, rows).noalias() = pb * vm.topRows(keys);
      }
      if (record) std::copy_n(p.data(), Tq * Tk, probs.data() + bh * Tq * Tk);
    }
  }

  return make_op<T>(
      "attention", std::move(out), {q, k, v},
      [qc, kc, vc, probs, scale, cap, causal, group](const std::vector<Var<T>>& in,
                                                     const Tensor<T>& grad) {
        const Tensor<T> g = grad.contiguous();
        const int64_t B = qc.size(0), Tq = qc.size(1), H = qc.size(2), D = qc.size(3);
        const int64_t Tk = kc.size(1), Hkv = kc.size(2);
        Tensor<T> dq(qc.shape()), dk(kc.shape()), dv(vc.shape());
    // One thread owns each (batch, kv head): the query heads of its group add into the
    // same dK, dV without races, in a fixed order.
#pragma omp parallel if (detail::worth_parallel(double(B * H) * double(Tq * Tk) * double(D)))
        {
          detail::RowMatrix<T> dp(std::min(Tq, detail::kQueryBlock), Tk);  // one query block
#pragma omp for schedule(static)
          for (int64_t bk = 0; bk < B * Hkv; ++bk) {
            const int64_t b = bk / Hkv, hk = bk % Hkv;
            const auto km = detail::head_matrix(kc.data(), b, hk, Tk, Hkv, D);
            const auto vm = detail::head_matrix(vc.data(), b, hk, Tk, Hkv, D);
            auto dkm = detail::head_matrix(dk.data(), b, hk, Tk, Hkv, D);
            auto dvm = detail::head_matrix(dv.data(), b, hk, Tk, Hkv, D);
            for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
              const auto qm = detail::head_matrix(qc.data(), b, h, Tq, H, D);
              const auto gm = detail::head_matrix(g.data(), b, h, Tq, H, D);
              const Eigen::Map<const detail::RowMatrix<T>> p(probs.data() + (b * H + h) * Tq * Tk,
                                                             Tq, Tk);
              auto dqm = detail::head_matrix(dq.data(), b, h, Tq, H, D);
              // The forward's query blocks: P is zero beyond each block's keys.
              for (int64_t i0 = 0; i0 < Tq; i0 += detail::kQueryBlock) {
                const int64_t rows = std::min(detail::kQueryBlock, Tq - i0);
                const int64_t keys = detail::visible_keys(i0 + rows - 1, Tq, Tk, causal);
                const auto pb = p.block(i0, 0, rows, keys);
                const auto gb = gm.middleRows(i0, rows);
                auto dpb = dp.block(0, 0, rows, keys);
                dvm.topRows(keys).noalias() += pb.transpose() * gb;
                dpb.noalias() = gb * vm.topRows(keys).transpose();
                // softmax backward: dS = P * (dP - rowsum(P * dP))
                const Eigen::Array<T, Eigen::Dynamic, 1> row_dot =
                    (pb.array() * dpb.array()).rowwise().sum();
                dpb.array() = pb.array() * (dpb.array().colwise() - row_dot);
                if (cap > 0) {  // d(cap tanh(u / cap)) / du = 1 - tanh^2, with u recomputed
                  for (int64_t i = 0; i < rows; ++i) {
                    const int64_t n = detail::visible_keys(i0 + i, Tq, Tk, causal);
                    for (int64_t j = 0; j < n; ++j) {
                      const T t = std::tanh(scale * qm.row(i0 + i).dot(km.row(j)) / cap);
                      dpb(i, j) *= T(1) - t * t;
                    }
                  }
                }
                dpb *= scale;
                dqm.middleRows(i0, rows).noalias() = dpb * km.topRows(keys);
                dkm.topRows(keys).noalias() += dpb.transpose() * qm.middleRows(i0, rows);
              }
            }
          }
        }
        in[0].add_grad(std::move(dq));
        in[1].add_grad(std::move(dk));
        in[2].add_grad(std::move(dv));
      });
}

}  // namespace minimoe
