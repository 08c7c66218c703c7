#include "autograd/batch_rows.h"

#include "core/error.h"
#include "kernels/counter_rng.h"

namespace pg {

namespace {
thread_local BatchRows* t_current = nullptr;
}  // namespace

BatchRows::BatchRows(uint64_t key, int64_t first_row)
    : key_(key), first_row_(first_row), previous_(t_current) {
  PG_CHECK(first_row >= 0, "BatchRows", "the first row must be >= 0, got ", first_row);
  t_current = this;
}

BatchRows::~BatchRows() { t_current = previous_; }

BatchRows* BatchRows::current() { return t_current; }

uint64_t BatchRows::next_key() { return counter_bits(key_, calls_++); }

}  // namespace pg
