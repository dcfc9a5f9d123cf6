// Fits a 2-layer MLP to y = sin(3x) with minimoe's autograd and AdamW; prints a falling loss.
#include <cmath>
#include <cstdio>

#include <minimoe/minimoe.hpp>

using namespace minimoe;

int main() {
  Rng rng(0);
  const int64_t N = 256;
  Tensor<float> x({N, 1}), y({N, 1});
  for (int64_t i = 0; i < N; ++i) {
    x.data()[i] = float(rng.uniform(-1.0, 1.0));
    y.data()[i] = std::sin(3.0f * x.data()[i]);
  }

  Linear<float> fc1(1, 64, true, rng, 1.0), fc2(64, 1, true, rng, 0.1);
  auto model = [&](const Var<float>& input) { return fc2(tanh(fc1(input))); };
  std::vector<std::pair<std::string, Var<float>>> params;
  for (auto& p : named_parameters(fc1)) params.emplace_back("fc1." + p.first, p.second);
  for (auto& p : named_parameters(fc2)) params.emplace_back("fc2." + p.first, p.second);
  AdamWConfig config;
  config.weight_decay = 0.0;
  AdamW<float> optimizer(params, config);

  for (int step = 0; step <= 500; ++step) {
    Var<float> error = model(Var<float>(x)) - Var<float>(y);
    Var<float> loss = mean(error * error);
    loss.backward();
    optimizer.step(1e-2);
    optimizer.zero_grad();
    if (step % 50 == 0) std::printf("step %3d  mse %.5f\n", step, double(loss.item()));
  }
  return 0;
}
