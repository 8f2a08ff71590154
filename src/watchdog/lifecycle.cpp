// The watchdog's threads: one pair per process, started by the first loop and
// stopped with the last. Each tick of the watchdog thread publishes the coarse
// clock and checks every loop (sampler.cpp); what it found goes to the
// delivery thread (delivery.cpp), so no symbolizer or sink ever delays a
// check. Also: fork
// and exit handling, and warming up the symbolizer so the first report is
// quick.
#include "watchdog/watchdog.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <utility>

#include "base/coarse_clock.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/watchdog.hpp"
#include "symbolize/shared_symbolizer.hpp"
#include "watchdog/capture_signal.hpp"
#include "watchdog/state.hpp"

namespace stallwatch::watchdog {

State& state() {
  static State* s = new State;  // never destroyed: loops may end during exit
  return *s;
}

namespace {

constexpr std::uint64_t min_tick_ns = 250'000;
constexpr std::uint64_t max_tick_ns = 50'000'000;

pid_t current_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

std::uint64_t tick_ns(const State& s) {
  std::uint64_t tick = max_tick_ns;
  for (const auto& w : s.loops) tick = std::min(tick, w->threshold_ns / 8);
  return std::clamp(tick, min_tick_ns, max_tick_ns);
}

thread_local bool on_watchdog_thread = false;

void run_watchdog() {
  State& s = state();
  on_watchdog_thread = true;
  pthread_setname_np(pthread_self(), "stallwatch-wd");
  std::unique_lock lock(s.mutex);
  while (!s.stop) {
    const std::uint64_t now = base::refresh_now();
    for (auto& w : s.loops) check_loop(s, *w, now);
    if (!s.pending.empty()) s.to_deliver.notify_all();
    s.wake.wait_for(lock, std::chrono::nanoseconds(tick_ns(s)), [&s] { return s.stop; });
  }
}

void run_delivery_thread() {
  on_watchdog_thread = true;
  pthread_setname_np(pthread_self(), "stallwatch-rep");
  run_delivery();
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
  s.stop_delivery = false;
  s.thread = start_quiet_thread(run_watchdog);
  s.delivery = start_quiet_thread(run_delivery_thread);
}

// Stops both threads; the delivery thread delivers what is pending first.
// With s.mutex held by lock, released while joining. Not on either thread.
void stop_threads(State& s, std::unique_lock<std::mutex>& lock) {
  std::thread* watchdog_thread = std::exchange(s.thread, nullptr);
  std::thread* delivery_thread = std::exchange(s.delivery, nullptr);
  if (watchdog_thread == nullptr && delivery_thread == nullptr) return;
  s.stop = true;
  s.stop_delivery = true;
  lock.unlock();
  s.wake.notify_all();
  s.to_deliver.notify_all();
  for (std::thread* t : {watchdog_thread, delivery_thread}) {
    if (t == nullptr) continue;
    t->join();
    delete t;
  }
  lock.lock();
  s.delivered.notify_all();
}

// One module at a time, so a report waits for one module's debug info at
// most, not for all of them.
void warm_up_symbolizer() {
  pthread_setname_np(pthread_self(), "stallwatch-sym");
  symbolize::SharedSymbolizer& shared = symbolize::shared_symbolizer();
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
  // exit() on one of the watchdog's threads: it cannot join itself.
  if (on_watchdog_thread) return;
  State& s = state();
  {
    std::unique_lock lock(s.mutex);
    s.exiting = true;
    stop_threads(s, lock);
  }
  symbolize::SharedSymbolizer& shared = symbolize::shared_symbolizer();
  shared.cancel_warm_up.store(true);
  if (shared.warmer != nullptr && shared.warmer->joinable()) shared.warmer->join();
}

// Whether prepare_fork got the symbolizer; under s.lifecycle until the fork
// is done.
bool symbolizer_held_for_fork = false;

void prepare_fork() {
  State& s = state();
  s.lifecycle.lock();
  s.mutex.lock();
  // Not waited for: a warm-up or a report reading a module's debug info holds
  // it for a few hundred ms, and fork() must not take that long. A child that
  // did not get it makes its own.
  symbolizer_held_for_fork = symbolize::shared_symbolizer().mutex.try_lock();
}

void parent_after_fork() {
  State& s = state();
  if (symbolizer_held_for_fork) symbolize::shared_symbolizer().mutex.unlock();
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
  // Same mappings, so the parent's symbolizer serves the child as it is when
  // the fork got it; its warm-up thread does not exist here.
  if (symbolizer_held_for_fork) {
    symbolize::shared_symbolizer().warmer = nullptr;
    symbolize::shared_symbolizer().mutex.unlock();
  } else {
    symbolize::replace_shared_symbolizer_in_child();
  }
  s.thread = nullptr;  // the parent's threads do not exist here
  s.delivery = nullptr;
  s.stop = false;
  s.delivering = false;
  s.pending.clear();  // the parent writes its own reports
  CaptureSlot* mine = fork_without_loops ? nullptr : tls_capture_slot;
  std::erase_if(s.loops, [mine](const auto& w) { return w->slot.get() != mine; });
  std::vector<int> signals_in_use;
  for (const auto& w : s.loops) signals_in_use.push_back(w->signo);
  recount_capture_signal_users(signals_in_use);
  for (auto& w : s.loops) {
    w->tid = current_tid();
    w->watched_since_ns = base::monotonic_ns();
    w->record->tid.store(w->tid, std::memory_order_relaxed);
    w->status = ThreadStatus(w->tid);
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
    symbolize::shared_symbolizer().warmer = start_quiet_thread(warm_up_symbolizer);
    std::atexit(stop_threads_at_exit);
  });

  {
    // Under the lifecycle lock: claims and releases of the signal are then
    // never halfway done when the process forks.
    std::lock_guard life(s.lifecycle);
    const ClaimedSignal signal = claim_capture_signal(config.capture_signal, config.capture_signal_setting);

    auto w = std::make_unique<WatchedLoop>();
    w->record = &record;
    w->tid = current_tid();
    w->signo = signal.signo;
    w->threshold_ns = static_cast<std::uint64_t>(std::chrono::nanoseconds(config.threshold).count());
    w->strict = config.strict;
    w->status = ThreadStatus(w->tid);
    w->slot = std::make_unique<CaptureSlot>();
    w->slot->slice_counter = &record.slice.seq;
    record.threshold_ns.store(w->threshold_ns, std::memory_order_relaxed);

    prime_unwinder();
    tls_capture_slot = w->slot.get();
    // Said before the loop is handed over: the loop's first line starts its
    // writer thread, on this thread (under TSan at load 15, 50-80 ms blocked
    // in futex, reported as the loop's first stall), and that is
    // stallwatch's start-up. Only queued: the sink runs on the writer.
    if (!signal.chosen_line.empty()) emit::message(record.index, "capture_signal", signal.chosen_line);

    std::lock_guard lock(s.mutex);
    w->watched_since_ns = base::monotonic_ns();
    s.loops.push_back(std::move(w));
    if (s.thread == nullptr) start_thread(s);
  }
}

void loop_stopped(core::LoopRecord& record) {
  State& s = state();
  {
    std::lock_guard life(s.lifecycle);
    std::lock_guard lock(s.mutex);
    auto it = std::find_if(s.loops.begin(), s.loops.end(), [&](const auto& w) { return w->record == &record; });
    if (it == s.loops.end()) return;
    retire_loop(s, **it);
    // The handler runs on this thread only, so once the slot is unhooked here
    // no handler can be using it.
    if (tls_capture_slot == (*it)->slot.get()) tls_capture_slot = nullptr;
    // No request is in flight to this thread any more (retire_loop ended the
    // capture, and a signal sent to it was delivered before this code ran on
    // it): the last loop may put the signal's disposition back.
    release_capture_signal((*it)->signo);
    s.loops.erase(it);
  }
  {
    // Everything of this loop reaches the emitter before its sink may go
    // away: outside the lifecycle lock, so that however slow the symbolizer
    // is, other loops start and stop meanwhile.
    std::unique_lock lock(s.mutex);
    wait_delivered(s, lock, record.index);
  }
  std::lock_guard life(s.lifecycle);
  std::unique_lock lock(s.mutex);
  if (s.loops.empty()) stop_threads(s, lock);
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
