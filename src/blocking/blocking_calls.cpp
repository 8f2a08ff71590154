// The recording of a flagged blocking call: count it, report the first call
// from each call site (under the loop's rate limit, through the emitter), and
// in strict mode report it and end the process. Runs on loop threads, never
// in a signal handler; the stack is taken at the call itself.
#include "blocking/blocking_calls.hpp"

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/thread_state.hpp"
#include "blocking/allow_scope.hpp"
#include "blocking/call_stack.hpp"
#include "blocking/report_writer.hpp"
#include "config/allow_list.hpp"
#include "core/loop_record.hpp"
#include "emit/emitter.hpp"

namespace stallwatch::blocking {
namespace {

// Call sites remembered as "already reported"; past this, new sites are
// counted but no longer reported (said once in the log).
constexpr std::size_t max_call_sites = 4096;
constexpr std::string_view other_function = "other";

// ---- forked children ----

// A child forked from a loop fiber inherits that thread's state, but no loop
// runs in it: its calls block nobody. Set by the first fork child handler
// (registered before any other of this library's); cleared when a loop starts.
std::atomic<bool> in_forked_child{false};

__attribute__((constructor(101))) void watch_forks() {
  pthread_atfork(nullptr, nullptr, [] {
    in_forked_child.store(true, std::memory_order_relaxed);
    forget_report_writer_after_fork();
  });
}

// ---- process-wide recording state ----

struct CallCount {
  std::string function;
  std::uint64_t count = 0;
};

struct RecordState {
  std::mutex mutex;
  bool strict = false;
  std::vector<config::AllowEntry> allow;
  std::vector<CallCount> counts;  // at most max_counted_functions, "other" included
  std::unordered_set<std::uint64_t> reported_sites;
  bool site_table_full_said = false;
  ReportCounts totals;  // since start, for the metrics
};

RecordState& record_state() {
  // Never destroyed: fibers of other threads may record while statics die.
  static RecordState* s = new RecordState;
  return *s;
}

// Counts one call under its own name, or under "other" once the bounded
// number of names is taken.
void count_call(RecordState& s, std::string_view function) {
  for (CallCount& c : s.counts) {
    if (c.function == function) {
      ++c.count;
      return;
    }
  }
  const std::string_view name = s.counts.size() + 1 < max_counted_functions ? function : other_function;
  for (CallCount& c : s.counts) {
    if (c.function == name) {
      ++c.count;
      return;
    }
  }
  s.counts.push_back(CallCount{std::string(name), 1});
}

// What to do with one call, decided under the lock.
enum class Decision { ignore, report, strict };

// table_full: the site table just filled up (to be said once, outside the lock).
Decision decide(RecordState& s, int loop, std::string_view function, const CallStack& stack, bool& table_full) {
  std::lock_guard lock(s.mutex);
  count_call(s, function);
  if (s.strict) return Decision::strict;
  const std::uint64_t site = call_site_key(function, stack);
  if (s.reported_sites.contains(site)) return Decision::ignore;
  if (s.reported_sites.size() >= max_call_sites) {
    table_full = !std::exchange(s.site_table_full_said, true);
    return Decision::ignore;
  }
  if (!emit::admit(loop, emit::ReportKind::blocking_call)) {
    // Not marked as reported: the site is reported once the rate allows.
    ++s.totals.suppressed;
    return Decision::ignore;
  }
  ++s.totals.reported;
  s.reported_sites.insert(site);
  return Decision::report;
}

void record_blocking_call(std::string_view function, const CallStack& stack) {
  if (stack.size > 0 && made_by_libstallwatch(stack.pcs[0])) return;
  RecordState& s = record_state();
  std::vector<config::AllowEntry> allow;
  {
    std::lock_guard lock(s.mutex);
    allow = s.allow;
  }
  if (!allow.empty() && config::allow_list_permits(allow, function, stack_modules(stack))) return;

  const core::LoopRecord* loop = core::current_loop_record();
  const int index = loop != nullptr ? loop->index : emit::process_wide;
  bool table_full = false;
  const Decision decision = decide(s, index, function, stack, table_full);
  if (table_full) {
    emit::message(index, "blocking_call_sites_full",
                  std::to_string(max_call_sites) +
                      " blocking-call sites reported; calls from new sites are counted but no longer reported",
                  {{"sites", static_cast<std::int64_t>(max_call_sites)}});
  }
  if (decision == Decision::ignore) return;

  PendingReport r;
  r.call.loop = index;
  r.call.function = std::string(function);
  if (const base::FiberIdentity* fiber = base::current_fiber()) {
    r.call.fiber.id = fiber->id;
    if (fiber->name != nullptr) r.call.fiber.name.assign(fiber->name, fiber->name_len);
  }
  r.call.strict = decision == Decision::strict;
  r.stack = stack;
  submit_report(std::move(r));
  if (decision == Decision::strict) {
    // Symbolizing needs more stack than a fiber has: the writer does it
    // while this thread waits, then the process ends. The wait is ours, not
    // a stall of the application's.
    const core::OwnWait own_wait;
    flush_reports(std::chrono::seconds(10));
    emit::end_process_strict(index, "a blocking call to " + std::string(function) + " on a loop fiber");
  }
}

// The interposers' entry point: records a call to `function` made from the
// stack above return_address. Keeps errno; the recording itself (locks, logs,
// writes) is never flagged.
void record_probed_call(const char* function, const void* return_address) noexcept {
  const int saved_errno = errno;
  {
    base::InternalBlockingScope internal;
    const CallStack stack = capture_caller_stack(return_address);
    try {
      record_blocking_call(function, stack);
    } catch (...) {
      // Out of memory while reporting: the call still goes ahead, uncounted.
    }
  }
  errno = saved_errno;
}

}  // namespace

void for_each_call_count(const std::function<void(std::string_view, std::uint64_t)>& fn) {
  std::vector<CallCount> counts;
  {
    RecordState& s = record_state();
    std::lock_guard lock(s.mutex);
    counts = s.counts;
  }
  for (const CallCount& c : counts) fn(c.function, c.count);
}

ReportCounts report_counts() {
  RecordState& s = record_state();
  std::lock_guard lock(s.mutex);
  return s.totals;
}

void configure(const Config& config) {
  std::vector<config::AllowEntry> allow = config::allow_list_from_environment();
  {
    RecordState& s = record_state();
    std::lock_guard lock(s.mutex);
    s.strict = config.strict;
    s.allow = std::move(allow);
  }
  in_forked_child.store(false, std::memory_order_relaxed);
  check_probes_canary(config);
  warn_if_probes_misordered();
}

}  // namespace stallwatch::blocking

extern "C" bool stallwatch_probe_should_flag() noexcept {
  using namespace stallwatch;
  if (!base::on_loop_fiber()) [[likely]] return false;
  if (blocking::in_forked_child.load(std::memory_order_relaxed)) return false;
  return blocking::no_fiber_allowed() || !blocking::fiber_allowed(base::running_fiber_id());
}

extern "C" __attribute__((noinline)) void stallwatch_probe_record(const char* function) noexcept {
  stallwatch::blocking::record_probed_call(function, __builtin_return_address(0));
}
