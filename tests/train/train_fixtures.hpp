// Small models and datasets for the training tests: a model of a few thousand parameters and
// token files of generated text, so that every test runs in milliseconds.
#pragma once

#include <string>
#include <vector>

#include <minimoe/data/dataset.hpp>
#include <minimoe/models/gpt.hpp>

#include "../data/temp_dir.hpp"

namespace minimoe::test {

inline GPTConfig small_config() {
  GPTConfig c;
  c.vocab_size = 32;
  c.context_length = 16;
  c.n_layers = 2;
  c.d_model = 16;
  c.n_heads = 2;
  c.ffn_hidden = 32;
  c.n_experts = 4;
  c.top_k = 2;
  c.validate();
  return c;
}

// Two domains of patterned token sequences a model can learn quickly: counting up by one, and
// a repeated short phrase.
inline std::vector<Domain> small_domains(const TempDir& dir) {
  std::vector<int32_t> counting, phrase;
  for (int i = 0; i < 4000; ++i) counting.push_back(i % 32);
  const int32_t words[] = {3, 17, 5, 9, 30, 1, 1, 22};
  for (int i = 0; i < 4000; ++i) phrase.push_back(words[i % 8]);
  write_token_file(dir.file("counting.tokens"), counting, 32);
  write_token_file(dir.file("phrase.tokens"), phrase, 32);
  return {{"counting", dir.file("counting.tokens"), 1.0},
          {"phrase", dir.file("phrase.tokens"), 1.0}};
}

inline TrainOptions small_options() {
  TrainOptions o;
  o.batch_size = 4;
  o.steps = 40;
  o.lr = 1e-2;
  o.min_lr = 1e-3;
  o.warmup = 5;
  o.eval_batches = 2;
  return o;
}

}  // namespace minimoe::test
