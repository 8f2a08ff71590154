#include "emit/emitter.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "base/coarse_clock.hpp"
#include "emit/culprit.hpp"
#include "emit/format.hpp"
#include "emit/report_limiter.hpp"
#include "stallwatch/watchdog.hpp"

namespace stallwatch::emit {
namespace {

using Sink = std::function<void(std::string_view)>;
using SharedSink = std::shared_ptr<const Sink>;

constexpr std::chrono::nanoseconds default_window = std::chrono::minutes(1);

struct LoopOutput {
  SharedSink sink;  // null: the process's sink
  log_format format = log_format::text;
  std::vector<ReportLimiter> limiters;  // one per ReportKind
  std::shared_ptr<const CulpritRules> culprit_rules;
  int writing = 0;                      // lines being handed to its sink now
};

struct State {
  std::mutex mutex;
  std::condition_variable changed;  // a write finished, or a summary may be due sooner
  SharedSink process_sink;
  log_format process_format = log_format::text;
  bool process_format_set = false;
  std::map<int, LoopOutput> loops;
  std::uint64_t window_ns = static_cast<std::uint64_t>(default_window.count());
  bool summary_thread_started = false;
};

State& state() {
  // Never destroyed: threads may still write while static destructors run.
  static State* s = new State;
  return *s;
}

// Serialises writes to stderr only, so two threads' lines never interleave.
std::mutex& stderr_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

void write_stderr(std::string_view line) {
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer.append(line);
  buffer.push_back('\n');
  std::lock_guard lock(stderr_mutex());
  const char* data = buffer.data();
  std::size_t size = buffer.size();
  while (size > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Called without the emitter's lock.
void deliver(const SharedSink& sink, const std::string& line) {
  if (sink && *sink) {
    try {
      (*sink)(line);
      return;
    } catch (...) {
      // A sink that throws must not take stallwatch down: stderr gets the line.
    }
  }
  write_stderr(line);
}

LoopOutput* find_loop(State& s, int loop) {
  const auto it = s.loops.find(loop);
  return it != s.loops.end() ? &it->second : nullptr;
}

// Where loop's lines go and in which format; counts the write in progress
// (end_write) so detach_loop can wait for it. With s.mutex held.
struct Route {
  SharedSink sink;
  log_format format;
  int loop;
  bool counted;
};

Route begin_write(State& s, int loop) {
  if (LoopOutput* out = find_loop(s, loop)) {
    ++out->writing;
    return {out->sink ? out->sink : s.process_sink, out->format, loop, true};
  }
  return {s.process_sink, s.process_format, loop, false};
}

void end_write(State& s, const Route& route) {
  if (!route.counted) return;
  std::lock_guard lock(s.mutex);
  if (LoopOutput* out = find_loop(s, route.loop)) --out->writing;
  s.changed.notify_all();
}

template <class Event>
void write_event(int loop, const Event& event) {
  State& s = state();
  Route route;
  {
    std::lock_guard lock(s.mutex);
    route = begin_write(s, loop);
  }
  try {
    deliver(route.sink, format(event, route.format));
  } catch (...) {
    // Out of memory formatting one line: it is lost, the write is still ended.
  }
  end_write(s, route);
}

// The summaries due by now_ns (all of them when `all`) for out, formatted.
std::vector<std::string> take_summaries(const State& s, int loop, LoopOutput& out, std::uint64_t now_ns, bool all) {
  std::vector<std::string> lines;
  const int window_s = static_cast<int>(s.window_ns / 1'000'000'000u);
  for (int kind = 0; kind < report_kind_count; ++kind) {
    ReportLimiter& limiter = out.limiters[static_cast<std::size_t>(kind)];
    const std::uint64_t count = all ? limiter.take_pending() : limiter.take_expired_summary(now_ns);
    if (count > 0) {
      lines.push_back(format_suppressed(loop, static_cast<ReportKind>(kind), count, std::max(window_s, 1), out.format));
    }
  }
  return lines;
}

// Sleeps until the earliest window with held-back reports closes, then
// writes its summary. Started with the first held-back report.
void run_summaries() {
  pthread_setname_np(pthread_self(), "stallwatch-log");
  State& s = state();
  std::unique_lock lock(s.mutex);
  for (;;) {
    const std::uint64_t now = base::monotonic_ns();
    std::uint64_t next_due = 0;
    struct Due {
      Route route;
      std::vector<std::string> lines;
    };
    std::vector<Due> due;
    for (auto& [index, out] : s.loops) {
      std::vector<std::string> lines = take_summaries(s, index, out, now, false);
      if (!lines.empty()) due.push_back({begin_write(s, index), std::move(lines)});
      for (const ReportLimiter& limiter : out.limiters) {
        const std::uint64_t at = limiter.summary_due_ns();
        if (at != 0 && (next_due == 0 || at < next_due)) next_due = at;
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (const Due& d : due) {
        for (const std::string& line : d.lines) deliver(d.route.sink, line);
        end_write(s, d.route);
      }
      lock.lock();
      continue;
    }
    if (next_due == 0) {
      s.changed.wait(lock);
    } else {
      s.changed.wait_for(lock, std::chrono::nanoseconds(next_due > now ? next_due - now : 0));
    }
  }
}

// With s.mutex held. The thread blocks every signal, so process-directed
// signals go to the service's own threads.
void ensure_summary_thread(State& s) {
  if (s.summary_thread_started) return;
  s.summary_thread_started = true;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::thread(run_summaries).detach();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

// A fork child has only the forking thread: no summary thread, and the lock
// must not be held by a thread that is gone.
void prepare_fork() { state().mutex.lock(); }
void parent_after_fork() { state().mutex.unlock(); }
void child_after_fork() {
  State& s = state();
  s.summary_thread_started = false;
  for (auto& [index, out] : s.loops) out.writing = 0;
  s.mutex.unlock();
}

__attribute__((constructor)) void watch_forks() { pthread_atfork(prepare_fork, parent_after_fork, child_after_fork); }

}  // namespace

void configure_process(const Config& config) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.process_sink && config.log_sink) s.process_sink = std::make_shared<const Sink>(config.log_sink);
  if (!s.process_format_set) {
    s.process_format = config.log_format;
    s.process_format_set = true;
  }
}

void attach_loop(int loop, const Config& config) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  LoopOutput out;
  if (config.log_sink) out.sink = std::make_shared<const Sink>(config.log_sink);
  out.format = config.log_format;
  for (int kind = 0; kind < report_kind_count; ++kind) out.limiters.emplace_back(config.reports_per_minute, s.window_ns);
  out.culprit_rules = std::make_shared<const CulpritRules>(culprit_rules(config.not_app));
  s.loops.insert_or_assign(loop, std::move(out));
}

void detach_loop(int loop) {
  State& s = state();
  Route route;
  std::vector<std::string> lines;
  {
    std::unique_lock lock(s.mutex);
    s.changed.wait(lock, [&] {
      const LoopOutput* out = find_loop(s, loop);
      return out == nullptr || out->writing == 0;
    });
    LoopOutput* out = find_loop(s, loop);
    if (out == nullptr) return;
    lines = take_summaries(s, loop, *out, 0, true);
    route = {out->sink ? out->sink : s.process_sink, out->format, loop, false};
    s.loops.erase(loop);
  }
  for (const std::string& line : lines) deliver(route.sink, line);
}

bool admit(int loop, ReportKind kind) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  LoopOutput* out = find_loop(s, loop);
  if (out == nullptr) return true;  // the loop ended: nothing left to limit
  if (out->limiters[static_cast<std::size_t>(kind)].admit(base::monotonic_ns())) return true;
  ensure_summary_thread(s);
  s.changed.notify_all();
  return false;
}

int note_stack(int loop, std::uint64_t stack_id) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  LoopOutput* out = find_loop(s, loop);
  return out != nullptr ? out->limiters[static_cast<std::size_t>(ReportKind::stall)].note_stack(stack_id) : 1;
}

// The rules of loop, or the defaults for a loop that ended.
std::shared_ptr<const CulpritRules> culprit_rules_of(int loop) {
  State& s = state();
  {
    std::lock_guard lock(s.mutex);
    if (const LoopOutput* out = find_loop(s, loop); out != nullptr && out->culprit_rules) return out->culprit_rules;
  }
  static const auto defaults = std::make_shared<const CulpritRules>(default_culprit_rules());
  return defaults;
}

template <class Report>
void name_culprit_of(Report& report) {
  const Frame* culprit = find_culprit(report.frames, *culprit_rules_of(report.loop));
  report.culprit = culprit != nullptr ? static_cast<int>(culprit - report.frames.data()) : -1;
}

void name_culprit(StallSample& sample) { name_culprit_of(sample); }
void name_culprit(BlockingCall& call) { name_culprit_of(call); }

void write(StallSample sample) {
  name_culprit(sample);
  write_event(sample.loop, sample);
}
void write(const StallEnd& end) { write_event(end.loop, end); }
void write(BlockingCall call) {
  name_culprit(call);
  write_event(call.loop, call);
}
void write(const Message& message) { write_event(message.loop, message); }

void message(int loop, std::string event, std::string text, std::vector<Field> fields) {
  write(Message{loop, std::move(event), std::move(text), std::move(fields)});
}

void end_process_strict(int loop, const std::string& why) {
  message(loop, "strict_exit",
          "strict mode: ending the process with status " + std::to_string(strict_exit_status) + " after " + why,
          {{"exit_status", std::int64_t{strict_exit_status}}});
  std::fflush(nullptr);
  _exit(strict_exit_status);
}

void set_report_window_for_testing(std::chrono::nanoseconds window) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.window_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(window.count(), 1));
}

}  // namespace stallwatch::emit
