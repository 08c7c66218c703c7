#include "autograd/batch_rows.h"

#include "core/error.h"

namespace pg {

namespace {
thread_local BatchRows* t_current = nullptr;

// splitmix64's finaliser: keys of consecutive calls far apart.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

BatchRows::BatchRows(uint64_t key, int64_t first_row)
    : key_(key), first_row_(first_row), previous_(t_current) {
  PG_CHECK(first_row >= 0, "BatchRows", "the first row must be >= 0, got ", first_row);
  t_current = this;
}

BatchRows::~BatchRows() { t_current = previous_; }

BatchRows* BatchRows::current() { return t_current; }

uint64_t BatchRows::next_key() { return mix(key_ + 0x9e3779b97f4a7c15ULL * ++calls_); }

}  // namespace pg
