#include <minimoe/nn/attention.hpp>
#include <minimoe/nn/dropout.hpp>
#include <minimoe/nn/embedding.hpp>
#include <minimoe/nn/expert.hpp>
#include <minimoe/nn/linear.hpp>
#include <minimoe/nn/norm.hpp>
#include <minimoe/ops/reduce.hpp>

#include "../test_util.hpp"

using namespace minimoe;

TEST_CASE("Module visitor names, counts and zeroes parameters") {
  Rng rng(0);
  Linear<float> lin(3, 2, true, rng);
  auto named = named_parameters(lin);
  REQUIRE(named.size() == 2);
  CHECK(named[0].first == "weight");
  CHECK(named[0].second.shape() == Shape{2, 3});
  CHECK(named[1].first == "bias");
  CHECK(num_parameters(lin) == 8);
  Linear<float> no_bias(3, 2, false, rng);
  CHECK(num_parameters(no_bias) == 6);
  Var<float> x(Tensor<float>::ones({4, 3}));
  sum(lin(x)).backward();
  CHECK(lin.weight.has_grad());
  zero_grad(lin);
  CHECK_FALSE(lin.weight.has_grad());
  Dropout<float> drop(0.5);
  set_training(drop, false);
  CHECK_FALSE(drop.training);
  CHECK(drop(x).value().to_vector() == x.value().to_vector());
}

TEST_CASE("Linear forward, gradcheck and errors") {
  Rng rng(1);
  Linear<double> lin(3, 2, true, rng);
  lin.weight.value().copy_(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  lin.bias.value().copy_(Tensor<double>({2}, {0.5, -0.5}));
  Var<double> x(Tensor<double>({1, 3}, {1, 0, -1}));
  CHECK(lin(x).value().to_vector() == std::vector<double>{-1.5, -2.5});
  Var<double> x3(Tensor<double>::randn({2, 3, 3}, rng));
  test::check_module_gradients(lin, [&] { return test::probe(lin(x3)); });
  test::check_gradients([&](const std::vector<Var<double>>& in) { return lin(in[0]); },
                        {Tensor<double>::randn({2, 3}, rng)});
  CHECK_THROWS_WITH_AS(lin(Var<double>(Tensor<double>({2, 4}))),
                       "Linear: input of shape [2, 4] for 3 input features", ShapeError);
  CHECK_THROWS_WITH_AS(Linear<float>(0, 2, true, rng),
                       "Linear: features must be positive, got in=0 out=2", ValueError);
}

TEST_CASE("Embedding, LayerNorm, RMSNorm and Norm gradcheck") {
  Rng rng(2);
  Embedding<double> emb(5, 3, rng);
  Tensor<int32_t> ids({2, 2}, {4, 0, 4, 2});
  CHECK(emb(ids).shape() == Shape{2, 2, 3});
  test::check_module_gradients(emb, [&] { return test::probe(emb(ids)); });

  Var<double> x(Tensor<double>::randn({2, 3, 4}, rng));
  for (bool bias : {true, false}) {
    LayerNorm<double> ln(4, bias);
    ln.weight.value() = Tensor<double>::randn({4}, rng);
    test::check_module_gradients(ln, [&] { return test::probe(ln(x)); });
  }
  RMSNorm<double> rms(4);
  rms.weight.value() = Tensor<double>::randn({4}, rng);
  test::check_module_gradients(rms, [&] { return test::probe(rms(x)); });
  Norm<double> n(NormKind::RMSNorm, 4, true, 1e-6);
  CHECK(named_parameters(n).size() == 1);
  CHECK(named_parameters(n)[0].first == "weight");
  Norm<double> ln(NormKind::LayerNorm, 4, true, 1e-5);
  CHECK(named_parameters(ln).size() == 2);
}

TEST_CASE("Expert variants: GELU MLP, SwiGLU, GeGLU, ReLU^2-GLU") {
  Rng rng(3);
  struct Variant {
    Activation activation;
    bool glu;
  };
  for (Variant v : {Variant{Activation::GELU, false}, Variant{Activation::GELUExact, false},
                    Variant{Activation::SiLU, true}, Variant{Activation::GELU, true},
                    Variant{Activation::ReLU2, true}}) {
    for (bool bias : {true, false}) {
      ExpertConfig c;
      c.d_model = 3;
      c.hidden = 5;
      c.activation = v.activation;
      c.glu = v.glu;
      c.bias = bias;
      Expert<double> e(c, rng);
      CHECK(num_parameters(e) == c.num_parameters());
      for (auto& p : parameters(e)) p.value() = Tensor<double>::randn(p.shape(), rng, 0.7);
      Var<double> x(Tensor<double>::randn({4, 3}, rng));
      test::check_module_gradients(e, [&] { return test::probe(e(x)); });
      test::check_gradients([&](const std::vector<Var<double>>& in) { return e(in[0]); },
                            {x.value()});
    }
  }
  // A GELU MLP by hand: down(gelu(up(x))) with 1x1 weights.
  ExpertConfig c;
  c.d_model = 1;
  c.hidden = 1;
  c.bias = false;
  Expert<double> e(c, rng);
  e.up.weight.value().fill_(2.0);
  e.down.weight.value().fill_(3.0);
  const double x = 0.5, h = 2.0 * x;
  const double gelu_h = 0.5 * h * (1 + std::tanh(std::sqrt(2 / M_PI) * (h + 0.044715 * h * h * h)));
  CHECK(e(Var<double>(Tensor<double>({1, 1}, {x}))).item() == doctest::Approx(3.0 * gelu_h));
  CHECK_THROWS_WITH_AS(activation_from_string("tanh"),
                       "unknown activation 'tanh' (expected gelu, gelu_exact, relu, silu or relu2)",
                       ValueError);
}

TEST_CASE("Attention module options gradcheck") {
  Rng rng(4);
  struct Options {
    int64_t heads, kv_heads;
    bool rope, qk_norm, bias;
    double softcap;
  };
  for (Options o :
       {Options{2, 0, false, false, true, 0.0}, Options{4, 2, true, false, false, 0.0},
        Options{2, 1, true, true, false, 0.0}, Options{2, 2, false, false, true, 1.5}}) {
    AttentionConfig c;
    c.d_model = 8;
    c.n_heads = o.heads;
    c.n_kv_heads = o.kv_heads;
    c.rope = o.rope;
    c.qk_norm = o.qk_norm;
    c.bias = o.bias;
    c.softcap = o.softcap;
    Attention<double> attn(c, rng);
    for (auto& p : parameters(attn)) p.value() = Tensor<double>::randn(p.shape(), rng, 0.5);
    Var<double> x(Tensor<double>::randn({2, 3, 8}, rng));
    test::check_module_gradients(attn, [&] { return test::probe(attn(x)); });
    test::check_gradients([&](const std::vector<Var<double>>& in) { return attn(in[0]); },
                          {x.value()});
  }
}

TEST_CASE("Attention with a KV cache matches the full forward") {
  Rng rng(5);
  AttentionConfig c;
  c.d_model = 16;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.rope = true;
  c.qk_norm = true;
  Attention<float> attn(c, rng);
  Var<float> x(Tensor<float>::randn({2, 6, 16}, rng));
  NoGradGuard no_grad;
  const Tensor<float> full = attn(x).value();
  KVCache<float> cache(2, 8, 2, 4);
  const Tensor<float> first =
      attn(Var<float>(x.value().slice(1, 0, 4).contiguous()), &cache).value();
  const Tensor<float> fifth =
      attn(Var<float>(x.value().slice(1, 4, 5).contiguous()), &cache).value();
  const Tensor<float> sixth =
      attn(Var<float>(x.value().slice(1, 5, 6).contiguous()), &cache).value();
  test::check_close(first, full.slice(1, 0, 4).contiguous(), 1e-5);
  test::check_close(fifth, full.slice(1, 4, 5).contiguous(), 1e-5);
  test::check_close(sixth, full.slice(1, 5, 6).contiguous(), 1e-5);
  CHECK(cache.length == 6);
  CHECK_THROWS_WITH_AS(attn(Var<float>(Tensor<float>({2, 3, 16})), &cache),
                       "KV cache: 6 cached + 3 new positions exceed its capacity 8", ValueError);
}

TEST_CASE("layer configs reject bad values") {
  Rng rng(6);
  AttentionConfig c;
  c.d_model = 10;
  c.n_heads = 4;
  CHECK_THROWS_WITH_AS(Attention<float>(c, rng),
                       "attention: d_model 10 is not divisible by n_heads 4", ValueError);
  c.d_model = 12;
  c.n_kv_heads = 3;
  CHECK_THROWS_WITH_AS(Attention<float>(c, rng),
                       "attention: n_heads 4 is not divisible by n_kv_heads 3", ValueError);
  ExpertConfig e;
  e.d_model = 4;
  CHECK_THROWS_WITH_AS(Expert<float>(e, rng),
                       "expert: d_model and hidden must be positive, got 4 and 0", ValueError);
  CHECK_THROWS_WITH_AS(Dropout<float>(1.0), "Dropout: p must be in [0, 1), got 1", ValueError);
}
