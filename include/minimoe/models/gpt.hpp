// minimoe/models/gpt.hpp: a GPT whose feed-forward layers are Mixtures of Experts.
//
//   GPT<float> model(preset("tiny"), /*seed=*/42);
//   Var<float> logits = model(ids);                 // ids [B, T] -> [B, T, V]
//   GPTLoss<float> l = model.loss(ids, targets);    // cross-entropy + router losses
//   l.total.backward();
//
// Pre-norm blocks, as in GPT-2 and every model since:
//   x = x + attn(ln1(x));  x = x + ffn(ln2(x))     ffn = MoE layer, or a dense MLP
// The loss is  cross_entropy + aux_loss_weight * sum_l aux_l + z_loss_weight * sum_l z_l
// over the MoE layers l (docs/routing.md).
#pragma once

#include <string>
#include <vector>

#include "minimoe/models/config.hpp"
#include "minimoe/nn/dropout.hpp"
#include "minimoe/nn/embedding.hpp"
#include "minimoe/nn/moe_layer.hpp"
#include "minimoe/ops/linear_cross_entropy.hpp"
#include "minimoe/ops/loss.hpp"

namespace minimoe {

template <typename T>
struct Block {
  using Scalar = T;

  bool is_moe = false;
  Norm<T> ln1, ln2;
  Attention<T> attn;
  MoELayer<Expert<T>> moe;  // when is_moe
  Expert<T> mlp;            // otherwise
  Dropout<T> attn_dropout, ffn_dropout;

  Block() = default;
  Block(const GPTConfig& c, int64_t layer, Rng& rng, uint64_t seed)
      : is_moe(c.is_moe_block(layer)) {
    // GPT-2: projections into the residual stream get std 0.02 / sqrt(2 * n_layers).
    const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
    ln1 = Norm<T>(c.norm, c.d_model, c.bias, c.norm_eps);
    attn = Attention<T>(c.attention_config(), rng, residual_std);
    ln2 = Norm<T>(c.norm, c.d_model, c.bias, c.norm_eps);
    if (is_moe)
      moe = MoELayer<Expert<T>>(c.router_config(), c.expert_config(), rng, c.n_shared_experts,
                                residual_std, seed + 1);
    else
      mlp = Expert<T>(c.dense_config(), rng, residual_std);
    attn_dropout = Dropout<T>(c.dropout, seed + 2);
    ffn_dropout = Dropout<T>(c.dropout, seed + 3);
  }

  // cache: none, a KVCache<T>*, or PackedCaches<T> (see Attention).
  template <typename... Cache>
  Var<T> operator()(Var<T> x, const Cache&... cache) {
    {
      ProfileRegion region("attention");
      x = x + attn_dropout(attn(ln1(x), cache...));
    }
    ProfileRegion region(is_moe ? "experts" : "mlp");
    return x + ffn_dropout(is_moe ? moe(ln2(x)) : mlp(ln2(x)));
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("ln1", ln1);
    v.child("attn", attn);
    v.child("ln2", ln2);
    if (is_moe)
      v.child("moe", moe);
    else
      v.child("mlp", mlp);
    v.child("attn_dropout", attn_dropout);
    v.child("ffn_dropout", ffn_dropout);
  }
};

template <typename T>
struct GPTLoss {
  Var<T> total;          // what to backpropagate
  Var<T> cross_entropy;  // the language-modelling loss alone
  Var<T> aux_loss;       // sum over MoE layers (unweighted); 0 for a dense model
  Var<T> z_loss;         // likewise
};

template <typename T>
struct GPT {
  using Scalar = T;

  GPTConfig config;
  Embedding<T> wte;  // [V, C]
  Embedding<T> wpe;  // [context, C], learned positions only
  Dropout<T> embedding_dropout;
  std::vector<Block<T>> blocks;
  Norm<T> ln_f;
  Linear<T> lm_head;         // [V, C], untied embeddings only
  Linear<T> quantized_head;  // inference: the head with int8 weights (models/quantize.hpp)

  GPT() = default;
  GPT(const GPTConfig& config_, uint64_t seed) : config(config_) {
    config.validate();
    Rng rng(seed);
    wte = Embedding<T>(config.vocab_size, config.d_model, rng);
    if (config.positions == PositionEncoding::Learned)
      wpe = Embedding<T>(config.context_length, config.d_model, rng);
    embedding_dropout = Dropout<T>(config.dropout, seed + 1);
    for (int64_t layer = 0; layer < config.n_layers; ++layer)
      blocks.emplace_back(config, layer, rng, seed + 10 * static_cast<uint64_t>(layer + 1));
    ln_f = Norm<T>(config.norm, config.d_model, config.bias, config.norm_eps);
    if (!config.tie_embeddings) lm_head = Linear<T>(config.d_model, config.vocab_size, false, rng);
  }

  // ids [B, T] -> logits [B, T, V]. With caches (one per block), ids are the new positions.
  Var<T> operator()(const Tensor<int32_t>& ids, std::vector<KVCache<T>>* caches = nullptr) {
    return head(hidden(ids, caches));
  }

  // The residual stream after the last block, before the final norm: [B, T, C].
  Var<T> hidden(const Tensor<int32_t>& ids, std::vector<KVCache<T>>* caches = nullptr) {
    check<ShapeError>(ids.dim() == 2, "GPT: ids must be [B, T], got {}", ids.shape());
    const int64_t T_ = ids.size(1);
    const int64_t offset = caches && !caches->empty() ? caches->front().length : 0;
    check<ValueError>(offset + T_ <= config.context_length,
                      "GPT: {} positions exceed the context length {}", offset + T_,
                      config.context_length);
    check<ValueError>(!caches || static_cast<int64_t>(caches->size()) == config.n_layers,
                      "GPT: {} KV caches for {} layers", caches ? caches->size() : 0,
                      config.n_layers);
    Tensor<int32_t> positions({T_});
    for (int64_t t = 0; t < T_; ++t) positions.data()[t] = static_cast<int32_t>(offset + t);
    Var<T> x = embed(ids, positions);
    for (size_t l = 0; l < blocks.size(); ++l) x = blocks[l](x, caches ? &(*caches)[l] : nullptr);
    return x;
  }

  // Several sequences in one forward (inference): ids [1, N] are the next lengths[s] positions
  // of sequence s, one run after another, and caches[s] are that sequence's caches (as
  // make_caches(1) makes them). The projections, experts and LM head run on all N rows at once,
  // so each step reads the weights once for the whole batch; attention runs per sequence
  // against its own cache. Returns the residual stream [1, N, C].
  Var<T> hidden_packed(const Tensor<int32_t>& ids, const std::vector<int64_t>& lengths,
                       const std::vector<std::vector<KVCache<T>>*>& caches) {
    check<ShapeError>(ids.dim() == 2 && ids.size(0) == 1, "GPT: packed ids must be [1, N], got {}",
                      ids.shape());
    check<ValueError>(lengths.size() == caches.size() && !lengths.empty(),
                      "GPT: {} packed run lengths for {} sequences' caches", lengths.size(),
                      caches.size());
    Tensor<int32_t> positions({ids.size(1)});
    PackedCaches<T> packed;
    packed.lengths = lengths;
    int64_t row = 0;
    for (size_t s = 0; s < lengths.size(); ++s) {
      check<ValueError>(static_cast<int64_t>(caches[s]->size()) == config.n_layers,
                        "GPT: sequence {} has {} KV caches for {} layers", s, caches[s]->size(),
                        config.n_layers);
      const int64_t offset = caches[s]->front().length;
      check<ValueError>(lengths[s] > 0 && offset + lengths[s] <= config.context_length,
                        "GPT: sequence {}: {} positions after {} cached exceed the context "
                        "length {} or are none",
                        s, lengths[s], offset, config.context_length);
      check<ShapeError>(row + lengths[s] <= ids.size(1),
                        "GPT: packed runs of more positions than the {} ids", ids.size(1));
      for (int64_t t = 0; t < lengths[s]; ++t)
        positions.data()[row++] = static_cast<int32_t>(offset + t);
    }
    check<ShapeError>(row == ids.size(1), "GPT: packed runs of {} positions for {} ids", row,
                      ids.size(1));
    Var<T> x = embed(ids, positions);
    for (size_t l = 0; l < blocks.size(); ++l) {
      packed.caches.clear();
      for (std::vector<KVCache<T>>* sequence : caches) packed.caches.push_back(&(*sequence)[l]);
      x = blocks[l](x, packed);
    }
    return x;
  }

  // Residual stream [..., C] -> logits [..., V]. Decoding applies it to the last position only:
  // for a long prompt the LM head over every position would cost more than the whole model.
  Var<T> head(const Var<T>& x) {
    ProfileRegion region("lm_head");
    const Var<T> y = ln_f(x);
    if (quantized_head.int8) return quantized_head(y);
    return config.tie_embeddings ? matmul(y, wte.weight, false, true) : lm_head(y);
  }

  // The mean cross-entropy of the head over residual stream x [B, T, C]: the head and the
  // loss fused (ops/linear_cross_entropy.hpp), so that the [B, T, V] logits never exist.
  Var<T> head_loss(const Var<T>& x, const Tensor<int32_t>& targets, int32_t ignore_index) {
    ProfileRegion region("lm_head");
    if (quantized_head.int8) return cross_entropy(head(x), targets, ignore_index);
    return linear_cross_entropy(ln_f(x), config.tie_embeddings ? wte.weight : lm_head.weight,
                                targets, ignore_index);
  }

  GPTLoss<T> loss(const Tensor<int32_t>& ids, const Tensor<int32_t>& targets,
                  int32_t ignore_index = -100) {
    GPTLoss<T> l;
    const Var<T> x = hidden(ids);
    l.cross_entropy = head_loss(x, targets, ignore_index);
    l.total = l.cross_entropy;
    for (Block<T>& b : blocks) {
      if (!b.is_moe) continue;
      const Routing<T>& r = b.moe.last;
      l.aux_loss = l.aux_loss.defined() ? l.aux_loss + r.aux_loss() : r.aux_loss();
      l.z_loss = l.z_loss.defined() ? l.z_loss + r.z_loss() : r.z_loss();
    }
    if (l.aux_loss.defined()) {
      if (config.aux_loss_weight > 0) l.total = l.total + l.aux_loss * config.aux_loss_weight;
      if (config.z_loss_weight > 0) l.total = l.total + l.z_loss * config.z_loss_weight;
    } else {
      l.aux_loss = l.z_loss = Var<T>(Tensor<T>::scalar(T(0)));
    }
    return l;
  }

  // Token embeddings plus learned positions: ids [B, T], positions [T] (absolute).
  Var<T> embed(const Tensor<int32_t>& ids, const Tensor<int32_t>& positions) {
    ProfileRegion region("embedding");
    Var<T> x = wte(ids);                                                        // [B, T, C]
    if (config.positions == PositionEncoding::Learned) x = x + wpe(positions);  // over B
    return embedding_dropout(x);
  }

  // Fresh KV caches for decoding `batch` sequences of up to context_length positions.
  std::vector<KVCache<T>> make_caches(int64_t batch) const {
    std::vector<KVCache<T>> caches;  // one allocation each: copies would share storage
    for (int64_t l = 0; l < config.n_layers; ++l)
      caches.emplace_back(batch, config.context_length, config.kv_heads(), config.head_dim());
    return caches;
  }

  // Parameters touching one token, from the module tree: all of them minus the experts a
  // token does not visit.
  int64_t num_active_parameters() {
    int64_t n = num_parameters(*this);
    for (Block<T>& b : blocks)
      if (b.is_moe) {
        const int64_t unvisited = b.moe.router.config.n_experts - b.moe.router.config.top_k;
        n -= unvisited * num_parameters(b.moe.experts.front());
      }
    return n;
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("wte", wte);
    if (config.positions == PositionEncoding::Learned) v.child("wpe", wpe);
    v.child("embedding_dropout", embedding_dropout);
    for (size_t l = 0; l < blocks.size(); ++l) v.child("blocks." + std::to_string(l), blocks[l]);
    v.child("ln_f", ln_f);
    if (!config.tie_embeddings) v.child("lm_head", lm_head);
  }
};

}  // namespace minimoe
