// Prints every preset's architecture and its total and active (per token) parameter counts,
// counted from the module tree and checked against the config's closed form.
#include <cstdio>

#include <minimoe/minimoe.hpp>

using namespace minimoe;

int main() {
  std::printf("%-8s %6s %5s %6s %4s %7s %7s %12s %12s\n", "preset", "vocab", "ctx", "layers", "d",
              "experts", "top_k", "total", "active");
  for (const std::string& name : preset_names()) {
    const GPTConfig c = preset(name);
    GPT<float> model(c, /*seed=*/0);
    const int64_t total = num_parameters(model), active = model.num_active_parameters();
    if (total != c.num_parameters() || active != c.num_active_parameters()) {
      std::fprintf(stderr, "%s: module tree and closed form disagree\n", name.c_str());
      return 1;
    }
    const std::string top_k = c.n_experts > 0 ? std::to_string(c.top_k) : "-";
    std::printf("%-8s %6lld %5lld %6lld %4lld %7lld %7s %12lld %12lld  (%.1fM / %.1fM)\n",
                name.c_str(), (long long)c.vocab_size, (long long)c.context_length,
                (long long)c.n_layers, (long long)c.d_model, (long long)c.n_experts, top_k.c_str(),
                (long long)total, (long long)active, total / 1e6, active / 1e6);
  }
  return 0;
}
