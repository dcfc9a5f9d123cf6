// minimoe/models/quantize.hpp: int8 weight-only quantisation of a GPT for inference.
//
//   GPT<float> model = load_model<float>("model.safetensors");
//   Int8Report r = quantize_int8(model);   // r.matrices, r.int8_bytes, r.float_bytes
//   NoGradGuard no_grad;
//   Generation g = generate(model, prompt, options);
//
// Each weight matrix W [out, in] of the attention projections (q, k, v, o), of every expert
// (routed and shared) and dense MLP, and of the LM head (the tied embedding matrix or the
// untied lm_head) gets an int8 copy with one scale per output row (nn/linear.hpp); the
// products then read the int8 rows (kernels/int8_gemm.hpp), so a decoded token streams a
// quarter of the bytes. Activations stay float32 and so do the rest of the weights:
// - the embedding lookups read one row of C floats per token, not worth a rounding error at
//   the input of the network;
// - the router ([E, C]) is small, and its top-k choice flips on small changes of its logits;
// - norms and biases are vectors.
//
// The float weights stay as they are (they are still the parameters: saving, visiting and
// counting see only them), so quantising is done at load time and nothing new is saved. A
// quantised model is for inference: its forward under enabled gradients throws a ValueError.
// Quantising a matrix that already has its int8 copy leaves it alone, so a second call
// changes nothing and reports zero matrices.
#pragma once

#include <cstdint>
#include <memory>

#include "minimoe/models/gpt.hpp"

namespace minimoe {

// What a quantize_int8 call converted.
struct Int8Report {
  int64_t matrices = 0;     // weight matrices given an int8 copy
  int64_t int8_bytes = 0;   // their int8 rows and scales
  int64_t float_bytes = 0;  // the same matrices in float32
};

inline void quantize_int8(Linear<float>& linear, Int8Report& report) {
  if (linear.int8) return;
  linear.int8 = std::make_shared<const Int8Weight>(Int8Weight::quantize(linear.weight.value()));
  report.matrices += 1;
  report.int8_bytes += linear.int8->bytes();
  report.float_bytes += linear.weight.numel() * int64_t(sizeof(float));
}

inline void quantize_int8(Expert<float>& expert, Int8Report& report) {
  quantize_int8(expert.up, report);
  if (expert.config.glu) quantize_int8(expert.gate, report);
  quantize_int8(expert.down, report);
}

inline void quantize_int8(Attention<float>& attention, Int8Report& report) {
  for (Linear<float>* projection :
       {&attention.q_proj, &attention.k_proj, &attention.v_proj, &attention.o_proj})
    quantize_int8(*projection, report);
}

// The router stays float (see the header).
inline void quantize_int8(MoELayer<Expert<float>>& moe, Int8Report& report) {
  for (Expert<float>& e : moe.experts) quantize_int8(e, report);
  for (Expert<float>& e : moe.shared_experts) quantize_int8(e, report);
}

inline Int8Report quantize_int8(GPT<float>& model) {
  Int8Report report;
  for (Block<float>& block : model.blocks) {
    quantize_int8(block.attn, report);
    if (block.is_moe)
      quantize_int8(block.moe, report);
    else
      quantize_int8(block.mlp, report);
  }
  // The head: a Linear over the tied embedding matrix or the untied lm_head's weight, sharing
  // that Var (no float copy).
  Linear<float>& head = model.quantized_head;
  if (!head.weight.defined())
    head.weight = model.config.tie_embeddings ? model.wte.weight : model.lm_head.weight;
  quantize_int8(head, report);
  return report;
}

}  // namespace minimoe
