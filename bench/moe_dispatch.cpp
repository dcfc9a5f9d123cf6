// bench/moe_dispatch.cpp: what an MoE FFN layer costs, computed five ways, against its ceiling.
//
//   moe_dispatch --tokens 2048 --d 256 --hidden 1024 --experts 4 --topk 2 --threads 2
//                --pass fwdbwd [--glu 1] [--skew zipf] [--precision bf16] [--json]
//
// The layer (router excluded, routing given): y[n] = sum_k w[n, k] * Expert_{e(n, k)}(x[n]),
// each expert a GPT-2 MLP (GELU, tanh form) or a SwiGLU (--glu 1), with biases (--bias 1).
// Each token's K distinct experts are drawn with a fixed seed, uniformly or from a zipf law
// over the experts (--skew zipf), and its K weights are positive and sum to 1. Strategies:
//
//   dense_all              every expert on every token, scaled by a mostly-zero [T, E] gate
//                          (TinyGPT), written with minimoe's autograd ops
//   loop                   per expert: gather rows, Eigen GEMMs, bias + activation, scale,
//                          scatter-add; hand-written backward (nanoMoE / HF style in C++)
//   grouped                minimoe's dispatch_grouped, backward through autograd
//   dense_equiv(minimoe)   one dense FFN with hidden K*h over the T tokens: exactly the active
//                          FLOPs, as a minimoe Expert
//   dense_equiv(openblas)  the same FFN as cblas_sgemm calls and vectorised elementwise loops:
//                          the ceiling the others are compared with
//
// Every strategy is first checked against a double-precision reference (dispatch_loop for the
// MoE strategies, the dense Expert for dense_equiv): the output, and with --pass fwdbwd the
// input gradient, the routing-weight gradient and two experts' weight gradients. The program
// stops with a message on any disagreement. Then each strategy is warmed up and timed; the
// reported time is the median of the runs. FLOPs count active work only (what dense_equiv
// does), so GFLOP/s are comparable across strategies:
//
//   forward = 2 T K (C h + h C)   (C h x 1.5 for GLU: gate and up)   fwd+bwd = 3 x forward
//
// --pass fwd times inference (no graph is recorded); --pass fwdbwd times a training step's
// layer work: forward, then backward from a fixed seed gradient dL/dy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#ifdef MINIMOE_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include <minimoe/kernels/routing.hpp>
#include <minimoe/nn/expert.hpp>
#include <minimoe/nn/expert_dispatch.hpp>
#include <minimoe/nn/module.hpp>
#include <minimoe/ops/shape.hpp>

#include "bandwidth.hpp"

using namespace minimoe;
using namespace minimoe::bench;

namespace {

// T = tokens, C = d_model, h = expert hidden, E = experts, K = top-k, R = routed rows (T K).

struct Options {
  int64_t tokens = 2048, d = 256, hidden = 1024, experts = 4, topk = 2;
  int glu = 0;
  int bias = 1;
  int threads = 0;  // 0: OpenMP's default
  std::string skew = "uniform";
  double zipf_s = 1.0;
  std::string pass = "fwdbwd";
  bool json = false;
  int repeat = 5;         // at least this many timed runs...
  double min_time = 0.5;  // ...and at least this many seconds of them
  int warmup = 2;
  uint64_t seed = 1;
  std::string only;  // comma-separated strategy names; empty = all
  bool no_verify = false;
  double tolerance = 0;            // max |a - ref| / max |ref| per checked tensor; 0: by precision
  std::string precision = "fp32";  // of minimoe's products (grouped, dense_all, dense_equiv)
  int cold = 0;                    // evict the caches before every timed run
  int bandwidth = -1;              // measure read bandwidth; -1 = when pass is fwd and T <= 64
  int64_t flush_mb = 256;

  bool backward() const { return pass == "fwdbwd"; }
  Activation activation() const { return glu ? Activation::SiLU : Activation::GELU; }
  bool selected(const std::string& name) const {
    if (only.empty()) return true;
    std::stringstream list(only);
    std::string item;
    while (std::getline(list, item, ','))
      if (item == name) return true;
    return false;
  }
};

double active_flops(const Options& o) {
  const double forward = 2.0 * double(o.tokens) * double(o.topk) * double(o.d) * double(o.hidden) *
                         (o.glu ? 3.0 : 2.0);
  return forward * (o.backward() ? 3.0 : 1.0);
}

[[noreturn]] void fail(const std::string& message) {
  std::fflush(stdout);
  fmt::print(stderr, "moe_dispatch: {}\n", message);
  std::exit(1);
}

// ---------------------------------------------------------------------------------------------
// The problem: experts, routing, inputs, all drawn from one seed.

struct Problem {
  Options o;
  ExpertConfig config;
  std::vector<Expert<float>> experts;
  Expert<float> dense;          // hidden K h: the FFN with the active FLOPs of the layer
  std::vector<int32_t> choice;  // [T K] expert of each (token, slot)
  RoutingPlan plan;
  Tensor<float> x;        // [T, C]
  Tensor<float> weights;  // [T, K]
  Tensor<float> gate;     // [T, E] the weights scattered to their experts, zero elsewhere
  Tensor<float> seed;     // [T, C] dL/dy for the backward pass
};

// Weights ~ N(0, 1 / fan_in) keep the activations O(1), so the nonlinearity is exercised.
template <typename Module>
void randomize(Module& m, Rng& rng) {
  for (auto& p : parameters(m)) {
    const double std = p.dim() == 2 ? 1.0 / std::sqrt(double(p.size(1))) : 0.1;
    p.value() = Tensor<float>::randn(p.shape(), rng, std);
  }
}

// K distinct experts per token, drawn without replacement from p(e) ~ 1 (uniform) or
// 1 / (e + 1)^s (zipf: expert 0 is the most popular).
std::vector<int32_t> draw_routing(const Options& o, Rng& rng) {
  std::vector<double> p(static_cast<size_t>(o.experts));
  for (int64_t e = 0; e < o.experts; ++e)
    p[e] = o.skew == "zipf" ? 1.0 / std::pow(double(e + 1), o.zipf_s) : 1.0;
  std::vector<int32_t> choice(static_cast<size_t>(o.tokens * o.topk));
  std::vector<double> left;
  for (int64_t n = 0; n < o.tokens; ++n) {
    left = p;
    for (int64_t k = 0; k < o.topk; ++k) {
      double total = 0;
      for (double v : left) total += v;
      const double u = rng.uniform() * total;
      double acc = 0;
      int64_t pick = -1;
      for (int64_t e = 0; e < o.experts; ++e) {
        if (left[e] <= 0) continue;
        pick = e;  // the last available one absorbs rounding
        acc += left[e];
        if (u < acc) break;
      }
      choice[n * o.topk + k] = static_cast<int32_t>(pick);
      left[pick] = 0;
    }
  }
  return choice;
}

Problem make_problem(const Options& o) {
  Problem p;
  p.o = o;
  Rng rng(o.seed);
  p.config.d_model = o.d;
  p.config.hidden = o.hidden;
  p.config.glu = o.glu != 0;
  p.config.bias = o.bias != 0;
  p.config.activation = o.activation();
  for (int64_t e = 0; e < o.experts; ++e) {
    p.experts.emplace_back(p.config, rng);
    randomize(p.experts.back(), rng);
  }
  ExpertConfig dense = p.config;
  dense.hidden = o.topk * o.hidden;
  p.dense = Expert<float>(dense, rng);
  randomize(p.dense, rng);

  p.choice = draw_routing(o, rng);
  p.plan = make_routing_plan(p.choice.data(), o.tokens, o.topk, o.experts);
  p.x = Tensor<float>::randn({o.tokens, o.d}, rng);
  p.weights = Tensor<float>::uniform({o.tokens, o.topk}, rng, 0.1, 1.0);
  p.gate = Tensor<float>({o.tokens, o.experts});
  for (int64_t n = 0; n < o.tokens; ++n) {
    float sum = 0;
    for (int64_t k = 0; k < o.topk; ++k) sum += p.weights.data()[n * o.topk + k];
    for (int64_t k = 0; k < o.topk; ++k) {
      float& w = p.weights.data()[n * o.topk + k];
      w /= sum;
      p.gate.data()[n * o.experts + p.choice[n * o.topk + k]] = w;
    }
  }
  p.seed = Tensor<float>::randn({o.tokens, o.d}, rng);
  return p;
}

// ---------------------------------------------------------------------------------------------
// Vectorised elementwise pieces shared by `loop` and `dense_equiv(openblas)`: Eigen array
// expressions over chunks of a row (Eigen vectorises tanh and exp for float), on the calling
// thread.

constexpr int64_t kChunk = 1024;
using ChunkArray = Eigen::Array<float, Eigen::Dynamic, 1, 0, kChunk, 1>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;
constexpr float kSqrt2OverPi = 0.7978845608028654f, kGeluCubic = 0.044715f;

// h += b_h (g += b_g); a = gelu(h), or silu(g) * h for GLU. h, g, a: [rows, cols].
void bias_activation_forward(bool glu, int64_t rows, int64_t cols, float* h, float* g,
                             const float* bh, const float* bg, float* a) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
      const int64_t n = std::min(kChunk, cols - c0), at = r * cols + c0;
      ArrayMap hv(h + at, n), av(a + at, n);
      if (bh) hv += ConstArrayMap(bh + c0, n);
      if (glu) {
        ArrayMap gv(g + at, n);
        if (bg) gv += ConstArrayMap(bg + c0, n);
        av = gv / (1.0f + (-gv).exp()) * hv;
      } else {
        const ChunkArray t = (kSqrt2OverPi * (hv + kGeluCubic * hv.cube())).tanh();
        av = 0.5f * hv * (1.0f + t);
      }
    }
}

// dh holds dL/da on entry and dL/dh on exit; dg receives dL/dg (GLU).
void activation_backward(bool glu, int64_t rows, int64_t cols, const float* h, const float* g,
                         float* dh, float* dg) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
      const int64_t n = std::min(kChunk, cols - c0), at = r * cols + c0;
      const ConstArrayMap hv(h + at, n);
      ArrayMap da(dh + at, n);
      if (glu) {
        const ConstArrayMap gv(g + at, n);
        const ChunkArray s = 1.0f / (1.0f + (-gv).exp());
        ArrayMap(dg + at, n) = da * hv * s * (1.0f + gv * (1.0f - s));
        da *= gv * s;
      } else {
        const ChunkArray t = (kSqrt2OverPi * (hv + kGeluCubic * hv.cube())).tanh();
        da *= 0.5f * (1.0f + t) +
              0.5f * hv * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * hv.square());
      }
    }
}

// out[c] = sum_r m[r, c]: the bias gradients.
void column_sums(const float* m, int64_t rows, int64_t cols, float* out) {
  std::fill(out, out + cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c] += m[r * cols + c];
}

// ---------------------------------------------------------------------------------------------
// The strategies. Each runs forward (and backward) and, when asked, hands back what the
// verification compares.

struct Outputs {
  Tensor<float> y, dx, drouting;          // [T, C], [T, C], [T, K]
  std::vector<Tensor<float>> dup, ddown;  // weight gradients of the probe experts
};

struct Strategy {
  std::string name;
  bool dense = false;  // computes the dense FFN (checked against the dense reference)
  std::function<void(bool backward, Outputs* out)> run;
};

// Whether --precision applies: the strategies built on minimoe's products, not on Eigen's or
// OpenBLAS's.
bool runs_minimoe_products(const Strategy& s) {
  return s.name != "loop" && s.name != "dense_equiv(openblas)";
}

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatMap = Eigen::Map<const Mat>;
using ConstRowMap = Eigen::Map<const Eigen::RowVectorXf>;

Tensor<float> to_tensor(const Mat& m) {
  Tensor<float> t({m.rows(), m.cols()});
  std::copy_n(m.data(), m.size(), t.data());
  return t;
}

// nanoMoE / HF-style code, written in C++ with Eigen: one expert at a time, gather its rows,
// two (GLU: three) GEMMs, bias and activation, scale by the routing weight, scatter-add.
// Eigen parallelises each GEMM over the threads; everything else runs on one thread, as
// straightforward Eigen code does. Buffers are reused across calls (which favours it).
class LoopMoE {
 public:
  explicit LoopMoE(const Problem& p) : p_(p) {
    const int64_t E = p.o.experts, C = p.o.d, h = p.o.hidden;
    cache_.resize(E);
    for (int64_t e = 0; e < E; ++e) {
      dup_.push_back(Mat::Zero(h, C));
      dgate_.push_back(p.config.glu ? Mat::Zero(h, C) : Mat());
      ddown_.push_back(Mat::Zero(C, h));
      dbup_.push_back(Eigen::RowVectorXf::Zero(h));
      dbgate_.push_back(Eigen::RowVectorXf::Zero(p.config.glu ? h : 0));
      dbdown_.push_back(Eigen::RowVectorXf::Zero(C));
    }
  }

  void run(bool backward, Outputs* out, const std::vector<int64_t>& probes) {
    const Options& o = p_.o;
    const int64_t T = o.tokens, C = o.d, h = o.hidden, K = o.topk;
    const bool glu = p_.config.glu, bias = p_.config.bias;
    const ConstMatMap x(p_.x.data(), T, C);
    const float* w = p_.weights.data();
    y_.setZero(T, C);
    for (int64_t e = 0; e < o.experts; ++e) {
      const int64_t rows = p_.plan.load(e);
      if (rows == 0) continue;
      const int32_t* tok = p_.plan.token_of.data() + p_.plan.offsets[e];
      const int32_t* pair = p_.plan.pair_of.data() + p_.plan.offsets[e];
      const Expert<float>& ex = p_.experts[e];
      Cache& c = cache_[e];
      c.x.resize(rows, C);
      for (int64_t i = 0; i < rows; ++i) c.x.row(i) = x.row(tok[i]);
      c.h.noalias() = c.x * weight(ex.up).transpose();
      if (glu) c.g.noalias() = c.x * weight(ex.gate).transpose();
      c.a.resize(rows, h);
      bias_activation_forward(glu, rows, h, c.h.data(), glu ? c.g.data() : nullptr,
                              bias ? ex.up.bias.value().data() : nullptr,
                              bias && glu ? ex.gate.bias.value().data() : nullptr, c.a.data());
      c.o.noalias() = c.a * weight(ex.down).transpose();
      if (bias) c.o.rowwise() += ConstRowMap(ex.down.bias.value().data(), C);
      for (int64_t i = 0; i < rows; ++i) y_.row(tok[i]) += w[pair[i]] * c.o.row(i);
    }
    if (out) out->y = to_tensor(y_);
    if (!backward) return;

    const ConstMatMap dy(p_.seed.data(), T, C);
    dx_.setZero(T, C);
    dw_.setZero(T, K);
    for (int64_t e = 0; e < o.experts; ++e) {
      const int64_t rows = p_.plan.load(e);
      if (rows == 0) continue;
      const int32_t* tok = p_.plan.token_of.data() + p_.plan.offsets[e];
      const int32_t* pair = p_.plan.pair_of.data() + p_.plan.offsets[e];
      const Expert<float>& ex = p_.experts[e];
      Cache& c = cache_[e];
      d_o_.resize(rows, C);
      for (int64_t i = 0; i < rows; ++i) {
        d_o_.row(i) = w[pair[i]] * dy.row(tok[i]);
        dw_.data()[pair[i]] = dy.row(tok[i]).dot(c.o.row(i));
      }
      ddown_[e].noalias() = d_o_.transpose() * c.a;
      if (bias) dbdown_[e] = d_o_.colwise().sum();
      d_h_.noalias() = d_o_ * weight(ex.down);  // dL/da, becomes dL/dh
      if (glu) d_g_.resize(rows, h);
      activation_backward(glu, rows, h, c.h.data(), glu ? c.g.data() : nullptr, d_h_.data(),
                          glu ? d_g_.data() : nullptr);
      dup_[e].noalias() = d_h_.transpose() * c.x;
      if (bias) dbup_[e] = d_h_.colwise().sum();
      d_x_.noalias() = d_h_ * weight(ex.up);
      if (glu) {
        dgate_[e].noalias() = d_g_.transpose() * c.x;
        if (bias) dbgate_[e] = d_g_.colwise().sum();
        d_x_.noalias() += d_g_ * weight(ex.gate);
      }
      for (int64_t i = 0; i < rows; ++i) dx_.row(tok[i]) += d_x_.row(i);
    }
    if (out) {
      out->dx = to_tensor(dx_);
      out->drouting = to_tensor(dw_);
      for (int64_t e : probes) {
        out->dup.push_back(to_tensor(dup_[e]));
        out->ddown.push_back(to_tensor(ddown_[e]));
      }
    }
  }

 private:
  struct Cache {
    Mat x, h, g, a, o;  // gathered rows, pre-activations, activation, expert output
  };
  static ConstMatMap weight(const Linear<float>& l) {
    return ConstMatMap(l.weight.value().data(), l.out_features(), l.in_features());
  }

  const Problem& p_;
  std::vector<Cache> cache_;
  Mat y_, dx_, dw_, d_o_, d_h_, d_g_, d_x_;
  std::vector<Mat> dup_, dgate_, ddown_;
  std::vector<Eigen::RowVectorXf> dbup_, dbgate_, dbdown_;
};

#ifdef MINIMOE_HAVE_OPENBLAS
// The dense FFN with hidden K h as BLAS calls: the ceiling. Forward: 2 GEMMs (3 for GLU);
// backward: 4 (6), plus vectorised bias, activation and bias-gradient loops. Those loops run on
// the calling thread on purpose: OpenBLAS has its own pthread pool, and after an OpenMP loop
// the idle OpenMP workers keep spinning on the cores OpenBLAS's next GEMM needs (measured on the
// seed shape: the OpenMP version was slower, up to 1.3x).
class DenseBlas {
 public:
  explicit DenseBlas(const Problem& p) : p_(p) {
    const int64_t T = p.o.tokens, C = p.o.d, H = p.dense.config.hidden;
    const bool glu = p.dense.config.glu;
    h_.resize(T * H);
    g_.resize(glu ? T * H : 0);
    a_.resize(T * H);
    y_.resize(T * C);
    dh_.resize(T * H);
    dg_.resize(glu ? T * H : 0);
    dx_.resize(T * C);
    dup_.resize(H * C);
    dgate_.resize(glu ? H * C : 0);
    ddown_.resize(C * H);
    dbup_.resize(H);
    dbgate_.resize(glu ? H : 0);
    dbdown_.resize(C);
  }

  void run(bool backward, Outputs* out) {
    const Expert<float>& ex = p_.dense;
    const int T = int(p_.o.tokens), C = int(p_.o.d), H = int(ex.config.hidden);
    const bool glu = ex.config.glu, bias = ex.config.bias;
    const float* x = p_.x.data();
    const float* wup = ex.up.weight.value().data();
    const float* wgate = glu ? ex.gate.weight.value().data() : nullptr;
    const float* wdown = ex.down.weight.value().data();
    using B = CBLAS_TRANSPOSE;
    const B N = CblasNoTrans, Tr = CblasTrans;
    cblas_sgemm(CblasRowMajor, N, Tr, T, H, C, 1.0f, x, C, wup, C, 0.0f, h_.data(), H);
    if (glu) cblas_sgemm(CblasRowMajor, N, Tr, T, H, C, 1.0f, x, C, wgate, C, 0.0f, g_.data(), H);
    bias_activation_forward(glu, T, H, h_.data(), glu ? g_.data() : nullptr,
                            bias ? ex.up.bias.value().data() : nullptr,
                            bias && glu ? ex.gate.bias.value().data() : nullptr, a_.data());
    cblas_sgemm(CblasRowMajor, N, Tr, T, C, H, 1.0f, a_.data(), H, wdown, H, 0.0f, y_.data(), C);
    if (bias) {
      const float* b = ex.down.bias.value().data();
      for (int64_t r = 0; r < T; ++r)
        for (int64_t c = 0; c < C; ++c) y_[r * C + c] += b[c];
    }
    if (out) out->y = Tensor<float>({T, C}, y_);
    if (!backward) return;

    const float* dy = p_.seed.data();
    cblas_sgemm(CblasRowMajor, Tr, N, C, H, T, 1.0f, dy, C, a_.data(), H, 0.0f, ddown_.data(), H);
    if (bias) column_sums(dy, T, C, dbdown_.data());
    cblas_sgemm(CblasRowMajor, N, N, T, H, C, 1.0f, dy, C, wdown, H, 0.0f, dh_.data(), H);
    activation_backward(glu, T, H, h_.data(), glu ? g_.data() : nullptr, dh_.data(),
                        glu ? dg_.data() : nullptr);
    if (bias) column_sums(dh_.data(), T, H, dbup_.data());
    cblas_sgemm(CblasRowMajor, Tr, N, H, C, T, 1.0f, dh_.data(), H, x, C, 0.0f, dup_.data(), C);
    cblas_sgemm(CblasRowMajor, N, N, T, C, H, 1.0f, dh_.data(), H, wup, C, 0.0f, dx_.data(), C);
    if (glu) {
      if (bias) column_sums(dg_.data(), T, H, dbgate_.data());
      cblas_sgemm(CblasRowMajor, Tr, N, H, C, T, 1.0f, dg_.data(), H, x, C, 0.0f, dgate_.data(), C);
      cblas_sgemm(CblasRowMajor, N, N, T, C, H, 1.0f, dg_.data(), H, wgate, C, 1.0f, dx_.data(), C);
    }
    if (out) {
      out->dx = Tensor<float>({T, C}, dx_);
      out->dup.push_back(Tensor<float>({H, C}, dup_));
      out->ddown.push_back(Tensor<float>({C, H}, ddown_));
    }
  }

 private:
  const Problem& p_;
  std::vector<float> h_, g_, a_, y_, dh_, dg_, dx_, dup_, dgate_, ddown_, dbup_, dbgate_, dbdown_;
};
#endif

// Probe experts for the weight-gradient check: the most and the least loaded (non-empty) one.
std::vector<int64_t> probe_experts(const RoutingPlan& plan) {
  int64_t most = -1, least = -1;
  for (int64_t e = 0; e < plan.experts; ++e) {
    if (plan.load(e) == 0) continue;
    if (most < 0 || plan.load(e) > plan.load(most)) most = e;
    if (least < 0 || plan.load(e) < plan.load(least)) least = e;
  }
  if (most < 0) return {};
  if (least == most) return {most};
  return {most, least};
}

std::vector<Strategy> make_strategies(Problem& p, const std::vector<int64_t>& probes) {
  std::vector<Strategy> s;
  auto grads_of = [&probes](std::vector<Expert<float>>& experts, Outputs* out) {
    for (int64_t e : probes) {
      out->dup.push_back(experts[e].up.weight.grad());
      out->ddown.push_back(experts[e].down.weight.grad());
    }
  };

  s.push_back({"dense_all", false, [&p, grads_of](bool backward, Outputs* out) {
                 std::optional<NoGradGuard> inference;
                 if (!backward) inference.emplace();
                 for (auto& e : p.experts) zero_grad(e);
                 Var<float> x(p.x, backward), gate(p.gate, backward);
                 Var<float> y;
                 for (int64_t e = 0; e < p.o.experts; ++e) {
                   const Var<float> ye = p.experts[e](x) * slice(gate, 1, e, e + 1);  // [T, C]
                   y = y.defined() ? y + ye : ye;
                 }
                 if (backward) y.backward(p.seed);
                 if (!out) return;
                 out->y = y.value();
                 if (!backward) return;
                 out->dx = x.grad();
                 const int64_t T = p.o.tokens, K = p.o.topk, E = p.o.experts;
                 out->drouting = Tensor<float>({T, K});
                 for (int64_t i = 0; i < T * K; ++i)
                   out->drouting.data()[i] = gate.grad().data()[(i / K) * E + p.choice[i]];
                 grads_of(p.experts, out);
               }});

  auto loop = std::make_shared<LoopMoE>(p);
  s.push_back({"loop", false,
               [loop, probes](bool backward, Outputs* out) { loop->run(backward, out, probes); }});

  s.push_back({"grouped", false, [&p, grads_of](bool backward, Outputs* out) {
                 std::optional<NoGradGuard> inference;
                 if (!backward) inference.emplace();
                 for (auto& e : p.experts) zero_grad(e);
                 Var<float> x(p.x, backward), w(p.weights, backward);
                 Var<float> y = dispatch_grouped(x, w, p.plan, p.experts);
                 if (backward) y.backward(p.seed);
                 if (!out) return;
                 out->y = y.value();
                 if (!backward) return;
                 out->dx = x.grad();
                 out->drouting = w.grad();
                 grads_of(p.experts, out);
               }});

  s.push_back({"dense_equiv(minimoe)", true, [&p](bool backward, Outputs* out) {
                 std::optional<NoGradGuard> inference;
                 if (!backward) inference.emplace();
                 zero_grad(p.dense);
                 Var<float> x(p.x, backward);
                 Var<float> y = p.dense(x);
                 if (backward) y.backward(p.seed);
                 if (!out) return;
                 out->y = y.value();
                 if (!backward) return;
                 out->dx = x.grad();
                 out->dup.push_back(p.dense.up.weight.grad());
                 out->ddown.push_back(p.dense.down.weight.grad());
               }});

#ifdef MINIMOE_HAVE_OPENBLAS
  auto blas = std::make_shared<DenseBlas>(p);
  s.push_back({"dense_equiv(openblas)", true,
               [blas](bool backward, Outputs* out) { blas->run(backward, out); }});
#endif
  return s;
}

// ---------------------------------------------------------------------------------------------
// Verification against double-precision references.

struct Reference {
  Tensor<double> y, dx, drouting;
  std::vector<Tensor<double>> dup, ddown;
};

Expert<double> to_double(Expert<float>& src) {
  Rng rng(0);
  Expert<double> dst(src.config, rng);
  auto from = parameters(src);
  auto to = parameters(dst);
  for (size_t i = 0; i < from.size(); ++i) to[i].value() = from[i].value().cast<double>();
  return dst;
}

Reference moe_reference(Problem& p, const std::vector<int64_t>& probes, bool backward) {
  std::vector<Expert<double>> experts;
  for (auto& e : p.experts) experts.push_back(to_double(e));
  Var<double> x(p.x.cast<double>(), true), w(p.weights.cast<double>(), true);
  Var<double> y = dispatch_loop(x, w, p.plan, experts);
  Reference r;
  r.y = y.value();
  if (!backward) return r;
  y.backward(p.seed.cast<double>());
  r.dx = x.grad();
  r.drouting = w.grad();
  for (int64_t e : probes) {
    r.dup.push_back(experts[e].up.weight.grad());
    r.ddown.push_back(experts[e].down.weight.grad());
  }
  return r;
}

Reference dense_reference(Problem& p, bool backward) {
  Expert<double> dense = to_double(p.dense);
  Var<double> x(p.x.cast<double>(), true);
  Var<double> y = dense(x);
  Reference r;
  r.y = y.value();
  if (!backward) return r;
  y.backward(p.seed.cast<double>());
  r.dx = x.grad();
  r.dup.push_back(dense.up.weight.grad());
  r.ddown.push_back(dense.down.weight.grad());
  return r;
}

// max |a - ref| / max |ref|; fails when the shapes differ or a is missing.
double relative_error(const std::string& where, const Tensor<float>& a, const Tensor<double>& ref) {
  if (!a.defined()) fail(fmt::format("verification failed: {} was not computed", where));
  if (a.shape() != ref.shape())
    fail(fmt::format("verification failed: {} has shape {}, the reference {}", where, a.shape(),
                     ref.shape()));
  const Tensor<float> ac = a.contiguous();
  const Tensor<double> rc = ref.contiguous();
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < ac.numel(); ++i) {
    const double v = ac.data()[i], r = rc.data()[i];
    if (!std::isfinite(v)) fail(fmt::format("verification failed: {} is not finite", where));
    diff = std::max(diff, std::abs(v - r));
    scale = std::max(scale, std::abs(r));
  }
  return scale > 0 ? diff / scale : diff;
}

// Checks one strategy; returns a one-line summary of its worst errors.
std::string verify(const Strategy& s, const Reference& ref, bool backward, double tolerance) {
  Outputs out;
  s.run(backward, &out);
  std::string summary;
  auto expect = [&](const std::string& what, const Tensor<float>& a, const Tensor<double>& r) {
    const double err = relative_error(s.name + " " + what, a, r);
    if (!(err <= tolerance))
      fail(
          fmt::format("verification failed: {} {}: max |error| / max |reference| = {:.3g} > {:.3g}",
                      s.name, what, err, tolerance));
    summary += fmt::format(" {} {:.1e}", what, err);
  };
  expect("y", out.y, ref.y);
  if (!backward) return summary;
  expect("dx", out.dx, ref.dx);
  if (!s.dense) expect("dw_routing", out.drouting, ref.drouting);
  if (out.dup.size() != ref.dup.size()) fail("verification failed: " + s.name + ": missing dW");
  for (size_t i = 0; i < ref.dup.size(); ++i) {
    expect(fmt::format("dW_up[{}]", i), out.dup[i], ref.dup[i]);
    expect(fmt::format("dW_down[{}]", i), out.ddown[i], ref.ddown[i]);
  }
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Machine limits: peak FMA throughput and memory read bandwidth.

volatile float g_sink = 0;  // keeps results observable so nothing is optimised away

// The peak is the machine's, not the build's: on x86-64 the widest FMA the CPU has is chosen at
// run time (a build without AVX-512 uses half of an AVX-512 machine, and the ratio should say
// so). Each loop runs independent accumulator chains that stay in registers; mul and add arrive
// at run time and the result is consumed, so the compiler can neither fold nor drop the work.
// The chains converge to add / (1 - mul) = 1, far from overflow and denormals.
struct FmaKernel {
  const char* isa;
  int lanes, accumulators;
  float (*loop)(int64_t iterations, float mul, float add);
};

float fma_loop_scalar(int64_t iterations, float mul, float add) {
  float acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = 1.0f + 0.001f * float(j);
  for (int64_t i = 0; i < iterations; ++i)
    for (float& v : acc) v = v * mul + add;
  float s = 0;
  for (float v : acc) s += v;
  return s;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOE_DISPATCH_X86 1
// The sum of every lane of 16 accumulators (not _mm512_reduce_add_ps: GCC 12 warns inside it).
__attribute__((target("avx512f"))) inline float sum_lanes_avx512(const __m512* acc) {
  alignas(64) float lanes[16];
  float s = 0;
  for (int j = 0; j < 16; ++j) {
    _mm512_store_ps(lanes, acc[j]);
    for (float l : lanes) s += l;
  }
  return s;
}

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations, float mul, float add) {
  __m512 acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_set1_ps(1.0f + 0.001f * float(j));
  const __m512 m = _mm512_set1_ps(mul), a = _mm512_set1_ps(add);
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& v : acc) v = _mm512_fmadd_ps(v, m, a);
  return sum_lanes_avx512(acc);
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations, float mul, float add) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(1.0f + 0.001f * float(j));
  const __m256 m = _mm256_set1_ps(mul), a = _mm256_set1_ps(add);
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& v : acc) v = _mm256_fmadd_ps(v, m, a);
  alignas(32) float lanes[8];
  float s = 0;
  for (auto& v : acc) {
    _mm256_store_ps(lanes, v);
    for (float l : lanes) s += l;
  }
  return s;
}

// VDPBF16PS: per lane, two bf16 products added to a float sum (`lanes` counts both).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) float dpbf16_loop_avx512(int64_t iterations,
                                                                                float mul,
                                                                                float add) {
  __m512 acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_set1_ps(add * float(j));
  const __m512bh m = _mm512_cvtne2ps_pbh(_mm512_set1_ps(mul), _mm512_set1_ps(mul));
  for (int64_t i = 0; i < iterations; ++i)
    for (auto& v : acc) v = _mm512_dpbf16_ps(v, m, m);
  return sum_lanes_avx512(acc);
}
#endif

// The bf16 dot-product peak, where the CPU has the instructions (null isa otherwise).
FmaKernel widest_bf16_dot() {
#ifdef MOE_DISPATCH_X86
  if (bf16_accelerated()) return {"avx512-bf16", 32, 16, dpbf16_loop_avx512};
#endif
  return {nullptr, 0, 0, nullptr};
}

FmaKernel widest_fma() {
#ifdef MOE_DISPATCH_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return {"avx512", 16, 16, fma_loop_avx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {"avx2", 8, 12, fma_loop_avx2};
#endif
  return {"scalar", 1, 8, fma_loop_scalar};
}

// The SIMD width this build's own code (Eigen's kernels included) was compiled for.
constexpr const char* kBuildIsa =
#if defined(EIGEN_DONT_VECTORIZE)
    "scalar";
#elif defined(__AVX512F__)
    "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    "avx2";
#elif defined(__ARM_NEON)
    "neon";
#elif defined(__SSE2__)
    "sse2";
#else
    "scalar";
#endif

double peak_fma_gflops(int threads, const FmaKernel& kernel) {
  const int64_t iterations = int64_t{1} << 22;
  volatile float mul = 0.9999999f, add = 1e-7f;
  double best = 0;
  for (int trial = 0; trial < 10; ++trial) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    total += kernel.loop(iterations, mul, add);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g_sink = g_sink + total;
    const double flops =
        2.0 * double(threads) * double(iterations) * kernel.accumulators * kernel.lanes;
    best = std::max(best, flops / s / 1e9);
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Timing.

struct Timing {
  double median = 0, best = 0;
  int runs = 0;
  double eviction_gbs = 0;  // --cold: median read bandwidth of the evictions before the runs
};

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Timing time_strategy(const Strategy& s, const Options& o, const std::vector<float>* flush) {
  using Clock = std::chrono::steady_clock;
  const bool backward = o.backward();
  for (int i = 0; i < o.warmup; ++i) s.run(backward, nullptr);
  constexpr double kBudgetSeconds = 20;  // slow strategies stop after 3 runs past this
  constexpr size_t kMaxRuns = 100000;
  std::vector<double> samples, eviction_gbs;
  double total = 0;  // timed seconds; with --cold the evictions add untimed seconds
  const auto start = Clock::now();
  for (;;) {
    // An eviction is a read of the whole buffer: its speed is the bandwidth of that moment.
    if (flush) eviction_gbs.push_back(double(flush->size()) * 4.0 / read_pass(*flush) / 1e9);
    const auto t0 = Clock::now();
    s.run(backward, nullptr);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    samples.push_back(dt);
    total += dt;
    const size_t n = samples.size();
    const double wall = std::chrono::duration<double>(Clock::now() - start).count();
    if (n >= size_t(o.repeat) && (total >= o.min_time || wall >= 4 * o.min_time)) break;
    if ((n >= 3 && total >= kBudgetSeconds) || n >= kMaxRuns) break;
  }
  Timing t;
  t.median = median_of(samples);
  t.best = *std::min_element(samples.begin(), samples.end());
  t.runs = int(samples.size());
  if (!eviction_gbs.empty()) t.eviction_gbs = median_of(eviction_gbs);
  return t;
}

// Bytes of the experts the routing touches: what a decode step must stream from memory.
int64_t active_weight_bytes(Problem& p) {
  int64_t bytes = 0;
  for (int64_t e = 0; e < p.o.experts; ++e)
    if (p.plan.load(e) > 0) bytes += int64_t(sizeof(float)) * p.config.num_parameters();
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"moe_dispatch: an MoE FFN layer (routing given) timed five ways"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // last wins
  app.add_option("--tokens", o.tokens, "tokens T")->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("--d", o.d, "model width C")->check(CLI::PositiveNumber);
  app.add_option("--hidden", o.hidden, "expert hidden width h")->check(CLI::PositiveNumber);
  app.add_option("--experts", o.experts, "experts E")->check(CLI::PositiveNumber);
  app.add_option("--topk", o.topk, "experts per token K")->check(CLI::PositiveNumber);
  app.add_option("--glu", o.glu, "1: SwiGLU experts, 0: GELU MLP experts")->check(CLI::Range(0, 1));
  app.add_option("--bias", o.bias, "1: biases on every projection")->check(CLI::Range(0, 1));
  app.add_option("--threads", o.threads, "threads for OpenMP, Eigen and OpenBLAS (0: default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--skew", o.skew, "routing distribution over experts")
      ->check(CLI::IsMember({"uniform", "zipf"}));
  app.add_option("--zipf-s", o.zipf_s, "zipf exponent: p(e) ~ 1 / (e + 1)^s");
  app.add_option("--pass", o.pass, "fwd (inference) or fwdbwd (training)")
      ->check(CLI::IsMember({"fwd", "fwdbwd"}));
  app.add_flag("--json", o.json, "one JSON object per line");
  app.add_option("--repeat", o.repeat, "minimum timed runs per strategy")
      ->check(CLI::PositiveNumber);
  app.add_option("--min-time", o.min_time, "minimum timed seconds per strategy");
  app.add_option("--warmup", o.warmup, "untimed runs before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "seed of weights, inputs and routing");
  app.add_option("--only", o.only, "comma-separated strategies to run (default: all)");
  app.add_flag("--no-verify", o.no_verify, "skip the verification (profiling only)");
  app.add_option("--tolerance", o.tolerance,
                 "verification: max |error| / max |reference| (default 1e-4, 3e-2 at bf16)");
  app.add_option("--precision", o.precision,
                 "matmul precision of minimoe's strategies: fp32, or bf16 (the loop over experts "
                 "and OpenBLAS stay fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--cold", o.cold, "1: evict the caches before every timed run")
      ->check(CLI::Range(0, 1));
  app.add_option("--bandwidth", o.bandwidth,
                 "1: measure read bandwidth and the decode bound (default: fwd with T <= 64)")
      ->check(CLI::Range(-1, 1));
  app.add_option("--flush-mb", o.flush_mb, "size of the buffer --cold and --bandwidth stream")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (o.topk > o.experts) fail(fmt::format("--topk {} exceeds --experts {}", o.topk, o.experts));
  const bool bf16 = o.precision == "bf16";
  // Rounding the operands to bf16 costs 2^-9 relative each: errors of ~1e-2 of the largest
  // output at these K.
  if (o.tolerance == 0) o.tolerance = bf16 ? 3e-2 : 1e-4;
  if (bf16) set_matmul_precision(MatmulPrecision::bf16);

#ifdef _OPENMP
  if (o.threads == 0) o.threads = omp_get_max_threads();
  omp_set_num_threads(o.threads);
#else
  o.threads = 1;
#endif
  Eigen::setNbThreads(o.threads);
#ifdef MINIMOE_HAVE_OPENBLAS
  openblas_set_num_threads(o.threads);
#endif

  Problem p = make_problem(o);
  const std::vector<int64_t> probes = probe_experts(p.plan);
  std::vector<Strategy> all = make_strategies(p, probes), strategies;
  for (auto& s : all)
    if (o.selected(s.name)) strategies.push_back(std::move(s));
  if (strategies.empty()) fail("no strategy selected by --only " + o.only);

  std::FILE* info = o.json ? stderr : stdout;  // JSON mode keeps stdout machine-readable
  int64_t min_load = o.tokens * o.topk, max_load = 0;
  for (int64_t e = 0; e < o.experts; ++e) {
    min_load = std::min<int64_t>(min_load, p.plan.load(e));
    max_load = std::max<int64_t>(max_load, p.plan.load(e));
  }
  fmt::print(info,
             "moe_dispatch: T={} C={} h={} E={} K={} glu={} bias={} skew={} pass={} threads={} "
             "precision={} ({} kernel)\n"
             "routing: {} rows, expert load min {} mean {:.1f} max {}\n",
             o.tokens, o.d, o.hidden, o.experts, o.topk, o.glu, o.bias, o.skew, o.pass, o.threads,
             o.precision, gemm_kernel<float>().name, p.plan.rows(), min_load,
             double(p.plan.rows()) / double(o.experts), max_load);
#ifdef MINIMOE_HAVE_OPENBLAS
  fmt::print(info, "openblas: {}, core {}\n", openblas_get_config(), openblas_get_corename());
#endif

  if (!o.no_verify) {
    const bool backward = o.backward();
    const Reference moe = moe_reference(p, probes, backward);
    const Reference dense = dense_reference(p, backward);
    for (const Strategy& s : strategies) {
      const std::string summary = verify(s, s.dense ? dense : moe, backward, o.tolerance);
      fmt::print(info, "verified {:<22} max rel. error:{}\n", s.name, summary);
    }
  }

  const bool measure_bandwidth =
      o.bandwidth == 1 || (o.bandwidth == -1 && !o.backward() && o.tokens <= 64);
  std::vector<float> flush;
  if (o.cold || measure_bandwidth) flush = make_buffer(o.flush_mb);

  std::vector<Timing> timings;
  for (const Strategy& s : strategies)
    timings.push_back(time_strategy(s, o, o.cold ? &flush : nullptr));

  const double flops = active_flops(o);
  double baseline = 0;
  for (size_t i = 0; i < strategies.size(); ++i)
    if (strategies[i].name == "dense_equiv(openblas)") baseline = timings[i].median;
  const FmaKernel fma = widest_fma();
  const double peak = peak_fma_gflops(o.threads, fma);
  const FmaKernel dot = widest_bf16_dot();
  const double bf16_peak = bf16 && dot.loop ? peak_fma_gflops(o.threads, dot) : 0;
  const double bandwidth = measure_bandwidth ? read_bandwidth_gbs(flush) : 0;
  const int64_t weight_bytes = active_weight_bytes(p);

  if (o.json) {
    for (size_t i = 0; i < strategies.size(); ++i) {
      const double s = timings[i].median, gbs = timings[i].eviction_gbs;
      // With --cold and the bound: the bandwidth of the moments of this strategy's runs.
      const std::string during =
          measure_bandwidth && gbs > 0
              ? fmt::format(", \"runs_read_bandwidth_gbs\": {:.6g}, \"bound_fraction\": {:.6g}",
                            gbs, double(weight_bytes) / (gbs * 1e9) / s)
              : "";
      fmt::print(
          "{{\"strategy\": \"{}\", \"pass\": \"{}\", \"tokens\": {}, \"d\": {}, \"hidden\": {}, "
          "\"experts\": {}, \"topk\": {}, \"threads\": {}, \"skew\": \"{}\", \"seconds\": {:.6g}, "
          "\"tokens_per_s\": {:.6g}, \"gflops\": {:.6g}, \"precision\": \"{}\"{}}}\n",
          strategies[i].name, o.pass, o.tokens, o.d, o.hidden, o.experts, o.topk, o.threads, o.skew,
          s, double(o.tokens) / s, flops / s / 1e9,
          runs_minimoe_products(strategies[i]) ? o.precision : "fp32", during);
    }
    if (measure_bandwidth)
      fmt::print(
          "{{\"read_bandwidth_gbs\": {:.6g}, \"active_weight_bytes\": {}, "
          "\"bandwidth_bound_seconds\": {:.6g}}}\n",
          bandwidth, weight_bytes, double(weight_bytes) / (bandwidth * 1e9));
    fmt::print("{{\"peak_fma_gflops\": {:.6g}}}\n", peak);
    if (bf16_peak > 0) fmt::print("{{\"peak_bf16_gflops\": {:.6g}}}\n", bf16_peak);
    return 0;
  }

  fmt::print("\n{:<22} {:>11} {:>11} {:>5} {:>12} {:>9} {:>6} {:>11}\n", "strategy", "median ms",
             "best ms", "runs", "tokens/s", "GFLOP/s", "%peak", "vs openblas");
  for (size_t i = 0; i < strategies.size(); ++i) {
    const Timing& t = timings[i];
    const double gflops = flops / t.median / 1e9;
    fmt::print("{:<22} {:>11.3f} {:>11.3f} {:>5} {:>12.0f} {:>9.1f} {:>5.1f}% {:>11}\n",
               strategies[i].name, t.median * 1e3, t.best * 1e3, t.runs,
               double(o.tokens) / t.median, gflops, 100 * gflops / peak,
               baseline > 0 ? fmt::format("{:.2f}x", baseline / t.median) : "-");
  }
  fmt::print(
      "\npeak FMA ({}, {} threads): {:.1f} GFLOP/s (this build's code: {}); active work: {:.3f} "
      "GFLOP per pass\n",
      fma.isa, o.threads, peak, kBuildIsa, flops / 1e9);
  if (bf16_peak > 0)
    fmt::print(
        "peak bf16 dot products ({}, {} threads): {:.1f} GFLOP/s (%peak is of the FMA one)\n",
        dot.isa, o.threads, bf16_peak);
  if (measure_bandwidth) {
    const double bound = double(weight_bytes) / (bandwidth * 1e9);
    fmt::print(
        "read bandwidth {:.1f} GB/s (best of 5 passes, after the runs); active expert weights "
        "{:.2f} MB -> bound {:.1f} us\n",
        bandwidth, double(weight_bytes) / 1e6, bound * 1e6);
    for (size_t i = 0; i < strategies.size(); ++i) {
      if (strategies[i].name != "grouped" && strategies[i].name != "loop") continue;
      const Timing& t = timings[i];
      fmt::print("  {}: {:.0f}% of the bandwidth bound", strategies[i].name,
                 100 * bound / t.median);
      if (t.eviction_gbs > 0)
        fmt::print("; {:.0f}% of the bound at the bandwidth of its evictions (median {:.1f} GB/s)",
                   100 * double(weight_bytes) / (t.eviction_gbs * 1e9) / t.median, t.eviction_gbs);
      fmt::print("{}\n", o.cold ? "" : " (warm caches: see --cold 1)");
    }
  }
  return 0;
}
