// Stats of the in_thread offload pool, for the metrics collectable.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/log_histogram.hpp"

namespace stallwatch::pool {

struct PoolStatsView {
  std::int64_t pending = 0;  // queued or running calls
  std::uint64_t duration_buckets[base::LogHistogram::bucket_count] = {};  // non-cumulative
  std::uint64_t duration_sum_ns = 0;
};

// A snapshot. Any thread.
PoolStatsView pool_stats();

}  // namespace stallwatch::pool
