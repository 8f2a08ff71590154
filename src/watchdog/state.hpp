// What the watchdog's three parts share: the loops it watches, the stalls it
// follows and the events waiting to be delivered.
//   sampler.cpp   the mechanism: each tick, find stalls and take samples
//                 (classification, a stack from the capture signal or from a
//                 published wait);
//   delivery.cpp  the policy: rate limit and strict mode, then names, the
//                 profile and the emitter, on a thread of its own
//                 (stallwatch-rep), so checking never waits for them;
//   lifecycle.cpp the threads: started by the first loop, stopped with the
//                 last, fork and exit handling, the symbolizer's warm-up.
// Watchdog thread and loop threads (under State::mutex). NOT async-signal-safe.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/loop_record.hpp"
#include "emit/events.hpp"
#include "watchdog/sigsafe/capture_slot.hpp"
#include "watchdog/thread_status.hpp"

namespace stallwatch::watchdog {

// A stack as captured: its pcs, or (when there are none) the reason, as the
// profile's one pseudo-frame.
struct CapturedStack {
  std::vector<std::uintptr_t> pcs;
  std::string missing;
  // pcs[0] is a return address too (a stack taken at a call), not the
  // instruction a signal interrupted.
  bool all_return_addresses = false;
};

// A stall being followed: one slice past the threshold.
struct Stall {
  std::uint64_t seq = 0;
  std::uint64_t start_ns = 0;
  std::uint64_t next_sample_age_ns = 0;
  std::uint64_t last_sample_age_ns = 0;
  int samples = 0;
  int reported = 0;
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  CapturedStack last_stack;  // of the latest sample
};

// What a tick found, waiting for names: captures are taken on time, then
// symbolized, profiled and written in order after the tick. Self-contained:
// the loop may be gone by then.
struct Event {
  enum class Kind { sample, end, message };
  Kind kind = Kind::sample;
  bool write = false;   // sample: admitted by the rate limit; end: a sample was written
  bool strict = false;  // sample: the process ends once it is written
  emit::StallSample sample;
  emit::StallEnd end;
  emit::Message message;         // kind message: a line of the watchdog's own
  CapturedStack stack;           // sample: its stack; end: the last sample's
  std::uint64_t profile_ns = 0;  // stalled time attributed to `stack`
};

// A sample whose stack was asked for and not yet answered.
struct PendingCapture {
  bool active = false;
  std::uint64_t request = 0;
  std::uint64_t sent_ns = 0;
  Event event;  // the report, without its stack
};

struct WatchedLoop {
  core::LoopRecord* record = nullptr;
  pid_t tid = 0;
  int signo = 0;
  std::uint64_t threshold_ns = 0;
  bool strict = false;
  std::uint64_t watched_since_ns = 0;  // monotonic: when loop_started handed the loop over
  std::unique_ptr<CaptureSlot> slot;
  ThreadStatus status;

  // The slice seen last tick, its fiber, and the thread's times when it was
  // first seen.
  bool seen = false;
  std::uint64_t seen_seq = 0;
  std::uint64_t seen_fiber_id = 0;
  std::uint64_t seen_at_ns = 0;
  ThreadTimes base_times;
  bool stalled = false;
  Stall stall;
  PendingCapture capture;
  bool handler_replacement_logged = false;  // the line saying so, once per loop
};

struct State {
  std::mutex lifecycle;  // loop_started / loop_stopped / fork, whole operations
  std::mutex mutex;      // the fields below
  std::condition_variable wake;       // the watchdog thread: stop, or a tick
  std::condition_variable to_deliver;  // the delivery thread: events, or stop
  std::condition_variable delivered;   // a batch of events was delivered
  std::vector<std::unique_ptr<WatchedLoop>> loops;
  std::deque<Event> pending;
  bool delivering = false;          // a batch is being delivered, outside the lock
  std::thread* thread = nullptr;    // checks; leaked on purpose in a forked child
  std::thread* delivery = nullptr;  // delivers; likewise
  bool stop = false;
  bool stop_delivery = false;  // the delivery thread ends once nothing is pending
  bool exiting = false;  // exit() began: no new watchdog thread

  std::atomic<std::uint64_t> stall_count{0};
  std::mutex last_report_mutex;
  std::string last_report;
};

State& state();

// sampler.cpp. With s.mutex held.
void check_loop(State& s, WatchedLoop& w, std::uint64_t now);
// Ends w's bookkeeping as its loop stops: the capture and stall in progress.
void retire_loop(State& s, WatchedLoop& w);

// delivery.cpp.
// Admits a finished sample under its loop's rate limit and queues it. With s.mutex held.
void queue_sample(State& s, WatchedLoop& w, Event&& e);
// The delivery thread's body: takes the pending events in batches, names and
// writes them, until s.stop_delivery and nothing is pending.
void run_delivery();
// Waits until the events of `loop` queued so far are delivered (the loop
// ends: its sink may go away). lock is s.mutex, held.
void wait_delivered(State& s, std::unique_lock<std::mutex>& lock, int loop);

}  // namespace stallwatch::watchdog
