// Composes a custom MoE transformer from minimoe's layer templates (RMSNorm, RoPE attention,
// an MoE layer of SwiGLU experts plus one shared expert) and trains it a few steps on a toy
// sequence task: continue an arithmetic progression modulo the vocabulary.
#include <cstdio>

#include <minimoe/minimoe.hpp>

using namespace minimoe;

struct MoEBlock {
  using Scalar = float;
  RMSNorm<float> ln1, ln2;
  Attention<float> attn;
  MoELayer<Expert<float>> moe;

  Var<float> operator()(Var<float> x) {
    x = x + attn(ln1(x));
    return x + moe(ln2(x));
  }
  void visit(const ModuleVisitor<float>& v) {
    v.child("ln1", ln1);
    v.child("attn", attn);
    v.child("ln2", ln2);
    v.child("moe", moe);
  }
};

struct TinyLM {
  using Scalar = float;
  Embedding<float> embed;
  std::vector<MoEBlock> blocks;
  RMSNorm<float> ln_f;
  Linear<float> head;

  Var<float> operator()(const Tensor<int32_t>& ids) {
    Var<float> x = embed(ids);
    for (MoEBlock& b : blocks) x = b(x);
    return head(ln_f(x));
  }
  void visit(const ModuleVisitor<float>& v) {
    v.child("embed", embed);
    for (size_t i = 0; i < blocks.size(); ++i) v.child("blocks." + std::to_string(i), blocks[i]);
    v.child("ln_f", ln_f);
    v.child("head", head);
  }
};

int main() {
  const int64_t V = 32, C = 64, B = 16, T = 16;
  Rng rng(1);

  AttentionConfig attention;
  attention.d_model = C;
  attention.n_heads = 4;
  attention.n_kv_heads = 2;
  attention.rope = true;
  attention.bias = false;
  RouterConfig router;
  router.d_model = C;
  router.n_experts = 4;
  router.top_k = 2;
  ExpertConfig swiglu;
  swiglu.d_model = C;
  swiglu.hidden = 96;
  swiglu.activation = Activation::SiLU;
  swiglu.glu = true;
  swiglu.bias = false;

  TinyLM model{Embedding<float>(V, C, rng), {}, RMSNorm<float>(C), Linear<float>(C, V, false, rng)};
  for (int i = 0; i < 2; ++i)
    model.blocks.push_back({RMSNorm<float>(C), RMSNorm<float>(C), Attention<float>(attention, rng),
                            MoELayer<Expert<float>>(router, swiglu, rng, /*n_shared=*/1)});
  std::printf("parameters: %lld\n", static_cast<long long>(num_parameters(model)));

  AdamW<float> optimizer(named_parameters(model), AdamWConfig{});
  for (int step = 0; step <= 60; ++step) {
    Tensor<int32_t> ids({B, T}), targets({B, T});
    for (int64_t b = 0; b < B; ++b) {
      const auto start = static_cast<int32_t>(rng.below(V)),
                 stride = static_cast<int32_t>(1 + rng.below(3));
      for (int64_t t = 0; t < T; ++t) {
        ids.at({b, t}) = static_cast<int32_t>((start + stride * t) % V);
        targets.at({b, t}) = static_cast<int32_t>((start + stride * (t + 1)) % V);
      }
    }
    Var<float> loss = cross_entropy(model(ids), targets);
    Var<float> aux = model.blocks[0].moe.last.aux_loss() + model.blocks[1].moe.last.aux_loss();
    (loss + 0.01f * aux).backward();
    optimizer.step(3e-3);
    optimizer.zero_grad();
    if (step % 10 == 0) {
      std::printf("step %2d  loss %.4f  aux %.4f  block 0 expert load:", step, double(loss.item()),
                  double(aux.item()));
      const RoutingPlan& plan = model.blocks[0].moe.last.plan;
      for (int64_t e = 0; e < plan.experts; ++e)
        std::printf(" %lld", static_cast<long long>(plan.load(e)));
      std::printf("\n");
    }
  }
  return 0;
}
