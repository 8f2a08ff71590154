// The watchdog thread: one per process, started by the first loop and stopped
// with the last. Each tick it publishes the coarse clock and looks at every
// loop's slice counter; a slice older than the threshold is a stall, sampled
// at T, 2T, 4T … until it ends, each sample a stack captured on the loop
// thread (capture_signal.cpp, sigsafe/), symbolized and classified here, then
// reported through the loop's sink under its rate limit.
#include "watchdog/watchdog.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/coarse_clock.hpp"
#include "core/log.hpp"
#include "core/probe.hpp"
#include "stallwatch/watchdog.hpp"
#include "watchdog/capture_signal.hpp"
#include "watchdog/report.hpp"
#include "watchdog/report_limiter.hpp"
#include "watchdog/stall_profile.hpp"
#include "watchdog/symbolizer.hpp"
#include "watchdog/thread_probe.hpp"
#include "watchdog/wait_capture.hpp"

namespace stallwatch::watchdog {
namespace {

constexpr std::uint64_t min_tick_ns = 250'000;
constexpr std::uint64_t max_tick_ns = 50'000'000;

pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

using Sink = std::function<void(std::string_view)>;

// A stack as captured: its pcs, or (when there are none) the reason, as the
// profile's one pseudo-frame.
struct CapturedStack {
  std::vector<std::uintptr_t> pcs;
  std::string missing;
  // pcs[0] is a return address too (a stack the probes took at a call),
  // not the instruction a signal interrupted.
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
// symbolized, profiled and written in order at the end of the tick.
// Self-contained: the loop may be gone by then.
struct Event {
  enum class Kind { sample, end, line };
  Kind kind = Kind::line;
  Sink sink;
  log_format format = log_format::text;
  bool write = false;   // sample: admitted by the rate limit; end: a sample was written
  bool strict = false;  // sample: exit once written
  StallSample sample;
  StallEnd end;
  std::string line;             // kind line: written as it is
  CapturedStack stack;          // sample: its stack; end: the last sample's
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
  log_format format = log_format::text;
  Sink sink;
  std::unique_ptr<CaptureSlot> slot;
  ThreadProbe probe;
  ReportLimiter limiter{10};

  // The slice seen last tick, and the thread's times when it was first seen.
  bool seen = false;
  std::uint64_t seen_seq = 0;
  std::uint64_t seen_at_ns = 0;
  ThreadTimes base_times;
  bool stalled = false;
  Stall stall;
  PendingCapture capture;
};

struct State {
  std::mutex lifecycle;  // loop_started / loop_stopped / fork, whole operations
  std::mutex mutex;      // the fields below
  std::condition_variable wake;
  std::vector<std::unique_ptr<WatchedLoop>> loops;
  std::deque<Event> pending;
  std::thread* thread = nullptr;  // leaked on purpose in a forked child
  bool stop = false;
  bool exiting = false;  // exit() began: no new watchdog thread

  std::atomic<std::uint64_t> stall_count{0};
  std::mutex last_report_mutex;
  std::string last_report;
};

State& state() {
  static State* s = new State;  // never destroyed: loops may end during exit
  return *s;
}

// The process's symbolizer, kept across watchdog threads (a loop that starts
// and stops often must not reload debug info each time) and warmed up by a
// helper thread at the first loop's start, so the first report is quick.
struct SharedSymbolizer {
  std::mutex mutex;
  Symbolizer* symbolizer = nullptr;  // never destroyed, like State
  std::atomic<bool> reports_waiting{false};  // the warm-up gives way while set
  std::atomic<bool> cancel_warm_up{false};   // the process exits
  std::thread* warmer = nullptr;             // joined at exit, leaked in a forked child

  Symbolizer& get() {  // with mutex held
    if (symbolizer == nullptr) symbolizer = new Symbolizer;
    return *symbolizer;
  }
};

SharedSymbolizer& shared_symbolizer() {
  static SharedSymbolizer* s = new SharedSymbolizer;
  return *s;
}

void write_line(const Sink& sink, const std::string& line) {
  if (sink) {
    try {
      sink(line);
      return;
    } catch (...) {
      // A sink that throws must not end the watchdog: the line goes to the
      // process log instead.
    }
  }
  core::log_line(line);
}

std::uint64_t tick_ns(const State& s) {
  std::uint64_t tick = max_tick_ns;
  for (const auto& w : s.loops) tick = std::min(tick, w->threshold_ns / 8);
  return std::clamp(tick, min_tick_ns, max_tick_ns);
}

// How long a stalled thread may take to answer the capture signal: it runs
// the handler only once the OS gives it a CPU, which on a loaded machine
// takes a while. Waiting is asynchronous (the ticks go on), except for
// quick_wait_ns, which catches the usual answer at once.
std::uint64_t capture_timeout_ns(const WatchedLoop& w) {
  return std::clamp<std::uint64_t>(w.threshold_ns, 250'000'000, 2'000'000'000);
}
constexpr std::uint64_t quick_wait_ns = 1'000'000;

Event event_for(const WatchedLoop& w, Event::Kind kind) {
  Event e;
  e.kind = kind;
  e.sink = w.sink;
  e.format = w.format;
  return e;
}

void queue_suppressed(State& s, const WatchedLoop& w, std::uint64_t count) {
  if (count == 0) return;
  Event e = event_for(w, Event::Kind::line);
  e.line = format_suppressed(w.record->index, count, w.format);
  s.pending.push_back(std::move(e));
}

// Symbolizes, profiles and writes one event. Watchdog thread or a stopping
// loop, with s.mutex and the symbolizer held.
void deliver(State& s, Event& e, Symbolizer& symbolizer) {
  if (e.kind == Event::Kind::line) {
    write_line(e.sink, e.line);
    return;
  }
  std::vector<Frame> frames;
  for (std::size_t i = 0; i < e.stack.pcs.size(); ++i) {
    const std::vector<Frame>& at_pc = symbolizer.symbolize(e.stack.pcs[i], i > 0 || e.stack.all_return_addresses);
    frames.insert(frames.end(), at_pc.begin(), at_pc.end());
  }
  std::vector<std::string> names;
  for (const Frame& f : frames) names.push_back(f.short_name());
  if (names.empty() && !e.stack.missing.empty()) names.push_back(e.stack.missing);
  profile_add(names, e.profile_ns);

  if (e.kind == Event::Kind::end) {
    if (e.write) write_line(e.sink, format_end(e.end, e.format));
    return;
  }
  e.sample.frames = std::move(frames);
  {
    StallSample full = e.sample;
    full.seen = 1;
    std::lock_guard lock(s.last_report_mutex);
    s.last_report = format_sample(full, log_format::text);
  }
  if (e.write) {
    write_line(e.sink, format_sample(e.sample, e.format));
    if (e.strict) _exit(strict_exit_status);
  }
}

// Delivers the pending events in order. wait: block until the symbolizer is
// free. Otherwise, while the symbolizer loads a module's debug info, the
// events wait for a later tick (the ticks, and so the samples, go on) and
// the warm-up gives way after that module.
void deliver_pending(State& s, bool wait) {
  if (s.pending.empty()) return;
  SharedSymbolizer& shared = shared_symbolizer();
  std::unique_lock lock(shared.mutex, std::defer_lock);
  if (wait) {
    lock.lock();
  } else if (!lock.try_lock()) {
    shared.reports_waiting.store(true);
    return;
  }
  shared.reports_waiting.store(false);
  Symbolizer& symbolizer = shared.get();
  while (!s.pending.empty()) {
    Event e = std::move(s.pending.front());
    s.pending.pop_front();
    deliver(s, e, symbolizer);
  }
}

// The slice ended (or the loop went idle or stopped): account the stall and
// queue its `stall ended` line, written if any of its samples was.
void finish_stall(State& s, WatchedLoop& w, std::uint64_t end_ns) {
  Stall& st = w.stall;
  w.stalled = false;
  const std::uint64_t wall = end_ns > st.start_ns ? end_ns - st.start_ns : 0;
  ThreadTimes now_times;
  const bool have_times = w.probe.read_times(now_times);
  w.record->stalls.stall_duration.record(wall);
  STALLWATCH_PROBE3(stall_end, w.record->index, st.fiber_id, wall);

  Event e = event_for(w, Event::Kind::end);
  e.write = st.reported > 0;
  e.end.loop = w.record->index;
  e.end.fiber_id = st.fiber_id;
  e.end.fiber_name = st.fiber_name;
  e.end.wall_ns = wall;
  e.end.cpu_ns = have_times && now_times.cpu_ns > w.base_times.cpu_ns ? now_times.cpu_ns - w.base_times.cpu_ns : 0;
  e.end.samples = st.samples;
  e.stack = std::move(st.last_stack);
  e.profile_ns = wall > st.last_sample_age_ns ? wall - st.last_sample_age_ns : 0;
  s.pending.push_back(std::move(e));
}

const char* missing_stack_frame(const StallSample& s) {
  if (s.timed_out) return "[stack not captured: timeout]";
  switch (s.outcome) {
    case CaptureOutcome::in_switch:
      return "[stack not captured: context switch]";
    case CaptureOutcome::exception:
      return "[stack not captured: exception unwinding]";
    default:
      return "[stack not captured]";
  }
}

// Starts one sample of w's stall: classify the thread now, then ask it for
// its stack. The answer usually comes within microseconds; when the thread
// waits for a CPU it comes on a later tick (complete_sample). A thread in a
// wait it published (sleep, poll, epoll_wait…) is not asked (take_wait_stack).
void complete_sample(State& s, WatchedLoop& w, bool timed_out);
void queue_sample(State& s, WatchedLoop& w, Event&& e);
bool take_wait_stack(WatchedLoop& w, const SyscallState& sys, Event& e);

void begin_sample(State& s, WatchedLoop& w, std::uint64_t now, std::uint64_t age) {
  Stall& st = w.stall;
  SyscallState sys;
  w.probe.read_syscall(sys);
  ThreadTimes times;
  const bool have_times = w.probe.read_times(times);

  Event e = event_for(w, Event::Kind::sample);
  StallSample& sample = e.sample;
  sample.loop = w.record->index;
  sample.threshold_ns = w.threshold_ns;
  sample.wall_ns = age;
  sample.cpu_ns = have_times && times.cpu_ns > w.base_times.cpu_ns ? times.cpu_ns - w.base_times.cpu_ns : 0;
  sample.kind = classify(sys, w.base_times, have_times ? times : w.base_times, now - w.seen_at_ns);
  sample.sample = st.samples + 1;
  sample.fiber_id = w.record->slice.fiber_id.load(std::memory_order_relaxed);
  sample.fiber_name = st.fiber_name;

  if (st.samples == 0) {
    st.fiber_id = sample.fiber_id;
    w.record->stalls.stalls[static_cast<int>(sample.kind.kind)].add();
    s.stall_count.fetch_add(1, std::memory_order_relaxed);
    STALLWATCH_PROBE3(stall_begin, w.record->index, sample.fiber_id, age);
  }
  ++st.samples;
  e.profile_ns = age - st.last_sample_age_ns;
  st.last_sample_age_ns = age;

  if (take_wait_stack(w, sys, e)) {
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

// Finishes the pending sample with the handler's answer (or without, after
// the timeout) and queues its report under the rate limit.
void complete_sample(State& s, WatchedLoop& w, bool timed_out) {
  Stall& st = w.stall;
  PendingCapture& c = w.capture;
  c.active = false;
  Event e = std::move(c.event);
  StallSample& sample = e.sample;
  const CaptureSlot& slot = *w.slot;
  if (!timed_out && slot.slice_seq != st.seq) timed_out = true;  // answered from a later slice
  if (!timed_out) {
    sample.outcome = slot.outcome;
    sample.fiber_id = slot.fiber_id;
    sample.fiber_name.assign(slot.fiber_name, slot.fiber_name_len);
    e.stack.pcs.assign(slot.pcs, slot.pcs + slot.depth);
    sample.stack_id = stack_hash(slot.pcs, slot.depth);
    if (st.fiber_name.empty()) st.fiber_name = sample.fiber_name;
  } else {
    sample.timed_out = true;
  }
  if (e.stack.pcs.empty()) e.stack.missing = missing_stack_frame(sample);
  queue_sample(s, w, std::move(e));
}

// A stall in a wait that the thread published as it began (sleep, poll,
// select, epoll_wait…: core/wait_interpose.cpp): the sample unwinds from the
// registers saved at the call, on this thread, and the loop thread gets no
// signal, which would end its wait early with EINTR. False when the thread
// is not in such a wait of the stalled slice.
bool take_wait_stack(WatchedLoop& w, const SyscallState& sys, Event& e) {
  if (sys.where != SyscallState::Where::in_syscall) return false;
  PublishedWaitStack wait;
  if (!unwind_published_wait(*w.record, w.stall.seq, wait)) return false;
  StallSample& sample = e.sample;
  sample.outcome = CaptureOutcome::captured;
  sample.fiber_id = wait.fiber_id;
  sample.fiber_name = wait.fiber_name;
  e.stack.pcs = std::move(wait.pcs);
  e.stack.all_return_addresses = true;
  sample.stack_id = stack_hash(e.stack.pcs.data(), static_cast<int>(e.stack.pcs.size()));
  if (w.stall.fiber_name.empty()) w.stall.fiber_name = sample.fiber_name;
  if (e.stack.pcs.empty()) e.stack.missing = missing_stack_frame(sample);
  return true;
}

// Queues a finished sample's report under the rate limit.
void queue_sample(State& s, WatchedLoop& w, Event&& e) {
  Stall& st = w.stall;
  StallSample& sample = e.sample;
  st.last_stack = e.stack;

  e.write = w.strict || w.limiter.admit(core::monotonic_ns());
  e.strict = w.strict;
  if (e.write) {
    if (sample.stack_id != 0) sample.seen = w.limiter.note_stack(sample.stack_id);
    w.record->stalls.reports.add();
    ++st.reported;
  } else {
    w.record->stalls.reports_suppressed.add();
  }
  s.pending.push_back(std::move(e));
  // Strict mode: the report now, whatever it takes, then the exit.
  if (w.strict) deliver_pending(s, true);
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

void check_loop(State& s, WatchedLoop& w, std::uint64_t now) {
  core::SliceState& slice = w.record->slice;
  const std::uint64_t seq = slice.seq.load(std::memory_order_acquire);
  const std::uint64_t start = slice.start_ns.load(std::memory_order_relaxed);
  const bool idle = slice.idle.load(std::memory_order_acquire);
  if (slice.seq.load(std::memory_order_acquire) != seq) return;  // a switch raced with us: next tick

  const bool still_waiting = poll_capture(s, w, now);
  if (idle || !w.seen || seq != w.seen_seq) {
    // A capture still unanswered when the slice ends is reported without
    // its stack: the handler would now see another slice.
    if (still_waiting) complete_sample(s, w, true);
    if (w.stalled) finish_stall(s, w, !idle && start > w.stall.start_ns ? start : now);
    w.seen = true;
    w.seen_seq = seq;
    w.seen_at_ns = now;
    if (!idle) w.probe.read_times(w.base_times);
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

thread_local bool on_watchdog_thread = false;

void run_watchdog() {
  State& s = state();
  on_watchdog_thread = true;
  pthread_setname_np(pthread_self(), "stallwatch-wd");
  std::unique_lock lock(s.mutex);
  while (!s.stop) {
    const std::uint64_t now = core::refresh_now();
    for (auto& w : s.loops) {
      check_loop(s, *w, now);
      queue_suppressed(s, *w, w->limiter.take_expired_summary(now));
    }
    deliver_pending(s, false);
    s.wake.wait_for(lock, std::chrono::nanoseconds(tick_ns(s)), [&s] { return s.stop; });
  }
  deliver_pending(s, true);
}

// Runs fn on a new thread with every signal blocked, so process-directed
// signals go to the service's own threads.
std::thread* start_quiet_thread(void (*fn)()) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  auto* thread = new std::thread(fn);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return thread;
}

// Called with s.mutex held.
void start_thread(State& s) {
  if (s.exiting) return;
  s.stop = false;
  s.thread = start_quiet_thread(run_watchdog);
}

// One module at a time, so a report waits for one module's debug info at
// most, not for all of them.
void warm_up_symbolizer() {
  pthread_setname_np(pthread_self(), "stallwatch-sym");
  SharedSymbolizer& shared = shared_symbolizer();
  std::vector<std::uintptr_t> starts;
  {
    std::lock_guard lock(shared.mutex);
    starts = shared.get().module_starts();
  }
  for (std::uintptr_t start : starts) {
    if (shared.cancel_warm_up.load()) return;
    // Reports first: let the watchdog take the symbolizer (for up to a second).
    for (int i = 0; i < 1000 && shared.reports_waiting.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::lock_guard lock(shared.mutex);
    shared.get().warm_up_module(start);
  }
}

// exit(): stop the watchdog and the warm-up before the libraries they use
// (libdw, the sinks' loggers) are torn down by later exit handlers.
void stop_threads_at_exit() {
  // exit() from a sink, on the watchdog thread itself: it holds the lock.
  if (on_watchdog_thread) return;
  State& s = state();
  std::thread* watchdog_thread = nullptr;
  {
    std::lock_guard lock(s.mutex);
    s.exiting = true;
    if (s.thread != nullptr) {
      s.stop = true;
      watchdog_thread = std::exchange(s.thread, nullptr);
    }
  }
  s.wake.notify_all();
  if (watchdog_thread != nullptr) watchdog_thread->join();
  SharedSymbolizer& shared = shared_symbolizer();
  shared.cancel_warm_up.store(true);
  if (shared.warmer != nullptr && shared.warmer->joinable()) shared.warmer->join();
}

// Ends w's bookkeeping: the stall in progress and the pending summary, all
// written before the loop's sink may go away.
void retire_loop(State& s, WatchedLoop& w) {
  if (w.capture.active) {
    complete_sample(s, w, w.slot->published.load(std::memory_order_acquire) != w.capture.request);
  }
  if (w.stalled) finish_stall(s, w, core::monotonic_ns());
  queue_suppressed(s, w, w.limiter.take_pending());
  deliver_pending(s, true);
}

void prepare_fork() {
  State& s = state();
  s.lifecycle.lock();
  s.mutex.lock();
  shared_symbolizer().mutex.lock();
}

void parent_after_fork() {
  State& s = state();
  shared_symbolizer().mutex.unlock();
  s.mutex.unlock();
  s.lifecycle.unlock();
}

// Set by ForkWithoutLoops on the forking thread.
thread_local bool fork_without_loops = false;

// The child has only the forking thread. Its loop, if it runs one, stays
// watched by a new watchdog thread (unless it forked ForkWithoutLoops); the
// other loops' threads are gone.
void child_after_fork() {
  State& s = state();
  // Same mappings, so the parent's symbolizer serves the child as it is; its
  // warm-up thread does not exist here.
  shared_symbolizer().warmer = nullptr;
  shared_symbolizer().mutex.unlock();
  s.thread = nullptr;  // the parent's thread does not exist here
  s.stop = false;
  s.pending.clear();  // the parent writes its own reports
  CaptureSlot* mine = fork_without_loops ? nullptr : tls_capture_slot;
  std::erase_if(s.loops, [mine](const auto& w) { return w->slot.get() != mine; });
  for (auto& w : s.loops) {
    w->tid = current_tid();
    w->record->tid.store(w->tid, std::memory_order_relaxed);
    w->probe = ThreadProbe(w->tid);
    w->slot->requested.store(0, std::memory_order_relaxed);
    w->slot->published.store(0, std::memory_order_relaxed);
    w->seen = false;
    w->stalled = false;
    w->capture.active = false;
  }
  if (!s.loops.empty()) start_thread(s);
  s.mutex.unlock();
  s.lifecycle.unlock();
}

}  // namespace

ForkWithoutLoops::ForkWithoutLoops() { fork_without_loops = true; }
ForkWithoutLoops::~ForkWithoutLoops() { fork_without_loops = false; }

void loop_started(core::LoopRecord& record, const Config& config) {
  if (!config.watchdog) return;
  State& s = state();
  static std::once_flag process_once;
  std::call_once(process_once, [] {
    pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
    shared_symbolizer().warmer = start_quiet_thread(warm_up_symbolizer);
    std::atexit(stop_threads_at_exit);
  });

  auto w = std::make_unique<WatchedLoop>();
  w->record = &record;
  w->tid = current_tid();
  w->signo = config.capture_signal != 0 ? config.capture_signal : default_capture_signal();
  w->threshold_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(config.threshold).count());
  w->strict = config.strict;
  w->format = config.log_format;
  w->sink = config.log_sink;
  w->limiter = ReportLimiter(config.reports_per_minute);
  w->probe = ThreadProbe(w->tid);
  w->slot = std::make_unique<CaptureSlot>();
  w->slot->slice_counter = &record.slice.seq;
  record.threshold_ns.store(w->threshold_ns, std::memory_order_relaxed);

  install_capture_handler(w->signo);
  prime_unwinder();
  tls_capture_slot = w->slot.get();

  std::lock_guard life(s.lifecycle);
  std::lock_guard lock(s.mutex);
  s.loops.push_back(std::move(w));
  if (s.thread == nullptr) start_thread(s);
}

void loop_stopped(core::LoopRecord& record) {
  State& s = state();
  std::lock_guard life(s.lifecycle);
  std::thread* to_join = nullptr;
  {
    std::lock_guard lock(s.mutex);
    auto it = std::find_if(s.loops.begin(), s.loops.end(), [&](const auto& w) { return w->record == &record; });
    if (it == s.loops.end()) return;
    retire_loop(s, **it);
    // The handler runs on this thread only, so once the slot is unhooked here
    // no handler can be using it.
    if (tls_capture_slot == (*it)->slot.get()) tls_capture_slot = nullptr;
    s.loops.erase(it);
    if (s.loops.empty() && s.thread != nullptr) {
      s.stop = true;
      to_join = std::exchange(s.thread, nullptr);
    }
  }
  if (to_join != nullptr) {
    s.wake.notify_all();
    to_join->join();
    delete to_join;
  }
}

}  // namespace stallwatch::watchdog

namespace stallwatch {
inline namespace v1 {

std::uint64_t stall_count() noexcept {
  return watchdog::state().stall_count.load(std::memory_order_relaxed);
}

std::string last_stall_report() {
  auto& s = watchdog::state();
  std::lock_guard lock(s.last_report_mutex);
  return s.last_report;
}

}  // namespace v1
}  // namespace stallwatch
