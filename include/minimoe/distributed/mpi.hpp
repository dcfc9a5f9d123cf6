// minimoe/distributed/mpi.hpp: the ProcessGroup over MPI (built with MINIMOE_WITH_MPI).
//
//   MpiSession session(argc, argv);          // MPI_Init_thread .. MPI_Finalize
//   MpiProcessGroup world(/*timeout_seconds=*/300);
//   Trainer<float> trainer(model, data, options, &world);
//
// Every collective is non-blocking underneath, and waiting is a loop of MPI_Test with a
// watchdog: when the other ranks have not answered within the timeout (one died, or hangs),
// the wait throws DistributedError naming the rank and the exchange instead of hanging forever.
// MPI errors are returned, not fatal (MPI_ERRORS_RETURN), and thrown as DistributedError with
// MPI's own message. Only the thread that created the session calls MPI (MPI_THREAD_FUNNELED);
// OpenMP threads never do.
#pragma once

#ifndef MINIMOE_WITH_MPI
#error "minimoe/distributed/mpi.hpp needs MPI: configure with -DMINIMOE_WITH_MPI=ON"
#endif

#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>

#include "minimoe/distributed/process_group.hpp"

namespace minimoe {

// Initialises MPI for its lifetime. It finalises only on a normal exit: while an exception
// unwinds, the other ranks may be waiting in a collective that this one will never join, and
// MPI_Finalize would wait for them. A process that exits without it makes the launcher stop
// the whole job.
class MpiSession {
 public:
  MpiSession() : MpiSession(nullptr, nullptr) {}
  MpiSession(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    check<DistributedError>(
        MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
        "MPI_Init_thread failed");
    owner_ = true;
  }
  ~MpiSession() {
    if (owner_ && std::uncaught_exceptions() == 0) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

class MpiProcessGroup : public ProcessGroup {
 public:
  // A private duplicate of `comm`, so that our collectives never mix with the caller's.
  explicit MpiProcessGroup(double timeout_seconds = 300, MPI_Comm comm = MPI_COMM_WORLD)
      : timeout_seconds_(timeout_seconds) {
    check<ValueError>(timeout_seconds > 0, "MPI: the timeout must be positive, got {} s",
                      timeout_seconds);
    call(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    call(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    call(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    call(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  ~MpiProcessGroup() override {
    // Freeing waits for nothing, but must not run while an exception unwinds past requests
    // the other ranks will never complete.
    if (std::uncaught_exceptions() == 0 && pending_.empty()) MPI_Comm_free(&comm_);
  }
  MpiProcessGroup(const MpiProcessGroup&) = delete;
  MpiProcessGroup& operator=(const MpiProcessGroup&) = delete;

  using ProcessGroup::broadcast;  // of strings
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  double timeout_seconds() const { return timeout_seconds_; }
  MPI_Comm comm() const { return comm_; }

  void all_reduce_sum(double* data, int64_t n, const char* what) override {
    wait(start(data, n, MPI_DOUBLE, what));
  }
  void all_reduce_sum(int64_t* data, int64_t n, const char* what) override {
    wait(start(data, n, MPI_INT64_T, what));
  }
  void broadcast(void* data, int64_t bytes, int root, const char* what) override {
    MPI_Request r;
    call(MPI_Ibcast(data, count(bytes, what), MPI_BYTE, root, comm_, &r), "MPI_Ibcast", what);
    wait(add(r, what));
  }
  Request start_all_reduce_sum(float* data, int64_t n, const char* what) override {
    return start(data, n, MPI_FLOAT, what);
  }
  Request start_all_reduce_sum(double* data, int64_t n, const char* what) override {
    return start(data, n, MPI_DOUBLE, what);
  }

  void all_to_all(const int64_t* send, int64_t* recv, int64_t n, const char* what) override {
    MPI_Request r;
    call(MPI_Ialltoall(send, count(n, what), MPI_INT64_T, recv, count(n, what), MPI_INT64_T, comm_,
                       &r),
         "MPI_Ialltoall", what);
    wait(add(r, what));
  }
  void all_to_all_v(const float* send, const int64_t* send_rows, float* recv,
                    const int64_t* recv_rows, int64_t row, const char* what) override {
    exchange_rows(send, send_rows, recv, recv_rows, row, MPI_FLOAT, what);
  }
  void all_to_all_v(const double* send, const int64_t* send_rows, double* recv,
                    const int64_t* recv_rows, int64_t row, const char* what) override {
    exchange_rows(send, send_rows, recv, recv_rows, row, MPI_DOUBLE, what);
  }

  // Blocking (MPI has no non-blocking split): for setting up, before training starts.
  std::unique_ptr<ProcessGroup> split(int color, int key) override {
    MPI_Comm part = MPI_COMM_NULL;
    call(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
    auto group = std::make_unique<MpiProcessGroup>(timeout_seconds_, part);
    MPI_Comm_free(&part);
    return group;
  }

  bool test(Request request) override {
    const auto it = pending_.find(request);
    if (it == pending_.end()) return true;
    int done = 0;
    call(MPI_Test(&it->second.request, &done, MPI_STATUS_IGNORE), "MPI_Test", it->second.what);
    if (done) pending_.erase(it);
    return done != 0;
  }

  void wait(Request request) override {
    const auto start_time = std::chrono::steady_clock::now();
    const auto deadline = start_time + std::chrono::duration<double>(timeout_seconds_);
    // Spin briefly (collectives between busy ranks finish in microseconds), then sleep between
    // polls so that a rank waiting for a slower one leaves the core to it.
    for (int polls = 0; !test(request); ++polls) {
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
      if (std::chrono::steady_clock::now() > deadline)
        throw DistributedError(fmt::format(
            "rank {} of {}: no answer from the other ranks for {} s in {}; a rank died or hangs "
            "(the limit is --mpi-timeout)",
            rank_, size_, timeout_seconds_, pending_.at(request).what));
    }
  }

 private:
  struct Pending {
    MPI_Request request;
    const char* what;
  };

  template <typename V>
  Request start(V* data, int64_t n, MPI_Datatype type, const char* what) {
    MPI_Request r;
    call(MPI_Iallreduce(MPI_IN_PLACE, data, count(n, what), type, MPI_SUM, comm_, &r),
         "MPI_Iallreduce", what);
    return add(r, what);
  }

  // MPI counts and displacements are ints: elements, checked.
  template <typename V>
  void exchange_rows(const V* send, const int64_t* send_rows, V* recv, const int64_t* recv_rows,
                     int64_t row, MPI_Datatype type, const char* what) {
    std::vector<int> send_counts(size_), send_offsets(size_), recv_counts(size_),
        recv_offsets(size_);
    int64_t sent = 0, received = 0;
    for (int s = 0; s < size_; ++s) {
      send_offsets[s] = count(sent, what);
      recv_offsets[s] = count(received, what);
      send_counts[s] = count(send_rows[s] * row, what);
      recv_counts[s] = count(recv_rows[s] * row, what);
      sent += send_rows[s] * row;
      received += recv_rows[s] * row;
    }
    count(sent, what);
    count(received, what);
    MPI_Request r;
    call(MPI_Ialltoallv(send, send_counts.data(), send_offsets.data(), type, recv,
                        recv_counts.data(), recv_offsets.data(), type, comm_, &r),
         "MPI_Ialltoallv", what);
    wait(add(r, what));
  }

  Request add(MPI_Request r, const char* what) {
    const Request id = next_request_++;
    pending_.emplace(id, Pending{r, what});
    return id;
  }

  static int count(int64_t n, const char* what) {
    check<ValueError>(n >= 0 && n <= INT32_MAX, "MPI: {} elements in {} exceed MPI's int counts", n,
                      what);
    return static_cast<int>(n);
  }

  void call(int code, const char* function, const char* what = "setting up MPI") const {
    if (code == MPI_SUCCESS) return;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, message, &length);
    throw DistributedError(fmt::format("rank {} of {}: {} failed in {}: {}", rank_, size_, function,
                                       what, std::string(message, size_t(length))));
  }

  double timeout_seconds_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::map<Request, Pending> pending_;
  Request next_request_ = 1;
};

}  // namespace minimoe
