// minimoe/models/presets.hpp: named model configurations (docs/models.md lists their sizes).
//
//   minimoe   the PyTorch MiniMoE: GPT-2 vocabulary, 6 x 256, 4 experts top-2, 20.8M / 17.7M
//   tiny      a small MoE that learns readable text in minutes on two CPU cores
//   dense     tiny with one dense MLP of the same active FLOPs (hidden = top_k x expert hidden)
//   tinymoe   LLaMA-style like the JAX Tiny MoE: RMSNorm, RoPE, GQA, QK-norm, SwiGLU, z-loss
#pragma once

#include <string>
#include <vector>

#include "minimoe/models/config.hpp"

namespace minimoe {

inline std::vector<std::string> preset_names() { return {"minimoe", "tiny", "dense", "tinymoe"}; }

inline GPTConfig preset(const std::string& name) {
  GPTConfig c;
  if (name == "minimoe") {
    c.vocab_size = 50257;
    c.context_length = 256;
    c.n_layers = 6;
    c.d_model = 256;
    c.n_heads = 8;
    c.ffn_hidden = 512;
    c.n_experts = 4;
    c.top_k = 2;
  } else if (name == "tiny" || name == "dense") {
    c.vocab_size = 4096;
    c.context_length = 128;
    c.n_layers = 4;
    c.d_model = 128;
    c.n_heads = 4;
    c.ffn_hidden = 256;
    c.n_experts = 4;
    c.top_k = 2;
    if (name == "dense") {
      c.ffn_hidden = c.top_k * c.ffn_hidden;
      c.n_experts = 0;
    }
  } else if (name == "tinymoe") {
    c.vocab_size = 4096;
    c.context_length = 128;
    c.n_layers = 4;
    c.d_model = 128;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.positions = PositionEncoding::RoPE;
    c.norm = NormKind::RMSNorm;
    c.norm_eps = 1e-6;
    c.bias = false;
    c.qk_norm = true;
    c.tie_embeddings = false;
    c.ffn_hidden = 128;
    c.activation = Activation::SiLU;
    c.glu = true;
    c.n_experts = 8;
    c.top_k = 2;
    c.z_loss_weight = 1e-3;
  } else {
    throw ValueError(fmt::format("unknown preset '{}' (expected one of: {})", name,
                                 fmt::join(preset_names(), ", ")));
  }
  c.validate();
  return c;
}

}  // namespace minimoe
