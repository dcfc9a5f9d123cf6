// minimoe/generate/step_decoder.hpp: one new token of one sequence through a GPT, without the
// autograd graph, into preallocated buffers.
//
//   std::vector<KVCache<float>> caches = model.make_caches(1);
//   next_token_logits(model, prompt, caches);       // prefill: the graph path, all rows at once
//   StepDecoder<float> step(model);
//   const float* logits = step(id, caches);         // [V], valid until the next call
//
// Decoding a small model one token at a time costs more in per-op overhead (graph nodes,
// shapes, temporaries, a parallel region per op) than in arithmetic: the `tiny` preset's
// weights are 5 MB, read from cache in tens of microseconds. This path does what GPT::hidden
// and GPT::head do for a single position with raw loops and the row-dot kernels, so a token
// costs the weights it reads: every product is a matrix-vector product over the Linear's
// [out, in] rows (kernels/gemm_microkernel.hpp, or int8 rows when quantised).
//
// Threads: the whole token is one parallel region, and each thread owns a slice of every
// layer, so that it streams only its share of the weights:
//   attention   key/value heads (and their query heads): q, k, v rows, QK-norm, RoPE, the
//               softmax over the cache, and o_proj's columns of those heads, a partial sum
//   experts     hidden units of every chosen expert: up (and gate) rows, the activation, and
//               down's columns of those units, a partial sum
//   LM head     vocabulary rows
// The partial sums of a sublayer meet at one barrier and every thread adds them, in thread
// order, to its own copy of the residual stream (2 barriers per block); the small steps between
// (norms, the router, the top-k) run on every thread alike, which costs less than a barrier.
// The first slice carries the biases of the summed products. The result depends on the thread
// count only through that summation order, as float rounding.
//
// It computes what the graph computes, to float rounding (tests/generate/test_step_decoder.cpp
// compares the logits on every preset): same norms, RoPE tables, attention softmax and router
// choice (the shared row functions of ops/ and nn/router.hpp). It is inference only: no
// dropout, no router jitter, no balancing update. The model's weights are read in place at
// each call, so the decoder follows the model as it trains or is quantised; models whose experts
// live on other ranks (expert parallelism) are refused.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "minimoe/kernels/activation.hpp"
#include "minimoe/kernels/gemm_microkernel.hpp"
#include "minimoe/kernels/int8_gemm.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/models/gpt.hpp"
#include "minimoe/ops/attention.hpp"
#include "minimoe/ops/norm.hpp"
#include "minimoe/ops/rope.hpp"

namespace minimoe {

namespace detail {

// [begin, end) of part `part` of `parts` near-equal parts of [0, n), in multiples of `align`.
inline std::pair<int64_t, int64_t> part_range(int64_t n, int part, int parts, int64_t align = 1) {
  const int64_t units = (n + align - 1) / align;
  return {std::min(n, units * part / parts * align),
          std::min(n, units * (part + 1) / parts * align)};
}

// y[j - j0] = sum_{p0 <= p < p1} W[j, p] x[p - p0] for j0 <= j < j1, W [n, k] row-major
// (the Linear layout).
template <typename T>
void weight_block(const T* w, int64_t k, const T* x, int64_t j0, int64_t j1, int64_t p0, int64_t p1,
                  T* y) {
  if (j1 <= j0) return;
  if (p1 <= p0) {
    std::fill(y, y + (j1 - j0), T(0));
    return;
  }
  gemm_kernel<T>().dot(p1 - p0, &x, 1, w + j0 * k + p0, k, j1 - j0, y, j1 - j0);
}

// The same block of a Linear's product without its bias (its int8 rows when quantised).
template <typename T>
void linear_block(const Linear<T>& l, const T* x, int64_t j0, int64_t j1, int64_t p0, int64_t p1,
                  T* y) {
  const int64_t k = l.in_features();
  if constexpr (std::is_same_v<T, float>) {
    if (l.int8 && j1 > j0 && p1 > p0) {
      int8_kernel().dot(p1 - p0, &x, 1, l.int8->q.data() + j0 * k + p0, k,
                        l.int8->scale.data() + j0, j1 - j0, y, j1 - j0);
      return;
    }
  }
  weight_block(l.weight.value().data(), k, x, j0, j1, p0, p1, y);
}

// y[j - j0] = (x W^T + b)[j] for j0 <= j < j1: output rows of a Linear over the whole input.
template <typename T>
void linear_rows(const Linear<T>& l, const T* x, int64_t j0, int64_t j1, T* y) {
  linear_block(l, x, j0, j1, 0, l.in_features(), y);
  if (l.bias.defined())
    for (int64_t j = j0; j < j1; ++j) y[j - j0] += l.bias.value().data()[j];
}

// y = norm(x) over one row of C values; y may be x.
template <typename T>
void norm_row(const Norm<T>& norm, const T* x, T* y, int64_t C) {
  const bool layer = norm.kind == NormKind::LayerNorm;
  const Var<T>& weight = layer ? norm.ln.weight : norm.rms.weight;
  normalize_row(x, y, C, layer ? norm.ln.eps : norm.rms.eps, /*centre=*/layer);
  if (weight.defined())
    for (int64_t c = 0; c < C; ++c) y[c] *= weight.value().data()[c];
  if (layer && norm.ln.bias.defined())
    for (int64_t c = 0; c < C; ++c) y[c] += norm.ln.bias.value().data()[c];
}

template <typename T>
void rms_norm_row(const RMSNorm<T>& norm, T* x, int64_t C) {
  normalize_row(x, x, C, norm.eps, /*centre=*/false);
  if (norm.weight.defined())
    for (int64_t c = 0; c < C; ++c) x[c] *= norm.weight.value().data()[c];
}

}  // namespace detail

template <typename T>
class StepDecoder {
 public:
  // Whether the model's layers all run in this process (no expert parallelism).
  static bool supports(const GPT<T>& model) {
    for (const Block<T>& b : model.blocks)
      if (b.is_moe && b.moe.expert_parallel) return false;
    return true;
  }

  // The buffers are sized for `model`, which must outlive the decoder; `threads` share each
  // token (OpenMP's count by default).
  explicit StepDecoder(const GPT<T>& model, int threads = detail::max_threads())
      : model_(model), threads_(std::max(threads, 1)) {
    const GPTConfig& c = model.config;
    check<ValueError>(supports(model),
                      "StepDecoder: a layer's experts are split over ranks (expert "
                      "parallelism); decode with the whole model in one process");
    const int64_t C = c.d_model;
    const int64_t hidden = 2 * std::max(c.expert_config().hidden, c.dense_config().hidden);
    scratch_.resize(static_cast<size_t>(threads_));
    for (Scratch& s : scratch_) {
      s.x.resize(C);
      s.h.resize(C);
      s.q.resize(C);
      s.attended.resize(C);
      s.out.resize(C);
      s.scores.resize(c.context_length);
      s.hidden.resize(hidden);
      s.probs.resize(std::max<int64_t>(c.n_experts, 1));
      s.order.resize(s.probs.size());
      s.experts.resize(std::max<int64_t>(c.top_k, 1));
      s.weights.resize(s.experts.size());
    }
    stride_ = (C + 15) / 16 * 16;  // a thread's partial sums start on their own cache line
    for (std::vector<T>& p : partials_) p.resize(static_cast<size_t>(threads_ * stride_));
    logits_.resize(c.vocab_size);
    if (c.positions == PositionEncoding::RoPE)
      detail::rope_tables(0, c.context_length, c.head_dim(), c.rope_base, +1, rope_cos_, rope_sin_);
  }

  // Runs token `id` at the next position of the sequence whose caches (one per block, batch 1,
  // as make_caches(1) makes them) are given, appending its keys and values; returns the logits
  // of the next token [V], valid until the next call.
  const T* operator()(int32_t id, std::vector<KVCache<T>>& caches) {
    const GPTConfig& c = model_.config;
    check<ValueError>(static_cast<int64_t>(caches.size()) == c.n_layers,
                      "StepDecoder: {} KV caches for {} layers", caches.size(), c.n_layers);
    check<IndexError>(id >= 0 && id < c.vocab_size,
                      "StepDecoder: token {} outside the vocabulary [0, {})", id, c.vocab_size);
    const int64_t position = caches.front().length;
    check<ValueError>(position < c.context_length,
                      "StepDecoder: the sequence already fills the context of {} positions",
                      c.context_length);
    for (const KVCache<T>& cache : caches)
      check<ValueError>(cache.keys.size(0) == 1 && cache.length == position &&
                            cache.capacity() >= c.context_length &&
                            cache.keys.size(2) == c.kv_heads() &&
                            cache.keys.size(3) == c.head_dim(),
                        "StepDecoder: the caches must be one sequence's (batch 1, all at the "
                        "same length, room for the context, the model's heads)");
    if (threads_ == 1) {
      run({0, 1}, id, position, caches);
    } else {
      // The team may be smaller than asked for (nested in another region, a thread limit):
      // the slices follow its size.
#pragma omp parallel num_threads(threads_)
      run(this_part(), id, position, caches);
    }
    for (KVCache<T>& cache : caches) cache.length = position + 1;
    return logits_.data();
  }

 private:
  // One thread's buffers.
  struct Scratch {
    std::vector<T> x;         // the residual stream [C], a copy per thread
    std::vector<T> h;         // its normalised copy, the input of a sublayer [C]
    std::vector<T> q;         // the queries of the thread's heads [H * D]
    std::vector<T> attended;  // those heads' outputs, before o_proj [C]
    std::vector<T> out;       // an expert's partial output [C]
    std::vector<T> scores;    // one head's attention probabilities [context]
    std::vector<T> hidden;    // the thread's hidden units of an expert, and of its gate [2 h]
    std::vector<T> probs;     // the router's probabilities [E]
    std::vector<int32_t> order, experts;
    std::vector<T> weights;  // the combine weights of the chosen experts [K]
  };

  // Which thread of how many: the slice of every layer that a thread computes.
  struct Part {
    int index = 0, count = 1;
  };

  static Part this_part() {
#ifdef _OPENMP
    return {omp_get_thread_num(), omp_get_num_threads()};
#else
    return {};
#endif
  }

  // The token as thread `part` computes it; every thread of the team calls it.
  void run(Part part, int32_t id, int64_t position, std::vector<KVCache<T>>& caches) {
    Scratch& s = scratch_[static_cast<size_t>(part.index)];
    const int64_t C = model_.config.d_model;
    embed(s, id, position);
    for (size_t l = 0; l < model_.blocks.size(); ++l) {
      const Block<T>& b = model_.blocks[l];
      detail::norm_row(b.ln1, s.x.data(), s.h.data(), C);
      attention(part, s, b.attn, caches[l], position, partial(0, part.index));
      add_partials(part, s, 0);
      detail::norm_row(b.ln2, s.x.data(), s.h.data(), C);
      T* y = partial(1, part.index);
      std::fill(y, y + C, T(0));
      if (b.is_moe) {
        mixture(part, s, b.moe, y);
      } else {
        expert(part, s, b.mlp, T(1), y);
      }
      add_partials(part, s, 1);
    }
    head(part, s);
  }

  T* partial(int which, int part) { return partials_[which].data() + part * stride_; }

  // After the barrier that completes every thread's partial sums: x += their sum.
  void add_partials(Part part, Scratch& s, int which) {
#pragma omp barrier
    const int64_t C = model_.config.d_model;
    for (int t = 0; t < part.count; ++t) {
      const T* p = partial(which, t);
      for (int64_t i = 0; i < C; ++i) s.x[i] += p[i];
    }
  }

  void embed(Scratch& s, int32_t id, int64_t position) {
    const int64_t C = model_.config.d_model;
    const T* token = model_.wte.weight.value().data() + int64_t(id) * C;
    std::copy_n(token, C, s.x.data());
    if (model_.config.positions == PositionEncoding::Learned) {
      const T* pos = model_.wpe.weight.value().data() + position * C;
      for (int64_t i = 0; i < C; ++i) s.x[i] += pos[i];
    }
  }

  // y = this thread's partial sum of attn(h): its key/value heads, their query heads, and
  // o_proj's columns for them; their keys and values go into the cache row `position`.
  void attention(Part part, Scratch& s, const Attention<T>& a, KVCache<T>& cache, int64_t position,
                 T* y) {
    const AttentionConfig& ac = a.config;
    const int64_t C = ac.d_model, H = ac.n_heads, Hkv = ac.kv_heads(), D = ac.head_dim();
    const int64_t half = D / 2, kv = Hkv * D, group = H / Hkv;
    const auto [g0, g1] = detail::part_range(Hkv, part.index, part.count);
    const int64_t q0 = g0 * group * D, q1 = g1 * group * D;  // the thread's query features
    T* keys = cache.keys.data();                             // [capacity, Hkv, D], batch 1
    T* values = cache.values.data();
    detail::linear_rows(a.q_proj, s.h.data(), q0, q1, s.q.data() + q0);
    detail::linear_rows(a.k_proj, s.h.data(), g0 * D, g1 * D, keys + position * kv + g0 * D);
    detail::linear_rows(a.v_proj, s.h.data(), g0 * D, g1 * D, values + position * kv + g0 * D);
    const T* cos = rope_cos_.data() + position * half;
    const T* sin = rope_sin_.data() + position * half;
    for (int64_t g = g0; g < g1; ++g) {
      T* k = keys + position * kv + g * D;
      if (ac.qk_norm) detail::rms_norm_row(a.k_norm, k, D);
      if (ac.rope) detail::rotate_half_pairs(k, k, half, cos, sin);
    }

    // Each query sees every cached position, its own included.
    const int64_t n = position + 1;
    const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
    using Rows = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                            0, Eigen::OuterStride<>>;
    for (int64_t head = g0 * group; head < g1 * group; ++head) {
      T* q = s.q.data() + head * D;
      if (ac.qk_norm) detail::rms_norm_row(a.q_norm, q, D);
      if (ac.rope) detail::rotate_half_pairs(q, q, half, cos, sin);
      const int64_t offset = (head / group) * D;
      const T* qp = q;
      gemm_kernel<T>().dot(D, &qp, 1, keys + offset, kv, n, s.scores.data(), n);
      detail::attention_softmax(s.scores.data(), n, scale, static_cast<T>(ac.softcap));
      const Rows v(values + offset, n, D, Eigen::OuterStride<>(kv));
      Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(s.attended.data() + head * D, D).noalias() =
          v.transpose() * Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(s.scores.data(), n);
    }
    detail::linear_block(a.o_proj, s.attended.data() + q0, 0, C, q0, q1, y);
    if (part.index == 0 && a.o_proj.bias.defined())
      for (int64_t i = 0; i < C; ++i) y[i] += a.o_proj.bias.value().data()[i];
  }

  // y += this thread's partial sum of the MoE layer of h: its top-k experts weighted, then its
  // shared experts. Every thread routes the token itself, to the same choice.
  void mixture(Part part, Scratch& s, const MoELayer<Expert<T>>& moe, T* y) {
    const int64_t E = moe.router.config.n_experts, K = moe.router.config.top_k;
    detail::linear_rows(moe.router.gate, s.h.data(), 0, E, s.probs.data());
    const T max = *std::max_element(s.probs.begin(), s.probs.begin() + E);
    T total = 0;
    for (int64_t e = 0; e < E; ++e) total += s.probs[e] = std::exp(s.probs[e] - max);
    for (int64_t e = 0; e < E; ++e) s.probs[e] /= total;
    moe.router.route_row(s.probs.data(), s.order.data(), s.experts.data(), s.weights.data());
    for (int64_t k = 0; k < K; ++k)
      expert(part, s, moe.experts[static_cast<size_t>(s.experts[k])], s.weights[k], y);
    for (const Expert<T>& shared : moe.shared_experts) expert(part, s, shared, T(1), y);
  }

  // y += weight * this thread's partial sum of e(h): its slice of the hidden units.
  void expert(Part part, Scratch& s, const Expert<T>& e, T weight, T* y) {
    const ExpertConfig& ec = e.config;
    const int64_t C = ec.d_model;
    const auto [h0, h1] = detail::part_range(ec.hidden, part.index, part.count, 16);
    T* up = s.hidden.data();
    detail::linear_rows(e.up, s.h.data(), h0, h1, up);
    if (ec.glu) {
      T* gate = s.hidden.data() + (h1 - h0);
      detail::linear_rows(e.gate, s.h.data(), h0, h1, gate);
      glu_forward(ec.activation, gate, up, up, h1 - h0);
    } else {
      activation_forward(ec.activation, up, up, h1 - h0);
    }
    detail::linear_block(e.down, up, 0, C, h0, h1, s.out.data());
    if (part.index == 0 && e.down.bias.defined())
      for (int64_t i = 0; i < C; ++i) s.out[i] += e.down.bias.value().data()[i];
    for (int64_t i = 0; i < C; ++i) y[i] += weight * s.out[i];
  }

  // The thread's rows of the logits.
  void head(Part part, Scratch& s) {
    const GPTConfig& c = model_.config;
    detail::norm_row(model_.ln_f, s.x.data(), s.h.data(), c.d_model);
    const auto [v0, v1] = detail::part_range(c.vocab_size, part.index, part.count, 16);
    if (model_.quantized_head.int8)
      detail::linear_rows(model_.quantized_head, s.h.data(), v0, v1, logits_.data() + v0);
    else if (c.tie_embeddings)
      detail::weight_block(model_.wte.weight.value().data(), c.d_model, s.h.data(), v0, v1, 0,
                           c.d_model, logits_.data() + v0);
    else
      detail::linear_rows(model_.lm_head, s.h.data(), v0, v1, logits_.data() + v0);
  }

  const GPT<T>& model_;
  int threads_;  // asked to share a token
  std::vector<Scratch> scratch_;
  std::vector<T> partials_[2];  // [threads, stride]: attention's, then the FFN's partial sums
  int64_t stride_ = 0;
  std::vector<T> logits_;               // [V]
  std::vector<T> rope_cos_, rope_sin_;  // [context, D / 2]
};

}  // namespace minimoe
