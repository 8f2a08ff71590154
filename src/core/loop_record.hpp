// LoopRecord: what one loop shares with the other threads of the process.
//
// The loop thread writes its slice state and stats with relaxed stores; the
// watchdog and the metrics collectable read them. Records are never freed:
// when a loop ends its record goes idle and the next loop reuses the lowest
// free index, so `loop` label values stay few and counters stay monotonic.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>

#include "core/log_histogram.hpp"
#include "core/wait_context.hpp"

namespace stallwatch::core {

// Stamped by the loop thread at every slice boundary; read by the watchdog.
struct alignas(64) SliceState {
  std::atomic<std::uint64_t> seq{0};       // slices begun on this loop
  std::atomic<std::uint64_t> start_ns{0};  // coarse stamp of the running slice
  std::atomic<bool> idle{true};            // parked in the kernel waiting for work
  std::atomic<std::uint64_t> fiber_id{0};  // fiber of the running slice; 0 = the loop itself
};

// Written by the loop thread only. (Slices begun = SliceState::seq.)
struct alignas(64) LoopStats {
  // Slices that end within the coarse tick they began in are not recorded
  // (no work on the switch); slice_duration_buckets() adds them to bucket 0.
  LogHistogram slice_duration;
  LogHistogram loop_lag;  // ready → running
  SingleWriterCounter fibers_spawned;
  std::atomic<std::int64_t> fibers_alive{0};
  std::atomic<std::int64_t> ready_fibers{0};
};

enum class StallKind : int { cpu = 0, blocked = 1, preempted = 2 };
inline constexpr int stall_kind_count = 3;

// Written by the watchdog thread only.
struct alignas(64) StallStats {
  SingleWriterCounter stalls[stall_kind_count];
  LogHistogram stall_duration;
  SingleWriterCounter reports;
  SingleWriterCounter reports_suppressed;
};

struct LoopRecord {
  int index = 0;
  std::atomic<bool> active{false};
  std::atomic<pid_t> tid{0};
  pthread_t thread{};
  std::atomic<std::uint64_t> threshold_ns{50'000'000};

  SliceState slice;
  LoopStats stats;
  StallStats stalls;
  WaitContext wait;  // the wait the loop thread is in (core/wait_interpose.cpp)
};

// The slice-duration histogram of record r, complete: slices that ended
// (every slice begun except the running one) minus the recorded ones are
// counted in the first bucket. Any thread.
inline void slice_duration_buckets(const LoopRecord& r, std::uint64_t (&counts)[LogHistogram::bucket_count]) {
  const bool idle = r.slice.idle.load(std::memory_order_acquire);
  const std::uint64_t begun = r.slice.seq.load(std::memory_order_acquire);
  const std::uint64_t ended = begun > 0 && !idle ? begun - 1 : begun;
  std::uint64_t recorded = 0;
  for (int i = 0; i < LogHistogram::bucket_count; ++i) {
    counts[i] = r.stats.slice_duration.count(i);
    recorded += counts[i];
  }
  if (ended > recorded) counts[0] += ended - recorded;
}

// Claims the lowest free record for the calling thread's new loop. Any thread.
LoopRecord& claim_loop_record();
// Marks the record free again. Called by the loop thread as its loop ends.
void release_loop_record(LoopRecord& record);
// Visits every record ever claimed (active or not), in index order, under the
// registry lock: keep fn short. Any thread.
void for_each_loop_record(const std::function<void(LoopRecord&)>& fn);

}  // namespace stallwatch::core
