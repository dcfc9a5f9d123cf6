// minimoe/nn/attention.hpp: causal multi-head self-attention with the options small MoE
// models use: grouped-query attention, RoPE, QK-norm and logit soft-capping.
//
//   AttentionConfig c;  c.d_model = 256; c.n_heads = 8; c.n_kv_heads = 2; c.rope = true;
//   Attention<float> attn(c, rng);
//   Var<float> y = attn(x);                 // [B, T, C] -> [B, T, C]
//   Var<float> y1 = attn(x1, &cache);       // decoding: appends x1's keys/values to the cache
//   Var<float> y2 = attn(x2, packed);       // several sequences' rows, each with its cache
//
// The heads stay in the [B, T, H, D] layout the projections produce; the fused op in
// ops/attention.hpp does the rest. QK-norm (OLMo 2, Gemma 3) applies an RMSNorm over the head
// dimension of q and k before RoPE.
#pragma once

#include <vector>

#include "minimoe/nn/linear.hpp"
#include "minimoe/nn/norm.hpp"
#include "minimoe/ops/attention.hpp"
#include "minimoe/ops/rope.hpp"
#include "minimoe/ops/shape.hpp"

namespace minimoe {

struct AttentionConfig {
  int64_t d_model = 0;
  int64_t n_heads = 1;
  int64_t n_kv_heads = 0;  // 0 = n_heads (plain multi-head attention)
  bool bias = true;        // biases on the q, k, v, o projections
  bool rope = false;       // rotary positions instead of none (learned ones live in GPT)
  double rope_base = 10000.0;
  bool qk_norm = false;
  double softcap = 0.0;  // 0 = off

  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_dim() const { return d_model / n_heads; }

  void validate() const {
    check<ValueError>(d_model > 0 && n_heads > 0,
                      "attention: d_model and n_heads must be positive, got {} and {}", d_model,
                      n_heads);
    check<ValueError>(d_model % n_heads == 0,
                      "attention: d_model {} is not divisible by n_heads {}", d_model, n_heads);
    check<ValueError>(n_kv_heads >= 0 && n_heads % kv_heads() == 0,
                      "attention: n_heads {} is not divisible by n_kv_heads {}", n_heads,
                      kv_heads());
    check<ValueError>(!rope || head_dim() % 2 == 0,
                      "attention: RoPE needs an even head dimension, got {}", head_dim());
    check<ValueError>(!rope || rope_base > 1.0, "attention: rope_base must be > 1, got {}",
                      rope_base);
    check<ValueError>(softcap >= 0.0, "attention: softcap must be >= 0, got {}", softcap);
  }
};

// Keys and values of past positions for one attention layer: [B, capacity, Hkv, D] each,
// allocated once, filled up to `length`.
template <typename T>
struct KVCache {
  Tensor<T> keys;
  Tensor<T> values;
  int64_t length = 0;

  KVCache() = default;
  KVCache(int64_t batch, int64_t capacity, int64_t kv_heads, int64_t head_dim)
      : keys({batch, capacity, kv_heads, head_dim}),
        values({batch, capacity, kv_heads, head_dim}) {}

  int64_t capacity() const { return keys.size(1); }
  void reset() { length = 0; }

  // Writes new [B, Tn, Hkv, D] keys and values at the end; returns views of everything cached.
  std::pair<Tensor<T>, Tensor<T>> append(const Tensor<T>& k, const Tensor<T>& v) {
    const int64_t n = k.size(1);
    check<ValueError>(length + n <= capacity(),
                      "KV cache: {} cached + {} new positions exceed its capacity {}", length, n,
                      capacity());
    keys.slice(1, length, length + n).copy_(k);
    values.slice(1, length, length + n).copy_(v);
    length += n;
    return {keys.slice(1, 0, length), values.slice(1, 0, length)};
  }
};

// The caches of one layer for rows packed from several sequences: run s is the next
// lengths[s] positions of the sequence whose cache is caches[s].
template <typename T>
struct PackedCaches {
  std::vector<int64_t> lengths;
  std::vector<KVCache<T>*> caches;
};

template <typename T>
struct Attention {
  using Scalar = T;

  AttentionConfig config;
  Linear<T> q_proj, k_proj, v_proj, o_proj;
  RMSNorm<T> q_norm, k_norm;  // QK-norm only

  Attention() = default;
  // out_std: init std of o_proj, which writes into the residual stream.
  Attention(const AttentionConfig& config_, Rng& rng, double out_std = 0.02) : config(config_) {
    config.validate();
    const int64_t C = config.d_model, kv = config.kv_heads() * config.head_dim();
    q_proj = Linear<T>(C, C, config.bias, rng);
    k_proj = Linear<T>(C, kv, config.bias, rng);
    v_proj = Linear<T>(C, kv, config.bias, rng);
    o_proj = Linear<T>(C, C, config.bias, rng, out_std);
    if (config.qk_norm) {
      q_norm = RMSNorm<T>(config.head_dim());
      k_norm = RMSNorm<T>(config.head_dim());
    }
  }

  // x [B, T, C]. With a cache, x holds the new positions only and attends to the cached ones.
  Var<T> operator()(const Var<T>& x, KVCache<T>* cache = nullptr) const {
    check_input(x);
    const Projections p = project(x);
    return o_proj(reshape(attend(p.q, p.k, p.v, cache), x.shape()));
  }

  // x [1, N, C]: the new positions of several sequences, one run after another, each attending
  // to its own cache (batched decoding of sequences of different lengths).
  Var<T> operator()(const Var<T>& x, const PackedCaches<T>& packed) const {
    check_input(x);
    check<ShapeError>(x.size(0) == 1, "attention: packed sequences need a batch of 1, got {}",
                      x.size(0));
    check<ValueError>(packed.lengths.size() == packed.caches.size(),
                      "attention: {} run lengths for {} caches", packed.lengths.size(),
                      packed.caches.size());
    int64_t total = 0;
    for (int64_t n : packed.lengths) {
      check<ValueError>(n > 0, "attention: a packed run of {} positions", n);
      total += n;
    }
    check<ShapeError>(total == x.size(1), "attention: packed runs of {} positions in all for {}",
                      total, x.size(1));
    const Projections p = project(x);
    std::vector<Var<T>> runs;
    int64_t start = 0;
    for (size_t s = 0; s < packed.lengths.size(); ++s) {
      const int64_t end = start + packed.lengths[s];
      runs.push_back(attend(slice(p.q, 1, start, end), slice(p.k, 1, start, end),
                            slice(p.v, 1, start, end), packed.caches[s]));
      start = end;
    }
    return o_proj(reshape(runs.size() == 1 ? runs.front() : concat(runs, 1), x.shape()));
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("q_proj", q_proj);
    v.child("k_proj", k_proj);
    v.child("v_proj", v_proj);
    v.child("o_proj", o_proj);
    if (config.qk_norm) {
      v.child("q_norm", q_norm);
      v.child("k_norm", k_norm);
    }
  }

 private:
  struct Projections {
    Var<T> q, k, v;  // [B, T, H, D], [B, T, Hkv, D], [B, T, Hkv, D]
  };

  void check_input(const Var<T>& x) const {
    check<ShapeError>(x.dim() == 3 && x.size(2) == config.d_model,
                      "attention: input of shape {} is not [B, T, {}]", x.shape(), config.d_model);
  }

  Projections project(const Var<T>& x) const {
    const int64_t B = x.size(0), T_ = x.size(1), H = config.n_heads, Hkv = config.kv_heads(),
                  D = config.head_dim();
    Projections p{reshape(q_proj(x), {B, T_, H, D}), reshape(k_proj(x), {B, T_, Hkv, D}),
                  reshape(v_proj(x), {B, T_, Hkv, D})};
    if (config.qk_norm) {
      p.q = q_norm(p.q);
      p.k = k_norm(p.k);
    }
    return p;
  }

  // Positions, the cache, then attention: [B, T, H, D] out.
  Var<T> attend(Var<T> q, Var<T> k, const Var<T>& v, KVCache<T>* cache) const {
    const int64_t offset = cache ? cache->length : 0;
    if (config.rope) {
      q = rope(q, offset, config.rope_base);
      k = rope(k, offset, config.rope_base);
    }
    AttentionOptions options;
    options.softcap = config.softcap;
    if (!cache) return scaled_dot_product_attention(q, k, v, options);
    check<ValueError>(!grad_enabled(),
                      "attention: the KV cache is for inference; run it under NoGradGuard");
    auto [keys, values] = cache->append(k.value(), v.value());
    return scaled_dot_product_attention(q, Var<T>(keys), Var<T>(values), options);
  }
};

}  // namespace minimoe
