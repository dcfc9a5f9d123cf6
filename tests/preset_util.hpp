// tests/preset_util.hpp: presets at a size that keeps the tests fast.
#pragma once

#include <string>

#include <minimoe/models/presets.hpp>

namespace minimoe::test {

// A preset's architecture (GQA, RoPE, QK-norm, GLU and shared experts, dense blocks, tied or
// untied head) with 2 layers, a small vocabulary and a short context.
inline GPTConfig shrunk_preset(const std::string& name, int64_t vocab_size = 512,
                               int64_t context_length = 40) {
  GPTConfig c = preset(name);
  c.vocab_size = vocab_size;
  c.n_layers = 2;
  c.context_length = context_length;
  c.validate();
  return c;
}

}  // namespace minimoe::test
