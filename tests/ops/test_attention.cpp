#include <minimoe/ops/attention.hpp>
#include <minimoe/ops/rope.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

// Attention by its definition, one scalar at a time: the oracle for the fused op.
Tensor<double> attention_reference(const Tensor<double>& q, const Tensor<double>& k,
                                   const Tensor<double>& v, const AttentionOptions& o) {
  const int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Tk = k.size(1), Hkv = k.size(2);
  const double scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(double(D));
  Tensor<double> out({B, Tq, H, D});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        const int64_t hk = h / (H / Hkv);
        std::vector<double> s;
        for (int64_t j = 0; j < Tk; ++j) {
          if (o.causal && j > i + Tk - Tq) break;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q.at({b, i, h, d}) * k.at({b, j, hk, d});
          dot *= scale;
          if (o.softcap > 0) dot = o.softcap * std::tanh(dot / o.softcap);
          s.push_back(dot);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (size_t j = 0; j < s.size(); ++j) acc += s[j] / sum * v.at({b, int64_t(j), hk, d});
          out.at({b, i, h, d}) = acc;
        }
      }
  return out;
}

AttentionOptions options(bool causal, double softcap = 0.0, double scale = 0.0) {
  AttentionOptions o;
  o.causal = causal;
  o.softcap = softcap;
  o.scale = scale;
  return o;
}

}  // namespace

TEST_CASE("attention matches the definition: causal, GQA, KV-cache offset, softcap") {
  Rng rng(3);
  struct Case {
    int64_t B, Tq, Tk, H, Hkv, D;
    AttentionOptions o;
  };
  const Case cases[] = {
      {2, 5, 5, 4, 4, 3, options(true)},          {1, 4, 4, 4, 2, 8, options(true)},
      {2, 2, 6, 2, 1, 4, options(true)},          {1, 3, 5, 2, 2, 4, options(false)},
      {1, 1, 7, 4, 2, 4, options(true)},          {2, 4, 4, 2, 2, 4, options(true, 0.5)},
      {1, 3, 3, 2, 2, 4, options(true, 0.0, 0.7)}};
  for (const Case& c : cases) {
    auto q = Tensor<double>::randn({c.B, c.Tq, c.H, c.D}, rng);
    auto k = Tensor<double>::randn({c.B, c.Tk, c.Hkv, c.D}, rng);
    auto v = Tensor<double>::randn({c.B, c.Tk, c.Hkv, c.D}, rng);
    auto y = scaled_dot_product_attention(Var<double>(q), Var<double>(k), Var<double>(v), c.o);
    test::check_close(y.value(), attention_reference(q, k, v, c.o), 1e-12);
    auto yf = scaled_dot_product_attention(Var<float>(q.cast<float>()), Var<float>(k.cast<float>()),
                                           Var<float>(v.cast<float>()), c.o);
    test::check_close(yf.value().cast<double>(), attention_reference(q, k, v, c.o), 1e-5);
  }
}

TEST_CASE("attention gradcheck") {
  Rng rng(4);
  using V = std::vector<Var<double>>;
  for (const AttentionOptions& o : {options(true), options(false), options(true, 0.8)}) {
    auto q = Tensor<double>::randn({2, 3, 4, 2}, rng);
    auto k = Tensor<double>::randn({2, 3, 2, 2}, rng);
    auto v = Tensor<double>::randn({2, 3, 2, 2}, rng);
    test::check_gradients(
        [o](const V& in) { return scaled_dot_product_attention(in[0], in[1], in[2], o); },
        {q, k, v});
  }
  // KV-cache shape (fewer queries than keys), and a non-contiguous query.
  auto q = Tensor<double>::randn({1, 2, 2, 3}, rng);
  auto k = Tensor<double>::randn({1, 4, 1, 3}, rng);
  auto v = Tensor<double>::randn({1, 4, 1, 3}, rng);
  test::check_gradients(
      [](const V& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); }, {q, k, v});
  // Several query and key blocks (64 rows each), ragged, with the cache offset between them:
  // keys of a block that only later queries see, GQA heads summed into one dK, dV.
  for (const AttentionOptions& o : {options(true), options(false), options(true, 0.8)}) {
    auto ql = Tensor<double>::randn({1, 70, 2, 3}, rng);
    auto kl = Tensor<double>::randn({1, 140, 1, 3}, rng);
    auto vl = Tensor<double>::randn({1, 140, 1, 3}, rng);
    test::check_gradients(
        [o](const V& in) { return scaled_dot_product_attention(in[0], in[1], in[2], o); },
        {ql, kl, vl});
  }
  auto qt = Tensor<double>::randn({1, 2, 2, 3}, rng).transpose(1, 2);  // [1, 2, 2, 3] view
  test::check_gradients(
      [](const V& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); }, {qt, k, v});
}

TEST_CASE("attention without keys gives zeros, forward and backward") {
  Var<float> q(Tensor<float>({1, 2, 1, 3}, 1.0f), true);
  Var<float> k(Tensor<float>({1, 0, 1, 3}), true), v(Tensor<float>({1, 0, 1, 3}), true);
  Var<float> y = scaled_dot_product_attention(q, k, v, options(false));
  sum(y).backward();
  test::check_close(y.value(), Tensor<float>({1, 2, 1, 3}), 0.0);
  test::check_close(q.grad(), Tensor<float>({1, 2, 1, 3}), 0.0);
}

TEST_CASE("attention errors") {
  Var<float> q(Tensor<float>({1, 4, 3, 2})), k(Tensor<float>({1, 4, 2, 2}));
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, k),
                       "attention: 3 query heads are not a multiple of 2 key/value heads",
                       ShapeError);
  Var<float> q2(Tensor<float>({1, 5, 2, 2}));
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q2, k, k),
                       "attention: causal attention needs at least as many keys (4) as queries (5)",
                       ShapeError);
  Var<float> v3(Tensor<float>({1, 4, 2}));
  CHECK_THROWS_WITH_AS(
      scaled_dot_product_attention(q, k, v3),
      "attention: q, k, v must be [B, T, heads, D], got [1, 4, 3, 2], [1, 4, 2, 2], [1, 4, 2]",
      ShapeError);
  Var<float> k5(Tensor<float>({1, 4, 1, 5}));
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k5, k5),
                       "attention: q [1, 4, 3, 2] and k [1, 4, 1, 5] differ in batch or head size",
                       ShapeError);
}

TEST_CASE("rope rotates pairs and is undone by its gradient") {
  // D = 2, base 100: the pair (x0, x1) at position p is rotated by angle p.
  Tensor<double> x({1, 2, 1, 2}, {1, 0, 1, 0});
  auto y = rope(Var<double>(x), /*position_offset=*/0, /*base=*/100.0).value();
  test::check_close(y, Tensor<double>({1, 2, 1, 2}, {1, 0, std::cos(1.0), std::sin(1.0)}), 1e-12);
  auto y3 = rope(Var<double>(x), 3, 100.0).value();
  CHECK(y3.at({0, 0, 0, 0}) == doctest::Approx(std::cos(3.0)));
  // Offset p shifts positions: row 1 at offset 0 equals row 0 at offset 1.
  Rng rng(6);
  auto q = Tensor<double>::randn({1, 2, 3, 8}, rng);
  auto a = rope(Var<double>(q)).value();
  auto b = rope(Var<double>(q.slice(1, 1, 2).contiguous()), 1).value();
  test::check_close(a.slice(1, 1, 2).contiguous(), b, 1e-12);
  using V = std::vector<Var<double>>;
  test::check_gradients([](const V& in) { return rope(in[0], 2, 50.0); },
                        {Tensor<double>::randn({2, 3, 2, 4}, rng)});
  CHECK_THROWS_WITH_AS(rope(Var<double>(Tensor<double>({1, 2, 1, 3}))),
                       "rope: input must be [B, T, H, D] with an even D, got [1, 2, 1, 3]",
                       ShapeError);
}
