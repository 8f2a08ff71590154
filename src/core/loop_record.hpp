// LoopRecord: what one loop shares with the other threads of the process.
//
// The loop thread writes its slice state and stats with relaxed stores; the
// watchdog and the metrics collectable read them. Records are never freed:
// when a loop ends its record goes idle and the next loop reuses the lowest
// free index, so `loop` label values stay few; the new loop counts on from
// the last one (Loop starts its slice counter at the record's), so counters
// stay monotonic.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>

#include "base/log_histogram.hpp"
#include "base/thread_state.hpp"
#include "core/wait_context.hpp"
#include "stallwatch/detail/loop_owner.hpp"

namespace stallwatch::core {

// Stamped by the loop thread at every slice boundary; read by the watchdog.
struct alignas(64) SliceState {
  std::atomic<std::uint64_t> seq{0};       // slices begun on this loop
  std::atomic<std::uint64_t> start_ns{0};  // coarse stamp of the running slice
  std::atomic<bool> idle{true};            // parked in the kernel waiting for work
  std::atomic<std::uint64_t> fiber_id{0};  // fiber of the running slice; 0 = the loop itself
  // The running slice's fiber, for its name: valid only while seq still
  // reads the same (a fiber cannot end without a switch, which moves seq).
  std::atomic<const base::FiberIdentity*> fiber{nullptr};
  std::atomic<bool> own_wait{false};       // stallwatch itself waits (OwnWait): not a stall
};

// Written by the loop thread only. (Slices begun = SliceState::seq.)
struct alignas(64) LoopStats {
  // Slices that end within the coarse tick they began in are not recorded
  // (no work on the switch); slice_duration_buckets() adds them to bucket 0.
  base::LogHistogram slice_duration;
  base::LogHistogram loop_lag;  // ready → running
  base::SingleWriterCounter fibers_spawned;
  std::atomic<std::int64_t> fibers_alive{0};
  std::atomic<std::int64_t> ready_fibers{0};
};

enum class StallKind : int { cpu = 0, blocked = 1, preempted = 2 };
inline constexpr int stall_kind_count = 3;

// Written by the watchdog thread only.
struct alignas(64) StallStats {
  base::SingleWriterCounter stalls[stall_kind_count];
  base::LogHistogram stall_duration;
  base::SingleWriterCounter reports;
  base::SingleWriterCounter reports_suppressed;
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

// The slice-duration histogram of record r, complete, and its count equal
// to the slices begun (stallwatch_slices_total). Slices that ended (every
// slice begun but the running one) and were not recorded were shorter than a
// coarse tick: they are counted in the first bucket. The running slice is
// counted in +Inf alone until it ends: its length is not known yet, and
// moving it later into a finite bucket only raises that bucket's cumulative
// count. The recorded buckets are read before the slice counter (a slice is
// recorded as it ends, before the next one is counted; the loop's release
// fence in end_slice pairs with the acquire fence here), so the finite
// buckets never sum past the count. Returns the histogram's count, the
// slices begun. Any thread.
inline std::uint64_t slice_duration_buckets(const LoopRecord& r,
                                            std::uint64_t (&counts)[base::LogHistogram::bucket_count]) {
  std::uint64_t recorded = 0;
  for (int i = 0; i < base::LogHistogram::bucket_count; ++i) {
    counts[i] = r.stats.slice_duration.count(i);
    recorded += counts[i];
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // the counts above, then the counter
  const std::uint64_t begun = r.slice.seq.load(std::memory_order_acquire);
  const bool idle = r.slice.idle.load(std::memory_order_acquire);
  const std::uint64_t ended = begun > 0 && !idle ? begun - 1 : begun;
  if (ended > recorded) {
    counts[0] += ended - recorded;
    recorded = ended;
  }
  if (begun > recorded) counts[base::LogHistogram::bucket_count - 1] += begun - recorded;
  return begun > recorded ? begun : recorded;
}

// The stall-duration histogram of record r, its count equal to the stalls
// begun (stallwatch_stalls_total summed over kinds): a stall is counted as
// it begins and its length recorded as it ends, so the stalls in progress
// are counted in +Inf alone until then. Returns the stalls begun, and their
// split by kind in `by_kind`. Any thread.
inline std::uint64_t stall_duration_buckets(const LoopRecord& r,
                                            std::uint64_t (&counts)[base::LogHistogram::bucket_count],
                                            std::uint64_t (&by_kind)[stall_kind_count]) {
  std::uint64_t recorded = 0;
  for (int i = 0; i < base::LogHistogram::bucket_count; ++i) {
    counts[i] = r.stalls.stall_duration.count(i);
    recorded += counts[i];
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // the lengths above, then the counts of stalls begun
  std::uint64_t begun = 0;
  for (int kind = 0; kind < stall_kind_count; ++kind) {
    by_kind[kind] = r.stalls.stalls[kind].get();
    begun += by_kind[kind];
  }
  if (begun > recorded) counts[base::LogHistogram::bucket_count - 1] += begun - recorded;
  return begun;
}

// The record of the loop the calling thread runs, or null: the identity the
// loop-bound primitives compare (stallwatch/detail/loop_owner.hpp), set by
// the loop's thread binding. initial-exec TLS: any code on the thread,
// handlers and interposers included, may read it.
inline LoopRecord* current_loop_record() {
  return static_cast<LoopRecord*>(const_cast<void*>(detail::tls_current_loop));
}

// While stallwatch itself waits on a loop thread (strict mode's last report
// reaching its sink), the watchdog sees no stall: the wait is stallwatch's,
// not the application's. On the loop thread; without a loop, does nothing.
class OwnWait {
 public:
  OwnWait() : record_(current_loop_record()) {
    if (record_ != nullptr) record_->slice.own_wait.store(true, std::memory_order_release);
  }
  ~OwnWait() {
    if (record_ != nullptr) record_->slice.own_wait.store(false, std::memory_order_release);
  }
  OwnWait(const OwnWait&) = delete;
  OwnWait& operator=(const OwnWait&) = delete;

 private:
  LoopRecord* record_;
};

// Claims the lowest free record for the calling thread's new loop, or the
// record reserved for this thread by claim_reserved_next. Any thread.
LoopRecord& claim_loop_record();
// Reserves the first run of n consecutive free records (run_loops' n loops)
// and returns the index of its first; claim_loop_record passes them over
// until claimed through claim_reserved_next. Any thread.
int reserve_loop_records(int n);
// The calling thread's next claim_loop_record takes the reserved record of
// this index. Any thread.
void claim_reserved_next(int index);
// On the thread given index by claim_reserved_next, after its loop: gives
// the record back if the loop never claimed it (it failed to start).
void end_reservation(int index);
// Gives back a reserved record whose thread never started. Any thread.
void cancel_reservation(int index);
// Marks the record free again. Called by the loop thread as its loop ends.
void release_loop_record(LoopRecord& record);
// Visits every record ever claimed (active or not), in index order, under the
// registry lock: keep fn short. Any thread.
void for_each_loop_record(const std::function<void(LoopRecord&)>& fn);

}  // namespace stallwatch::core
