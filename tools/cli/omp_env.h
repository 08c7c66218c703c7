// OpenMP's default busy-waiting threads steal the cores that OpenBLAS and the next parallel
// region need: on the 2-core development machine a GPT step runs 2.2x faster with
// OMP_WAIT_POLICY=PASSIVE. libgomp reads the variable only when it loads, so programs set
// it and re-execute themselves once, before anything else runs.
#pragma once
#include <unistd.h>

#include <cstdlib>

namespace pg::tools {

/// Re-executes the program with OMP_WAIT_POLICY=PASSIVE unless the user set a policy.
inline void ensure_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with the default
}

}  // namespace pg::tools
