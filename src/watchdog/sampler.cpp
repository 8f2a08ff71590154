// The watchdog's mechanism: each tick, look at every loop's slice counter; a
// slice older than the threshold is a stall, sampled at T, 2T, 4T … until it
// ends. A sample classifies the thread (/proc) and takes its stack: from a
// wait the thread published as it began (no signal, which would cut the wait
// short), else from the capture signal's handler on the loop thread.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <utility>

#include "base/coarse_clock.hpp"
#include "base/hash.hpp"
#include "base/tracepoint.hpp"
#include "watchdog/capture_signal.hpp"
#include "watchdog/state.hpp"
#include "watchdog/wait_capture.hpp"

namespace stallwatch::watchdog {
namespace {

// How long a stalled thread may take to answer the capture signal: it runs
// the handler only once the OS gives it a CPU, which on a loaded machine
// takes a while. Waiting is asynchronous (the ticks go on), except for
// quick_wait_ns, which catches the usual answer at once.
std::uint64_t capture_timeout_ns(const WatchedLoop& w) {
  return std::clamp<std::uint64_t>(w.threshold_ns, 250'000'000, 2'000'000'000);
}
constexpr std::uint64_t quick_wait_ns = 1'000'000;

std::uint64_t stack_hash(const std::uintptr_t* pcs, int depth) {
  base::Fnv1a hash;
  for (int i = 0; i < depth; ++i) hash.add(pcs[i]);
  return hash.value();
}

const char* kind_name(core::StallKind kind) {
  switch (kind) {
    case core::StallKind::cpu:
      return "on-cpu";
    case core::StallKind::blocked:
      return "blocked";
    case core::StallKind::preempted:
      return "preempted";
  }
  return "on-cpu";
}

// What a report says of its stack: the JSON field, the text line's note and
// the profile's pseudo-frame when there is none.
struct CaptureWords {
  const char* field;
  const char* note;
  const char* missing;
};

CaptureWords capture_words(CaptureOutcome outcome, bool timed_out) {
  if (timed_out) {
    return {"timeout", "the thread did not answer the capture signal in time", "[stack not captured: timeout]"};
  }
  switch (outcome) {
    case CaptureOutcome::captured:
      return {"ok", "", ""};
    case CaptureOutcome::in_switch:
      return {"in_switch", "a context switch was in progress", "[stack not captured: context switch]"};
    case CaptureOutcome::exception:
      return {"exception", "an exception was unwinding", "[stack not captured: exception unwinding]"};
    case CaptureOutcome::unwind_failed:
      return {"unwind_failed", "the unwinder could not start", "[stack not captured]"};
  }
  return {"ok", "", ""};
}

void set_capture(Event& e, CaptureOutcome outcome, bool timed_out) {
  const CaptureWords words = capture_words(outcome, timed_out);
  e.sample.capture = words.field;
  e.sample.capture_note = words.note;
  e.stack.missing = words.missing;
}

// True when the capture signal's handler is no longer stallwatch's: the
// sample says so instead of a stack, and the loop's log gets one line saying
// it plainly the first time.
bool note_handler_replaced(State& s, WatchedLoop& w, Event& e) {
  std::string replacement = capture_handler_replacement(w.signo);
  if (replacement.empty()) return false;
  if (!w.handler_replacement_logged) {
    w.handler_replacement_logged = true;
    Event line;
    line.kind = Event::Kind::message;
    line.message = {w.record->index, "capture_handler_replaced",
                    "loop " + std::to_string(w.record->index) + ": " + replacement +
                        ". The watchdog sends it no more captures, so this loop's stalls are reported without "
                        "their stacks; leave the signal to stallwatch, or give stallwatch another with "
                        "STALLWATCH_SIGNAL",
                    {}};
    s.pending.push_back(std::move(line));
  }
  e.sample.capture = "handler_replaced";
  e.sample.capture_note = std::move(replacement);
  e.stack.missing = "[stack not captured: capture signal handler replaced]";
  return true;
}

// The slice ended (or the loop went idle or stopped): account the stall and
// queue its `stall ended` line, written if any of its samples was.
void finish_stall(State& s, WatchedLoop& w, std::uint64_t end_ns) {
  Stall& st = w.stall;
  w.stalled = false;
  const std::uint64_t wall = end_ns > st.start_ns ? end_ns - st.start_ns : 0;
  ThreadTimes now_times;
  const bool have_times = w.status.read_times(now_times);
  // A scrape that sees this length recorded also sees the stall counted
  // (stall_duration_buckets).
  std::atomic_thread_fence(std::memory_order_release);
  w.record->stalls.stall_duration.record(wall);
  STALLWATCH_TRACE3(stall_end, w.record->index, st.fiber_id, wall);

  Event e;
  e.kind = Event::Kind::end;
  e.write = st.reported > 0;
  e.end.loop = w.record->index;
  e.end.fiber = {st.fiber_id, st.fiber_name};
  e.end.wall_ns = wall;
  e.end.cpu_ns = have_times && now_times.cpu_ns > w.base_times.cpu_ns ? now_times.cpu_ns - w.base_times.cpu_ns : 0;
  e.end.samples = st.samples;
  e.stack = std::move(st.last_stack);
  e.profile_ns = wall > st.last_sample_age_ns ? wall - st.last_sample_age_ns : 0;
  s.pending.push_back(std::move(e));
}

// Finishes the pending sample with the handler's answer (or without, after
// the timeout) and queues it.
void complete_sample(State& s, WatchedLoop& w, bool timed_out) {
  Stall& st = w.stall;
  PendingCapture& c = w.capture;
  c.active = false;
  Event e = std::move(c.event);
  emit::StallSample& sample = e.sample;
  const CaptureSlot& slot = *w.slot;
  if (!timed_out && slot.slice_seq != st.seq) timed_out = true;  // answered from a later slice
  if (!timed_out) {
    sample.fiber = {slot.fiber_id, std::string(slot.fiber_name, slot.fiber_name_len)};
    e.stack.pcs.assign(slot.pcs, slot.pcs + slot.depth);
    sample.stack_id = stack_hash(slot.pcs, slot.depth);
    if (st.fiber_name.empty()) st.fiber_name = sample.fiber.name;
  }
  set_capture(e, timed_out ? CaptureOutcome::captured : slot.outcome, timed_out);
  // Unanswered: a handler installed over ours since the request would have swallowed it.
  if (timed_out) note_handler_replaced(s, w, e);
  if (e.stack.pcs.empty() && e.stack.missing.empty()) e.stack.missing = "[stack not captured]";
  queue_sample(s, w, std::move(e));
}

// A stall in a wait that the thread published as it began (sleep, poll,
// select, epoll_wait…: core/wait_interpose.cpp): the sample unwinds from the
// registers saved at the call, on this thread, and the loop thread gets no
// signal, which would end its wait early with EINTR. False when the thread
// is not in such a wait of the stalled slice. /proc is not asked: a thread
// whose wait just timed out but that has not run since reads as "running",
// and a signal then still ends the wait with EINTR; the published wait holds
// until the thread leaves the interposer.
bool take_wait_stack(WatchedLoop& w, Event& e) {
  PublishedWaitStack wait;
  if (!unwind_published_wait(*w.record, w.stall.seq, wait)) return false;
  emit::StallSample& sample = e.sample;
  sample.fiber = {wait.fiber_id, wait.fiber_name};
  e.stack.pcs = std::move(wait.pcs);
  e.stack.all_return_addresses = true;
  sample.stack_id = stack_hash(e.stack.pcs.data(), static_cast<int>(e.stack.pcs.size()));
  if (w.stall.fiber_name.empty()) w.stall.fiber_name = sample.fiber.name;
  set_capture(e, CaptureOutcome::captured, false);
  if (e.stack.pcs.empty()) e.stack.missing = "[stack not captured]";
  return true;
}

// The name of the fiber whose slice `seq` is, read from the loop's record
// while that slice lasts: a sample has it whether or not the capture signal
// answers (a replaced handler, a timeout). Empty if the slice ended meanwhile.
std::string running_fiber_name(const core::SliceState& slice, std::uint64_t seq) {
  if (slice.seq.load(std::memory_order_acquire) != seq) return {};
  const base::FiberIdentity* fiber = slice.fiber.load(std::memory_order_acquire);  // pairs with begin_slice
  if (fiber == nullptr || fiber->name == nullptr) return {};
  std::string name(fiber->name, std::min(fiber->name_len, CaptureSlot::max_name));
  // The copy, then the check that the fiber (and so its name) was there throughout.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (slice.seq.load(std::memory_order_relaxed) != seq) return {};
  return name;
}

// A thread read as runnable, with little CPU used in its stall, either waits
// for a CPU or has just woken from a wait it is about to go back to (a lock
// polled with sleeps, as SQLite's busy handler does). Looks again for up to
// 2 ms, so that such a thread is named blocked in its wait rather than
// preempted: the only wait on the checking thread, and only for this case.
void look_again_if_runnable(const WatchedLoop& w, std::uint64_t wall_ns, SyscallState& sys, ThreadTimes& times) {
  const auto little_cpu = [&] { return times.cpu_ns < w.base_times.cpu_ns + wall_ns / 2; };
  if (sys.where != SyscallState::Where::running || !little_cpu()) return;
  for (int look = 0; look < 10; ++look) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    SyscallState again;
    if (!w.status.read_syscall(again)) return;
    if (again.where == SyscallState::Where::in_syscall) {
      sys = again;
      w.status.read_times(times);
      return;
    }
  }
}

// The interval a sample classifies over, from the tick that first saw the
// slice. A slice first seen on this very tick (the watchdog itself was kept
// from ticking for most of T, as on a loaded machine) has none yet: 0 ns of
// wall time made a thread that got no CPU at all read "on-cpu (cpu 0.0 ms)".
// It then gets one of its own: the thread's times now, and again after 1 ms,
// a wait as short as look_again_if_runnable's and as rare.
std::uint64_t classification_interval_ns(WatchedLoop& w, std::uint64_t now) {
  if (now != w.seen_at_ns) return now - w.seen_at_ns;
  w.status.read_times(w.base_times);
  const std::uint64_t from = base::monotonic_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return base::monotonic_ns() - from;
}

// True while the slice `seq` still runs (not ended, not idle, not in an OwnWait).
bool slice_still_runs(const core::SliceState& slice, std::uint64_t seq) {
  return slice.seq.load(std::memory_order_acquire) == seq && !slice.idle.load(std::memory_order_acquire) &&
         !slice.own_wait.load(std::memory_order_acquire);
}

// Starts one sample of w's stall: classify the thread now, then take its
// stack. The handler's answer usually comes within microseconds; when the
// thread waits for a CPU it comes on a later tick (poll_capture).
void begin_sample(State& s, WatchedLoop& w, std::uint64_t now, std::uint64_t age) {
  Stall& st = w.stall;
  const std::uint64_t interval_ns = classification_interval_ns(w, now);
  SyscallState sys;
  w.status.read_syscall(sys);
  ThreadTimes times;
  bool have_times = w.status.read_times(times);
  if (have_times) look_again_if_runnable(w, interval_ns, sys, times);
  // Checked after /proc was read: a slice that ended meanwhile (this thread
  // was slow to run) had its system call read in what came next, the loop's
  // own epoll_wait, so that is not said. Its CPU times are read again: the
  // thread ran since, to end the slice, so a wait for a CPU that kept it off
  // (counted in the run delay only once it is over) is in them now, and the
  // sample says preempted rather than blocked in the kernel.
  // A stall already reported needs no such sample: its `stall ended` line
  // follows on the next tick.
  const bool ended = !slice_still_runs(w.record->slice, st.seq);
  if (ended && st.samples > 0) return;
  if (ended) {
    sys = SyscallState{};
    have_times = w.status.read_times(times);
  }

  Event e;
  emit::StallSample& sample = e.sample;
  sample.loop = w.record->index;
  sample.threshold_ns = w.threshold_ns;
  sample.wall_ns = age;
  sample.cpu_ns = have_times && times.cpu_ns > w.base_times.cpu_ns ? times.cpu_ns - w.base_times.cpu_ns : 0;
  const Classification kind = classify(sys, w.base_times, have_times ? times : w.base_times, interval_ns);
  sample.kind = kind_name(kind.kind);
  sample.syscall = kind.syscall;
  sample.sample = st.samples + 1;
  if (st.fiber_name.empty()) st.fiber_name = running_fiber_name(w.record->slice, st.seq);
  // The fiber as the slice was first seen: the record's is the next slice's
  // once this one ended.
  sample.fiber = {w.seen_fiber_id, st.fiber_name};

  if (st.samples == 0) {
    st.fiber_id = sample.fiber.id;
    w.record->stalls.stalls[static_cast<int>(kind.kind)].add();
    s.stall_count.fetch_add(1, std::memory_order_relaxed);
    STALLWATCH_TRACE3(stall_begin, w.record->index, sample.fiber.id, age);
  }
  ++st.samples;
  e.profile_ns = age - st.last_sample_age_ns;
  st.last_sample_age_ns = age;

  if (ended) {
    // A signal now would catch the next slice's stack.
    sample.capture = "slice_ended";
    sample.capture_note = "the slice ended before its sample was taken";
    e.stack.missing = "[stack not captured: slice ended]";
    queue_sample(s, w, std::move(e));
    return;
  }
  if (take_wait_stack(w, e) || note_handler_replaced(s, w, e)) {
    // A published wait needs no signal; a handler that is not ours gets none.
    queue_sample(s, w, std::move(e));
    return;
  }
  PendingCapture& c = w.capture;
  c.active = true;
  c.event = std::move(e);
  c.sent_ns = now;
  c.request = request_capture(*w.slot, w.tid, w.signo);
  if (c.request == 0) {
    complete_sample(s, w, true);  // the thread is gone
  } else if (wait_for_capture(*w.slot, c.request, quick_wait_ns)) {
    complete_sample(s, w, false);
  }
}

// A sample still waiting for its stack: taken now if the handler answered,
// reported without a stack after the timeout. True while still waiting.
bool poll_capture(State& s, WatchedLoop& w, std::uint64_t now) {
  PendingCapture& c = w.capture;
  if (!c.active) return false;
  if (w.slot->published.load(std::memory_order_acquire) == c.request) {
    complete_sample(s, w, false);
    return false;
  }
  if (now - c.sent_ns >= capture_timeout_ns(w)) {
    complete_sample(s, w, true);
    return false;
  }
  return true;
}

}  // namespace

void check_loop(State& s, WatchedLoop& w, std::uint64_t now) {
  core::SliceState& slice = w.record->slice;
  const std::uint64_t seq = slice.seq.load(std::memory_order_acquire);
  // Time before the loop was handed to the watchdog (its own start-up, or a
  // stamp left by the record's last loop) is never part of a stall.
  const std::uint64_t start = std::max(slice.start_ns.load(std::memory_order_relaxed), w.watched_since_ns);
  const std::uint64_t fiber_id = slice.fiber_id.load(std::memory_order_relaxed);
  // stallwatch's own wait (core::OwnWait) is no stall: the loop counts as idle.
  const bool idle = slice.idle.load(std::memory_order_acquire) || slice.own_wait.load(std::memory_order_acquire);
  // The reads above, then the check that they are all of slice seq.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (slice.seq.load(std::memory_order_relaxed) != seq) return;  // a switch raced with us: next tick

  const bool still_waiting = poll_capture(s, w, now);
  if (idle || !w.seen || seq != w.seen_seq) {
    // A capture still unanswered when the slice ends is reported without
    // its stack: the handler would now see another slice.
    if (still_waiting) complete_sample(s, w, true);
    if (w.stalled) finish_stall(s, w, !idle && start > w.stall.start_ns ? start : now);
    w.seen = true;
    w.seen_seq = seq;
    w.seen_fiber_id = fiber_id;
    w.seen_at_ns = now;
    if (!idle) w.status.read_times(w.base_times);
    if (idle) {
      w.seen = false;  // the next wake-up is a new slice whatever its number
      return;
    }
  }
  if (still_waiting) return;
  const std::uint64_t age = now > start ? now - start : 0;
  if (!w.stalled) {
    if (age < w.threshold_ns) return;
    w.stalled = true;
    w.stall = Stall{};
    w.stall.seq = seq;
    w.stall.start_ns = start;
    w.stall.next_sample_age_ns = w.threshold_ns;
  }
  if (age < w.stall.next_sample_age_ns) return;
  begin_sample(s, w, now, age);
  // Next sample at twice the age this one reached: T, 2T, 4T, …
  while (w.stall.next_sample_age_ns <= age) w.stall.next_sample_age_ns *= 2;
}

void retire_loop(State& s, WatchedLoop& w) {
  if (w.capture.active) {
    complete_sample(s, w, w.slot->published.load(std::memory_order_acquire) != w.capture.request);
  }
  if (w.stalled) finish_stall(s, w, base::monotonic_ns());
}

}  // namespace stallwatch::watchdog
