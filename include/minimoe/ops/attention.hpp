// minimoe/ops/attention.hpp: fused scaled dot-product attention (causal, grouped-query,
// optional logit soft-capping), forward and backward.
//
//   // q [B, Tq, H, D], k and v [B, Tk, Hkv, D]  ->  [B, Tq, H, D]
//   Var<float> y = scaled_dot_product_attention(q, k, v);
//
// Heads stay in the [B, T, H, D] layout that the projections produce, so no transpose copies
// are made: each (batch, head) is a strided [T, D] matrix. Per head and block of queries,
// S = scale Q K^T and O = softmax(S) V are products of minimoe's micro-kernels
// (kernels/grouped_gemm.hpp, gemm_strided: the strided heads read in place) over the keys the
// block sees; the causal mask is applied while the softmax runs (no mask tensor), and the
// probabilities P are written straight into the tensor kept for backward when a gradient is
// needed.
//
// Causality with a KV cache: query i of Tq sits at absolute position Tk - Tq + i and sees keys
// j <= Tk - Tq + i, so decoding one token (Tq = 1) against Tk cached keys sees all of them.
// Grouped-query attention: query head h reads key/value head h / (H / Hkv).
// Soft-capping (Gemma 2): s -> cap * tanh(s / cap) before the softmax, when cap > 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/kernels/softmax.hpp"

namespace minimoe {

struct AttentionOptions {
  bool causal = true;
  double scale = 0.0;    // 0 means 1 / sqrt(D)
  double softcap = 0.0;  // 0 means no soft-capping
};

namespace detail {

// The rows of one (batch, head) inside a contiguous [B, T, heads, D] tensor: a [T, D] matrix
// with a row stride of heads * D.
template <typename T>
struct Heads {
  T* data;
  int64_t ld;
  Heads(T* base, int64_t b, int64_t head, int64_t T_, int64_t heads, int64_t D)
      : data(base + (b * T_ * heads + head) * D), ld(heads * D) {}
  T* row(int64_t t) const { return data + t * ld; }
};

// Number of keys query i may see.
inline int64_t visible_keys(int64_t i, int64_t Tq, int64_t Tk, bool causal) {
  return causal ? i + Tk - Tq + 1 : Tk;
}

// Queries go in blocks of this many rows, each against the keys its last row sees: under a
// causal mask the products skip most of the masked upper triangle (at T = 256, 62.5% of the
// full products are computed), and blocks of 64 rows keep the products efficient.
inline constexpr int64_t kQueryBlock = 64;

// The attention probabilities of one query from its n raw scores q . k_j (in place):
// softmax(cap tanh(scale s / cap)), the cap only when cap > 0, stable (max subtracted).
template <typename T>
void attention_softmax(T* row, int64_t n, T scale, T cap) {
  if (n == 0) return;  // no keys (a max needs one)
  if (cap > 0) {
    ArrayMap<T> s(row, n);
    s = cap * (s * (scale / cap)).tanh();
  } else {
    scale_row(row, n, scale);
  }
  const T sum = exp_shifted(row, row, n, row_max(row, n));
  scale_row(row, n, T(1) / sum);
}

// The softmax backward of one row over its first n keys, in place: ds = scale p (dp - p . dp).
template <typename T>
void attention_softmax_backward(const T* p, T* ds, int64_t n, T scale) {
  using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
  const Eigen::Map<const Row> pr(p, n);
  Eigen::Map<Row> d(ds, n);
  const T row_dot = (pr * d).sum();
  d = scale * pr * (d - row_dot);
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
  // Every element of both is written below.
  Tensor<T> out = Tensor<T>::empty({B, Tq, H, D});
  Tensor<T> probs = record ? Tensor<T>::empty({B, H, Tq, Tk}) : Tensor<T>();  // P, for backward

#pragma omp parallel if (detail::worth_parallel(double(B * H) * double(Tq * Tk) * double(D)))
  {
    // P of one head when it is not kept.
    std::vector<T> scratch(static_cast<size_t>(record ? 0 : Tq * Tk));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H, hk = h / group;
      const detail::Heads<const T> qh(qc.data(), b, h, Tq, H, D);
      const detail::Heads<const T> kh(kc.data(), b, hk, Tk, Hkv, D);
      const detail::Heads<const T> vh(vc.data(), b, hk, Tk, Hkv, D);
      const detail::Heads<T> oh(out.data(), b, h, Tq, H, D);
      T* p = record ? probs.data() + bh * Tq * Tk : scratch.data();  // [Tq, Tk]
      for (int64_t i0 = 0; i0 < Tq; i0 += detail::kQueryBlock) {
        const int64_t rows = std::min(detail::kQueryBlock, Tq - i0);
        const int64_t keys = detail::visible_keys(i0 + rows - 1, Tq, Tk, causal);
        T* pb = p + i0 * Tk;
        gemm_strided(false, true, rows, keys, D, qh.row(i0), qh.ld, kh.row(0), kh.ld, pb, Tk,
                     false);
        for (int64_t i = 0; i < rows; ++i) {  // masked, capped, stable softmax of each row
          T* row = pb + i * Tk;
          const int64_t n = detail::visible_keys(i0 + i, Tq, Tk, causal);
          detail::attention_softmax(row, n, scale, cap);
          std::fill(row + n, row + Tk, T(0));
        }
        gemm_strided(false, false, rows, D, keys, pb, Tk, vh.row(0), vh.ld, oh.row(i0), oh.ld,
                     false);
      }
    }
  }

  return make_op<T>(
      "attention", std::move(out), {q, k, v},
      [qc, kc, vc, probs, scale, cap, causal, group](const std::vector<Var<T>>& in,
                                                     const Tensor<T>& grad) {
        const Tensor<T> g = grad.contiguous();
        const int64_t B = qc.size(0), Tq = qc.size(1), H = qc.size(2), D = qc.size(3);
        const int64_t Tk = kc.size(1), Hkv = kc.size(2);
        // Every element of the three is written below (dk, dv by the first head of a group).
        Tensor<T> dq = Tensor<T>::empty(qc.shape()), dk = Tensor<T>::empty(kc.shape()),
                  dv = Tensor<T>::empty(vc.shape());
    // One thread owns each (batch, kv head): the query heads of its group add into the
    // same dK, dV without races, in a fixed order.
#pragma omp parallel if (detail::worth_parallel(double(B * H) * double(Tq * Tk) * double(D)))
        {
          std::vector<T> ds(static_cast<size_t>(Tq * Tk));  // dP, then dS, of one head
#pragma omp for schedule(static)
          for (int64_t bk = 0; bk < B * Hkv; ++bk) {
            const int64_t b = bk / Hkv, hk = bk % Hkv;
            const detail::Heads<const T> kh(kc.data(), b, hk, Tk, Hkv, D);
            const detail::Heads<const T> vh(vc.data(), b, hk, Tk, Hkv, D);
            const detail::Heads<T> dkh(dk.data(), b, hk, Tk, Hkv, D);
            const detail::Heads<T> dvh(dv.data(), b, hk, Tk, Hkv, D);
            for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
              const detail::Heads<const T> qh(qc.data(), b, h, Tq, H, D);
              const detail::Heads<const T> gh(g.data(), b, h, Tq, H, D);
              const detail::Heads<T> dqh(dq.data(), b, h, Tq, H, D);
              const T* p = probs.data() + (b * H + h) * Tq * Tk;
              // By the forward's query blocks (P is zero beyond each block's keys):
              // dP = dO V^T, dS = P * (dP - rowsum(P * dP)) (the softmax backward), dQ = dS K.
              for (int64_t i0 = 0; i0 < Tq; i0 += detail::kQueryBlock) {
                const int64_t rows = std::min(detail::kQueryBlock, Tq - i0);
                const int64_t keys = detail::visible_keys(i0 + rows - 1, Tq, Tk, causal);
                T* dsb = ds.data() + i0 * Tk;
                gemm_strided(false, true, rows, keys, D, gh.row(i0), gh.ld, vh.row(0), vh.ld, dsb,
                             Tk, false);
                for (int64_t i = 0; i < rows; ++i) {
                  const T* pr = p + (i0 + i) * Tk;
                  T* dsr = dsb + i * Tk;
                  detail::attention_softmax_backward(pr, dsr, keys, scale);
                  std::fill(dsr + keys, dsr + Tk, T(0));
                  if (cap > 0) {  // d(cap tanh(u / cap)) / du = 1 - tanh^2, with u recomputed
                    const T* qr = qh.row(i0 + i);
                    const int64_t n = detail::visible_keys(i0 + i, Tq, Tk, causal);
                    for (int64_t j = 0; j < n; ++j) {
                      const T* kr = kh.row(j);
                      T u = 0;
                      for (int64_t c = 0; c < D; ++c) u += qr[c] * kr[c];
                      const T t = std::tanh(scale * u / cap);
                      dsr[j] *= T(1) - t * t;
                    }
                  }
                }
                gemm_strided(false, false, rows, D, keys, dsb, Tk, kh.row(0), kh.ld, dqh.row(i0),
                             dqh.ld, false);
              }
              // By blocks of keys, over the queries that see them (the depth is those queries,
              // so each block of dK and dV is written once per head):
              // dV = P^T dO, dK = dS^T Q.
              const bool add = h > hk * group;
              for (int64_t j0 = 0; j0 < Tk; j0 += detail::kQueryBlock) {
                const int64_t cols = std::min(detail::kQueryBlock, Tk - j0);
                const int64_t first =
                    causal ? std::max<int64_t>(0, j0 - (Tk - Tq)) : 0;  // first query seeing j0
                const int64_t depth = Tq - first;
                gemm_strided(true, false, cols, D, depth, p + first * Tk + j0, Tk, gh.row(first),
                             gh.ld, dvh.row(j0), dvh.ld, add);
                gemm_strided(true, false, cols, D, depth, ds.data() + first * Tk + j0, Tk,
                             qh.row(first), qh.ld, dkh.row(j0), dkh.ld, add);
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
