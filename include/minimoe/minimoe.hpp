// minimoe/minimoe.hpp: everything, for users who want one include.
//
//   #include <minimoe/minimoe.hpp>
//   using namespace minimoe;
//   GPT<float> model(preset("tiny"), /*seed=*/1);
//
// The library is layered; each layer only includes the ones above it in this list, so a
// translation unit that needs less can include less:
//   tensor/    storage, shape, broadcasting, random numbers
//   autograd/  Var, the backward pass, gradcheck
//   ops/       differentiable functions (forward + backward)
//   kernels/   raw-pointer compute with no autograd (routing plans, grouped GEMM)
//   nn/        modules: Linear, norms, Attention, Router, Expert, MoELayer
//   models/    GPTConfig, presets, GPT
//   optim/     AdamW
//   io/        safetensors and model files
//   text/      tokenizers: bytes, byte-level BPE (training, files), GPT-2's vocabulary
//   data/      token files, the mixed multi-domain dataset, corpus preparation
//   distributed/ data parallelism: gradient buckets, replicas; over MPI with minimoe::mpi
//   train/     options, schedules, the trainer, checkpoints, metrics, progress, plots
//   generate/  KV-cache decoding, sampling and logits processors, stop strings, chat transcripts
//   serve/     the OpenAI-compatible completion API, without the HTTP
//   analysis/  expert routing per domain
//   plot/      SVG line charts and heatmaps
#pragma once

#include "minimoe/error.hpp"
#include "minimoe/tensor/broadcast.hpp"
#include "minimoe/tensor/random.hpp"
#include "minimoe/tensor/shape.hpp"
#include "minimoe/tensor/tensor.hpp"

#include "minimoe/autograd/gradcheck.hpp"
#include "minimoe/autograd/profiler.hpp"
#include "minimoe/autograd/var.hpp"

#include "minimoe/ops/attention.hpp"
#include "minimoe/ops/dropout.hpp"
#include "minimoe/ops/elementwise.hpp"
#include "minimoe/ops/embedding.hpp"
#include "minimoe/ops/gather.hpp"
#include "minimoe/ops/linear_cross_entropy.hpp"
#include "minimoe/ops/logsumexp.hpp"
#include "minimoe/ops/loss.hpp"
#include "minimoe/ops/matmul.hpp"
#include "minimoe/ops/norm.hpp"
#include "minimoe/ops/pointwise.hpp"
#include "minimoe/ops/reduce.hpp"
#include "minimoe/ops/rope.hpp"
#include "minimoe/ops/shape.hpp"
#include "minimoe/ops/softmax.hpp"

#include "minimoe/kernels/activation.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"
#include "minimoe/kernels/routing.hpp"
#include "minimoe/kernels/softmax.hpp"
#include "minimoe/kernels/vector_math.hpp"

#include "minimoe/nn/attention.hpp"
#include "minimoe/nn/dropout.hpp"
#include "minimoe/nn/embedding.hpp"
#include "minimoe/nn/expert.hpp"
#include "minimoe/nn/expert_dispatch.hpp"
#include "minimoe/nn/init.hpp"
#include "minimoe/nn/linear.hpp"
#include "minimoe/nn/module.hpp"
#include "minimoe/nn/moe_layer.hpp"
#include "minimoe/nn/norm.hpp"
#include "minimoe/nn/router.hpp"

#include "minimoe/models/config.hpp"
#include "minimoe/models/gpt.hpp"
#include "minimoe/models/presets.hpp"
#include "minimoe/models/quantize.hpp"

#include "minimoe/optim/adamw.hpp"

#include "minimoe/io/atomic_file.hpp"
#include "minimoe/io/model_file.hpp"
#include "minimoe/io/safetensors.hpp"

#include "minimoe/text/bpe.hpp"
#include "minimoe/text/bpe_file.hpp"
#include "minimoe/text/bpe_train.hpp"
#include "minimoe/text/byte_tokenizer.hpp"
#include "minimoe/text/char_class.hpp"
#include "minimoe/text/gpt2_vocab.hpp"
#include "minimoe/text/pretokenize.hpp"
#include "minimoe/text/special_tokens.hpp"
#include "minimoe/text/tokenizer.hpp"
#include "minimoe/text/utf8.hpp"

#include "minimoe/data/dataset.hpp"
#include "minimoe/data/prepare.hpp"
#include "minimoe/data/token_file.hpp"

#include "minimoe/distributed/data_parallel.hpp"
#include "minimoe/distributed/gradient_reducer.hpp"
#include "minimoe/distributed/process_group.hpp"
#ifdef MINIMOE_WITH_MPI  // minimoe::mpi
#include "minimoe/distributed/mpi.hpp"
#endif

#include "minimoe/optim/clip.hpp"
#include "minimoe/train/checkpoint.hpp"
#include "minimoe/train/compare.hpp"
#include "minimoe/train/metrics.hpp"
#include "minimoe/train/options.hpp"
#include "minimoe/train/plots.hpp"
#include "minimoe/train/profile.hpp"
#include "minimoe/train/progress.hpp"
#include "minimoe/train/schedule.hpp"
#include "minimoe/train/trainer.hpp"

#include "minimoe/generate/chat.hpp"
#include "minimoe/generate/generate.hpp"
#include "minimoe/generate/logits_processors.hpp"
#include "minimoe/generate/sampling.hpp"
#include "minimoe/generate/text_generation.hpp"

#include "minimoe/serve/openai_api.hpp"

#include "minimoe/analysis/routing_analysis.hpp"
#include "minimoe/plot/svg.hpp"
