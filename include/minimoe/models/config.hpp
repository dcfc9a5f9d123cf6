// minimoe/models/config.hpp: GPTConfig, the one description of a model's architecture.
//
// Every model option of the small MoE projects minimoe covers (GPT-2 style MiniMoE and
// nanoMoE, the LLaMA-style Tiny MoE, TinyGPT's flags) is a field here, with its default.
// The config travels with the weights (as JSON in the safetensors metadata), so a checkpoint
// describes itself:
//
//   GPTConfig c = preset("tiny");
//   c.n_experts = 8;
//   c.validate();                          // throws ValueError naming the bad field
//   nlohmann::json j = c;                  // {"vocab_size": 256, ...}
//   GPTConfig back = j.get<GPTConfig>();   // unknown keys and wrong types are errors
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "minimoe/nn/attention.hpp"
#include "minimoe/nn/expert.hpp"
#include "minimoe/nn/norm.hpp"
#include "minimoe/nn/router.hpp"

namespace minimoe {

enum class PositionEncoding { Learned, RoPE };

struct GPTConfig {
  // Sizes
  int64_t vocab_size = 256;
  int64_t context_length = 256;
  int64_t n_layers = 4;
  int64_t d_model = 128;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 0;  // 0 = n_heads; fewer = grouped-query attention

  // Architecture options
  PositionEncoding positions = PositionEncoding::Learned;
  double rope_base = 10000.0;
  NormKind norm = NormKind::LayerNorm;
  double norm_eps = 1e-5;
  bool bias = true;  // biases in linear layers and LayerNorms
  bool qk_norm = false;
  double attn_softcap = 0.0;   // 0 = off
  bool tie_embeddings = true;  // LM head shares the token embedding
  double dropout = 0.0;

  // Feed-forward: each expert, and the dense MLP of dense blocks
  int64_t ffn_hidden = 512;
  Activation activation = Activation::GELU;
  bool glu = false;
  int64_t dense_hidden = 0;  // hidden size of dense blocks' MLP; 0 = ffn_hidden

  // Mixture of experts
  int64_t n_experts = 4;  // 0 = a dense model
  int64_t top_k = 2;
  int64_t moe_every = 1;  // block i is MoE when (i + 1) % moe_every == 0
  int64_t n_shared_experts = 0;
  bool router_bias = false;
  bool normalize_topk = true;
  double router_jitter = 0.0;
  double capacity_factor = 0.0;  // 0 = dropless
  bool aux_free_balancing = false;
  double balance_rate = 1e-3;
  double aux_loss_weight = 0.01;
  double z_loss_weight = 0.0;

  bool is_moe_block(int64_t layer) const { return n_experts > 0 && (layer + 1) % moe_every == 0; }
  int64_t head_dim() const { return d_model / n_heads; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }

  // Far beyond any model a CPU trains: a config past these is refused before anything is
  // allocated for it, and its parameter count cannot overflow.
  static constexpr int64_t kMaxSize = int64_t{1} << 30;  // any one size
  static constexpr int64_t kMaxParameters = int64_t{1} << 36;

  void validate() const {
    auto positive = [](int64_t v, const char* name) {
      check<ValueError>(v > 0, "config: {} must be positive, got {}", name, v);
    };
    auto at_most_max = [](int64_t v, const char* name) {
      check<ValueError>(v <= kMaxSize, "config: {} {} exceeds the maximum {}", name, v, kMaxSize);
    };
    positive(vocab_size, "vocab_size");
    positive(context_length, "context_length");
    positive(n_layers, "n_layers");
    positive(d_model, "d_model");
    positive(n_heads, "n_heads");
    positive(ffn_hidden, "ffn_hidden");
    positive(moe_every, "moe_every");
    check<ValueError>(vocab_size <= (int64_t{1} << 31) - 1, "config: vocab_size {} too large",
                      vocab_size);
    at_most_max(context_length, "context_length");
    at_most_max(n_layers, "n_layers");
    at_most_max(d_model, "d_model");
    at_most_max(ffn_hidden, "ffn_hidden");
    at_most_max(dense_hidden, "dense_hidden");
    at_most_max(n_experts, "n_experts");
    at_most_max(n_shared_experts, "n_shared_experts");
    check<ValueError>(d_model % n_heads == 0,
                      "config: d_model ({}) is not divisible by n_heads ({})", d_model, n_heads);
    check<ValueError>(n_kv_heads >= 0 && n_heads % kv_heads() == 0,
                      "config: n_heads ({}) is not divisible by n_kv_heads ({})", n_heads,
                      n_kv_heads);
    check<ValueError>(positions != PositionEncoding::RoPE || head_dim() % 2 == 0,
                      "config: RoPE needs an even head dimension, got {}", head_dim());
    check<ValueError>(rope_base > 1.0, "config: rope_base must be > 1, got {}", rope_base);
    check<ValueError>(norm_eps > 0.0, "config: norm_eps must be positive, got {}", norm_eps);
    check<ValueError>(attn_softcap >= 0.0, "config: attn_softcap must be >= 0, got {}",
                      attn_softcap);
    check<ValueError>(dropout >= 0.0 && dropout < 1.0, "config: dropout must be in [0, 1), got {}",
                      dropout);
    check<ValueError>(dense_hidden >= 0, "config: dense_hidden must be >= 0, got {}", dense_hidden);
    check<ValueError>(n_experts >= 0, "config: n_experts must be >= 0, got {}", n_experts);
    if (n_experts > 0) {
      check<ValueError>(top_k >= 1 && top_k <= n_experts,
                        "config: top_k ({}) must be between 1 and n_experts ({})", top_k,
                        n_experts);
      check<ValueError>(n_shared_experts >= 0, "config: n_shared_experts must be >= 0, got {}",
                        n_shared_experts);
      check<ValueError>(aux_loss_weight >= 0.0 && z_loss_weight >= 0.0,
                        "config: loss weights must be >= 0, got aux {} and z {}", aux_loss_weight,
                        z_loss_weight);
      router_config().validate();
    }
    const double parameters = count<double>(/*active_only=*/false);
    check<ValueError>(parameters <= static_cast<double>(kMaxParameters),
                      "config: {:.3g} parameters exceed the maximum {}", parameters,
                      kMaxParameters);
  }

  AttentionConfig attention_config() const {
    AttentionConfig a;
    a.d_model = d_model;
    a.n_heads = n_heads;
    a.n_kv_heads = n_kv_heads;
    a.bias = bias;
    a.rope = positions == PositionEncoding::RoPE;
    a.rope_base = rope_base;
    a.qk_norm = qk_norm;
    a.softcap = attn_softcap;
    return a;
  }
  ExpertConfig expert_config() const {
    ExpertConfig e;
    e.d_model = d_model;
    e.hidden = ffn_hidden;
    e.activation = activation;
    e.glu = glu;
    e.bias = bias;
    return e;
  }
  ExpertConfig dense_config() const {
    ExpertConfig e = expert_config();
    e.hidden = dense_hidden > 0 ? dense_hidden : ffn_hidden;
    return e;
  }
  RouterConfig router_config() const {
    RouterConfig r;
    r.d_model = d_model;
    r.n_experts = n_experts;
    r.top_k = top_k;
    r.bias = router_bias;
    r.normalize_topk = normalize_topk;
    r.jitter = router_jitter;
    r.capacity_factor = capacity_factor;
    r.aux_free_balancing = aux_free_balancing;
    r.balance_rate = balance_rate;
    return r;
  }

  // ---- parameter counts in closed form (tests check them against the module tree) ----

  int64_t num_parameters() const { return count<int64_t>(/*active_only=*/false); }
  // Parameters that touch one token: unchosen experts excluded.
  int64_t num_active_parameters() const { return count<int64_t>(/*active_only=*/true); }

 private:
  // In N = double, validate() bounds the count before it is computed in int64_t.
  template <typename N>
  N count(bool active_only) const {
    const N C = static_cast<N>(d_model), kv = static_cast<N>(kv_heads() * head_dim());
    const N norm_params = (norm == NormKind::LayerNorm && bias) ? 2 * C : C;
    const N head_norms = qk_norm ? static_cast<N>(2 * head_dim()) : 0;
    const N attention = C * C * 2 + C * kv * 2 + (bias ? 2 * C + 2 * kv : 0) + head_norms;
    N n = static_cast<N>(vocab_size) * C +
          (positions == PositionEncoding::Learned ? static_cast<N>(context_length) * C : 0);
    // Blocks (i + 1) % moe_every == 0 are MoE blocks (is_moe_block).
    const int64_t moe_blocks = n_experts > 0 ? n_layers / moe_every : 0;
    n += static_cast<N>(n_layers) * (2 * norm_params + attention);
    if (moe_blocks > 0) {
      const N experts = static_cast<N>((active_only ? top_k : n_experts) + n_shared_experts);
      const N E = static_cast<N>(n_experts);
      n +=
          static_cast<N>(moe_blocks) * (C * E + (router_bias ? E : 0) +
                                        experts * static_cast<N>(expert_config().num_parameters()));
    }
    if (n_layers > moe_blocks) {
      n += static_cast<N>(n_layers - moe_blocks) * static_cast<N>(dense_config().num_parameters());
    }
    n += norm_params;
    if (!tie_embeddings) n += vocab_size * C;
    return n;
  }
};

// ---- JSON ----

NLOHMANN_JSON_SERIALIZE_ENUM(PositionEncoding, {{PositionEncoding::Learned, "learned"},
                                                {PositionEncoding::RoPE, "rope"}})
NLOHMANN_JSON_SERIALIZE_ENUM(NormKind,
                             {{NormKind::LayerNorm, "layernorm"}, {NormKind::RMSNorm, "rmsnorm"}})

namespace detail {

// Visits every (name, field) of a GPTConfig, once, for both directions of the JSON mapping.
template <typename Config, typename Fn>
void for_each_config_field(Config& c, Fn&& f) {
  f("vocab_size", c.vocab_size);
  f("context_length", c.context_length);
  f("n_layers", c.n_layers);
  f("d_model", c.d_model);
  f("n_heads", c.n_heads);
  f("n_kv_heads", c.n_kv_heads);
  f("positions", c.positions);
  f("rope_base", c.rope_base);
  f("norm", c.norm);
  f("norm_eps", c.norm_eps);
  f("bias", c.bias);
  f("qk_norm", c.qk_norm);
  f("attn_softcap", c.attn_softcap);
  f("tie_embeddings", c.tie_embeddings);
  f("dropout", c.dropout);
  f("ffn_hidden", c.ffn_hidden);
  f("activation", c.activation);
  f("glu", c.glu);
  f("dense_hidden", c.dense_hidden);
  f("n_experts", c.n_experts);
  f("top_k", c.top_k);
  f("moe_every", c.moe_every);
  f("n_shared_experts", c.n_shared_experts);
  f("router_bias", c.router_bias);
  f("normalize_topk", c.normalize_topk);
  f("router_jitter", c.router_jitter);
  f("capacity_factor", c.capacity_factor);
  f("aux_free_balancing", c.aux_free_balancing);
  f("balance_rate", c.balance_rate);
  f("aux_loss_weight", c.aux_loss_weight);
  f("z_loss_weight", c.z_loss_weight);
}

template <typename V>
void read_config_field(const nlohmann::json& j, const char* name, V& field) {
  const nlohmann::json& value = j.at(name);
  if constexpr (std::is_same_v<V, bool>) {
    check<ValueError>(value.is_boolean(), "config: '{}' must be a boolean, got {}", name,
                      value.dump());
    field = value.get<bool>();
  } else if constexpr (std::is_integral_v<V>) {
    check<ValueError>(value.is_number_integer(), "config: '{}' must be an integer, got {}", name,
                      value.dump());
    field = value.get<V>();
  } else if constexpr (std::is_floating_point_v<V>) {
    check<ValueError>(value.is_number(), "config: '{}' must be a number, got {}", name,
                      value.dump());
    field = value.get<V>();
  } else if constexpr (std::is_same_v<V, Activation>) {
    check<ValueError>(value.is_string(), "config: '{}' must be a string, got {}", name,
                      value.dump());
    field = activation_from_string(value.get<std::string>());
  } else {  // enums with string names
    check<ValueError>(value.is_string(), "config: '{}' must be a string, got {}", name,
                      value.dump());
    const V parsed = value.get<V>();
    check<ValueError>(nlohmann::json(parsed) == value, "config: unknown value {} for '{}'",
                      value.dump(), name);
    field = parsed;
  }
}

}  // namespace detail

inline void to_json(nlohmann::json& j, const GPTConfig& c) {
  j = nlohmann::json::object();
  detail::for_each_config_field(c, [&](const char* name, const auto& field) {
    if constexpr (std::is_same_v<std::decay_t<decltype(field)>, Activation>)
      j[name] = to_string(field);
    else
      j[name] = field;
  });
}

// Missing keys keep their defaults (older checkpoints stay loadable); unknown keys and wrong
// types are errors. The result is validated.
inline void from_json(const nlohmann::json& j, GPTConfig& c) {
  check<ValueError>(j.is_object(), "config: expected a JSON object, got {}", j.type_name());
  c = GPTConfig();
  for (const auto& item : j.items()) {
    bool known = false;
    detail::for_each_config_field(
        c, [&](const char* name, const auto&) { known = known || item.key() == name; });
    check<ValueError>(known, "config: unknown key '{}'", item.key());
  }
  detail::for_each_config_field(c, [&](const char* name, auto& field) {
    if (j.contains(name)) detail::read_config_field(j, name, field);
  });
  c.validate();
}

inline GPTConfig config_from_json_string(const std::string& text) {
  nlohmann::json j;
  try {
    // A config is flat; refusing deep nesting as it is parsed bounds the recursion of the
    // dump() that error messages call.
    j = nlohmann::json::parse(text, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
      check<ValueError>(depth <= 16, "config: JSON nested deeper than 16 levels");
      return true;
    });
  } catch (const nlohmann::json::exception& e) {  // a syntax error, or a number out of range
    throw ValueError(fmt::format("config: invalid JSON: {}", e.what()));
  }
  return j.get<GPTConfig>();
}

}  // namespace minimoe
