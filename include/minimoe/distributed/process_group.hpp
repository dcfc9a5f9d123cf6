// minimoe/distributed/process_group.hpp: the collectives distributed training uses, as an
// interface that knows nothing of MPI.
//
//   MpiProcessGroup world;                       // distributed/mpi.hpp, MINIMOE_WITH_MPI
//   Trainer<float> trainer(model, data, options, &world);
//
// The trainer and the gradient reducer are written against this interface, so the library and
// everything but the MPI binding build without MPI. Every call is collective: all ranks of the
// group make the same calls in the same order. `what` names the exchange in the error a rank
// raises when the others do not answer in time (a rank died or hangs).
//
// Expert parallelism (distributed/expert_parallel.hpp) adds the all-to-alls that send each
// routed row to the rank owning its expert, and split() to form the groups of ranks that share
// one copy of the experts.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "minimoe/error.hpp"

namespace minimoe {

// A collective failed or timed out: another rank died, hangs, or the transport broke.
struct DistributedError : Error {
  using Error::Error;
};

// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI).
inline bool launched_by_mpi() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(variable) != nullptr) return true;
  return false;
}

class ProcessGroup {
 public:
  // A started non-blocking collective.
  using Request = int64_t;

  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place: data[i] = the sum of data[i] over the ranks.
  virtual void all_reduce_sum(double* data, int64_t n, const char* what) = 0;
  virtual void all_reduce_sum(int64_t* data, int64_t n, const char* what) = 0;
  // The root's bytes to every rank.
  virtual void broadcast(void* data, int64_t bytes, int root, const char* what) = 0;

  // Non-blocking in-place sums; data must stay untouched until wait() returns.
  virtual Request start_all_reduce_sum(float* data, int64_t n, const char* what) = 0;
  virtual Request start_all_reduce_sum(double* data, int64_t n, const char* what) = 0;
  // Advances the started collectives (MPI moves data only inside its calls) and tells whether
  // this one has finished.
  virtual bool test(Request request) = 0;
  virtual void wait(Request request) = 0;

  // send[s n, (s + 1) n) goes to rank s; recv[s n, (s + 1) n) comes from rank s.
  virtual void all_to_all(const int64_t* send, int64_t* recv, int64_t n, const char* what) = 0;
  // Rows of `row` values: send_rows[s] rows to rank s, taken from `send` one rank after
  // another, and recv_rows[s] rows from rank s, placed in `recv` likewise. Any count may be 0.
  virtual void all_to_all_v(const float* send, const int64_t* send_rows, float* recv,
                            const int64_t* recv_rows, int64_t row, const char* what) = 0;
  virtual void all_to_all_v(const double* send, const int64_t* send_rows, double* recv,
                            const int64_t* recv_rows, int64_t row, const char* what) = 0;

  // A group of the ranks that pass the same color, ranked by key (then by rank here). Every
  // rank of this group calls it.
  virtual std::unique_ptr<ProcessGroup> split(int color, int key) = 0;

  bool is_root() const { return rank() == 0; }

  // The root's string to every rank.
  void broadcast(std::string& s, int root, const char* what) {
    int64_t length = static_cast<int64_t>(s.size());
    broadcast(&length, sizeof(length), root, what);
    s.resize(static_cast<size_t>(length));
    if (length > 0) broadcast(s.data(), length, root, what);
  }

  // Whether `flag` is true on any rank.
  bool any(bool flag, const char* what) {
    int64_t count = flag ? 1 : 0;
    all_reduce_sum(&count, 1, what);
    return count > 0;
  }
};

}  // namespace minimoe
