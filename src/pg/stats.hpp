// The client's numbers per loop: queries and their durations, pool
// connections open and in use, waits for a connection. Written by the loop
// thread with relaxed stores (single writer), read at scrape time by the
// metrics source that pg registers (stats.cpp). Never freed: counters only go
// up across loops that end and reuse an index.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "base/log_histogram.hpp"

namespace stallwatch::inline v1::pg::detail {

struct LoopPgStats {
  base::SingleWriterCounter queries;  // queries answered: a result, an error, a deadline
  base::LogHistogram query_duration;  // sent → answered (or given up)
  base::SingleWriterCounter pool_waits;  // a pool query found every connection busy
  std::atomic<std::int64_t> pool_size{0};    // pool connections open, all pools of the loop
  std::atomic<std::int64_t> pool_in_use{0};  // of them, with a query in flight

  void add_pool_size(std::int64_t d) { pool_size.store(pool_size.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
  void add_pool_in_use(std::int64_t d) { pool_in_use.store(pool_in_use.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
};

// The calling loop's stats, made on first use. Loop thread.
LoopPgStats& this_loop_pg_stats();

// Calls fn(loop index, stats) for every loop that used the client. Any thread.
void for_each_loop_pg_stats(const std::function<void(int, const LoopPgStats&)>& fn);

}  // namespace stallwatch::inline v1::pg::detail
