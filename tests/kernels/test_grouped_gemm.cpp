#include <minimoe/kernels/grouped_gemm.hpp>
#include <minimoe/tensor/tensor.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

// A random problem: group sizes (zeros included), a gather index into `sources` rows.
struct Problem {
  std::vector<int32_t> offsets{0};
  std::vector<int32_t> index;
  int64_t sources = 0;
};

Problem make_problem(const std::vector<int32_t>& sizes, int64_t sources, Rng& rng) {
  Problem p;
  p.sources = sources;
  for (int32_t s : sizes) p.offsets.push_back(p.offsets.back() + s);
  for (int32_t r = 0; r < p.offsets.back(); ++r)
    p.index.push_back(static_cast<int32_t>(rng.below(uint64_t(sources))));
  return p;
}

// The same products as plain loops over rows.
template <typename T>
Tensor<T> naive_matmul(const Problem& p, const Tensor<T>& a, bool gather,
                       const std::vector<Tensor<T>>& w, bool transposed, int64_t k, int64_t n) {
  Tensor<T> c({p.offsets.back(), n});
  for (size_t g = 0; g + 1 < p.offsets.size(); ++g)
    for (int64_t r = p.offsets[g]; r < p.offsets[g + 1]; ++r)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < k; ++i) {
          const T x = a.data()[(gather ? p.index[r] : r) * k + i];
          acc += double(x) * double(transposed ? w[g].data()[j * k + i] : w[g].data()[i * n + j]);
        }
        c.data()[r * n + j] = T(acc);
      }
  return c;
}

template <typename T>
void check_matmul(const std::vector<int32_t>& sizes, int64_t k, int64_t n, bool gather,
                  bool transposed, double tol) {
  CAPTURE(sizes.size());
  CAPTURE(k);
  CAPTURE(n);
  CAPTURE(gather);
  CAPTURE(transposed);
  Rng rng(sizes.size() * 31 + k * 7 + n);
  const Problem p = make_problem(sizes, 23, rng);
  const int64_t rows = p.offsets.back();
  const Tensor<T> a = Tensor<T>::randn({gather ? p.sources : rows, k}, rng);
  std::vector<Tensor<T>> w;
  std::vector<const T*> ptrs;
  for (size_t g = 0; g < sizes.size(); ++g) {
    w.push_back(Tensor<T>::randn(transposed ? Shape{n, k} : Shape{k, n}, rng));
    ptrs.push_back(w.back().data());
  }
  Tensor<T> c({rows, n}, T(777));  // overwritten, whatever it held
  const RowGroups groups{p.offsets.data(), static_cast<int64_t>(sizes.size())};
  grouped_matmul(groups, a.data(), k, gather ? p.index.data() : nullptr, ptrs.data(), transposed, k,
                 n, c.data(), n);
  test::check_close(c, naive_matmul(p, a, gather, w, transposed, k, n), tol);
}

template <typename T>
void check_weight_grad(const std::vector<int32_t>& sizes, int64_t n, int64_t k, bool gather,
                       double tol) {
  CAPTURE(sizes.size());
  CAPTURE(n);
  CAPTURE(k);
  Rng rng(sizes.size() * 13 + n * 5 + k);
  const Problem p = make_problem(sizes, 17, rng);
  const int64_t rows = p.offsets.back();
  const Tensor<T> d = Tensor<T>::randn({rows, n}, rng);
  const Tensor<T> x = Tensor<T>::randn({gather ? p.sources : rows, k}, rng);
  std::vector<Tensor<T>> grads;
  std::vector<T*> ptrs;
  for (size_t g = 0; g < sizes.size(); ++g) {
    grads.push_back(Tensor<T>({n, k}, T(1)));  // accumulates into what is there
    ptrs.push_back(grads.back().data());
  }
  const RowGroups groups{p.offsets.data(), static_cast<int64_t>(sizes.size())};
  grouped_weight_grad(groups, d.data(), n, n, x.data(), k, gather ? p.index.data() : nullptr, k,
                      ptrs.data());
  for (size_t g = 0; g < sizes.size(); ++g) {
    Tensor<T> expected({n, k}, T(1));
    for (int64_t r = p.offsets[g]; r < p.offsets[g + 1]; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j)
          expected.data()[i * k + j] +=
              d.data()[r * n + i] * x.data()[(gather ? p.index[r] : r) * k + j];
    test::check_close(grads[g], expected, tol);
  }
}

}  // namespace

TEST_CASE("grouped_matmul matches a loop over rows") {
  // Empty groups, one group with everything, odd sizes, tiles split along n.
  const std::vector<std::vector<int32_t>> shapes = {{5, 0, 7, 1},           {0, 0, 300}, {1},
                                                    {97, 3, 0, 130, 2, 64}, {0},         {}};
  for (const auto& sizes : shapes)
    for (bool gather : {false, true})
      for (bool transposed : {false, true}) {
        check_matmul<double>(sizes, 13, 9, gather, transposed, 1e-12);
        check_matmul<float>(sizes, 33, 70, gather, transposed, 1e-4);
      }
  check_matmul<float>({3, 2}, 256, 1030, true, true, 1e-3);  // few rows: columns split
}

TEST_CASE("grouped_weight_grad matches a loop over rows and accumulates") {
  const std::vector<std::vector<int32_t>> shapes = {{5, 0, 7, 1}, {0, 0, 300}, {1}, {200, 1}};
  for (const auto& sizes : shapes)
    for (bool gather : {false, true}) {
      check_weight_grad<double>(sizes, 11, 6, gather, 1e-11);
      check_weight_grad<float>(sizes, 40, 33, gather, 1e-3);
    }
}
