// doctest's main for the suites that run under `mpirun -np N` (and as a world of one): the MPI
// session lives as long as the tests.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "distributed/dist.h"

int main(int argc, char** argv) {
  pg::dist::Session session;
  doctest::Context context(argc, argv);
  const int failed = context.run();
  // Every rank reports; the job fails when any rank failed.
  std::vector<double> failures{failed ? 1.0 : 0.0};
  pg::dist::all_reduce(failures);
  return failures[0] > 0 ? 1 : 0;
}
