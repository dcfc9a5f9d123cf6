// The doctest main of the distributed tests: every rank of `mpirun -np N` runs every test case
// (each a collective), rank 0 reports, the other ranks print only their failures.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <minimoe/distributed/mpi.hpp>

int main(int argc, char** argv) {
  minimoe::MpiSession session(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  doctest::Context context(argc, argv);
  if (rank != 0) context.setOption("minimal", true);
  return context.run();
}
