#include "emit/emitter.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

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
};

// One loop's lines (or the process's), in order, on their way to a sink: a
// thread of its own hands them over, so whoever writes a line never waits for
// a sink, and a slow sink holds up only the lines queued here. At most
// channel_bound lines wait; the rest are counted and the count is said as soon
// as the sink returns.
constexpr std::size_t channel_bound = 1024;

struct Queued {
  SharedSink sink;  // null: stderr
  std::string line;
};

struct Channel {
  int loop = process_wide;
  log_format format = log_format::text;  // of the "dropped" line
  std::deque<Queued> lines;
  std::uint64_t dropped = 0;  // since the sink was last heard from
  bool writing = false;       // a line is with the sink now
  bool stop = false;          // the writer ends once lines is empty
  std::thread* writer = nullptr;
  std::condition_variable changed;  // a line came, or one was written
};

struct State {
  std::mutex mutex;
  std::condition_variable changed;  // a summary may be due sooner
  SharedSink process_sink;
  log_format process_format = log_format::text;
  bool process_format_set = false;
  std::map<int, LoopOutput> loops;
  // Each attached loop's, and process_wide's. Never erased while a writer
  // runs on it; the process's lives as long as the process.
  std::map<int, std::shared_ptr<Channel>> channels;
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

// Where loop's lines go: its channel, its sink and its format. A line of a
// loop that is not attached goes to the process's. With s.mutex held.
struct Route {
  std::shared_ptr<Channel> channel;
  SharedSink sink;
  log_format format = log_format::text;
};

Channel& process_channel(State& s) {
  std::shared_ptr<Channel>& c = s.channels[process_wide];
  if (!c) c = std::make_shared<Channel>();
  c->format = s.process_format;
  return *c;
}

Route route_of(State& s, int loop) {
  if (LoopOutput* out = find_loop(s, loop)) {
    return {s.channels.at(loop), out->sink ? out->sink : s.process_sink, out->format};
  }
  process_channel(s);
  return {s.channels.at(process_wide), s.process_sink, s.process_format};
}

// Hands c's lines to their sinks, in order, until c stops. Without s.mutex
// while a sink runs.
void run_channel(const std::shared_ptr<Channel>& c) {
  pthread_setname_np(pthread_self(), "stallwatch-out");
  State& s = state();
  std::unique_lock lock(s.mutex);
  for (;;) {
    c->changed.wait(lock, [&] { return c->stop || !c->lines.empty(); });
    if (c->lines.empty()) return;  // stopped, and everything written
    Queued q = std::move(c->lines.front());
    c->lines.pop_front();
    c->writing = true;
    lock.unlock();
    deliver(q.sink, q.line);
    lock.lock();
    if (const std::uint64_t dropped = std::exchange(c->dropped, 0); dropped > 0) {
      const std::string text = std::to_string(dropped) + " lines" +
                               (c->loop == process_wide ? std::string() : " of loop " + std::to_string(c->loop)) +
                               " were dropped while the sink was slow (at most " +
                               std::to_string(channel_bound) + " wait for it)";
      const std::string line =
          format(Message{c->loop, "lines_dropped", text, {{"dropped", static_cast<std::int64_t>(dropped)}}}, c->format);
      lock.unlock();
      deliver(q.sink, line);
      lock.lock();
    }
    c->writing = false;
    c->changed.notify_all();
  }
}

// With s.mutex held. The thread blocks every signal, so process-directed
// signals go to the service's own threads.
std::thread* start_quiet_thread(std::function<void()> fn) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  auto* thread = new std::thread(std::move(fn));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return thread;
}

// Queues one line for route's sink. With s.mutex held.
void enqueue(const Route& route, std::string line) {
  Channel& c = *route.channel;
  if (c.lines.size() >= channel_bound) {
    ++c.dropped;
    return;
  }
  c.lines.push_back({route.sink, std::move(line)});
  if (c.writer == nullptr) c.writer = start_quiet_thread([channel = route.channel] { run_channel(channel); });
  c.changed.notify_all();
}

// Waits until c has nothing left to write, or until deadline. With s.mutex held.
bool wait_written(std::unique_lock<std::mutex>& lock, Channel& c, std::chrono::steady_clock::time_point deadline) {
  return c.changed.wait_until(lock, deadline, [&] { return c.lines.empty() && !c.writing; });
}

template <class Event>
void write_event(int loop, const Event& event) {
  State& s = state();
  Route route;
  {
    std::lock_guard lock(s.mutex);
    route = route_of(s, loop);
  }
  try {
    std::string line = format(event, route.format);
    std::lock_guard lock(s.mutex);
    // The loop was detached meanwhile: its channel has stopped.
    if (route.channel->stop) route = route_of(s, loop);
    enqueue(route, std::move(line));
  } catch (...) {
    // Out of memory formatting one line, or no thread to write it: it is lost.
  }
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
    for (auto& [index, out] : s.loops) {
      std::vector<std::string> lines = take_summaries(s, index, out, now, false);
      if (!lines.empty()) {
        const Route route = route_of(s, index);
        for (std::string& line : lines) enqueue(route, std::move(line));
      }
      for (const ReportLimiter& limiter : out.limiters) {
        const std::uint64_t at = limiter.summary_due_ns();
        if (at != 0 && (next_due == 0 || at < next_due)) next_due = at;
      }
    }
    if (next_due == 0) {
      s.changed.wait(lock);
    } else {
      s.changed.wait_for(lock, std::chrono::nanoseconds(next_due > now ? next_due - now : 0));
    }
  }
}

// With s.mutex held.
void ensure_summary_thread(State& s) {
  if (s.summary_thread_started) return;
  s.summary_thread_started = true;
  const std::unique_ptr<std::thread> thread(start_quiet_thread(run_summaries));
  thread->detach();
}


// A fork child has only the forking thread: no summary thread, no writers,
// and the parent's queued lines are the parent's to write. The lock must not
// be held by a thread that is gone.
void prepare_fork() { state().mutex.lock(); }
void parent_after_fork() { state().mutex.unlock(); }
void child_after_fork() {
  State& s = state();
  s.summary_thread_started = false;
  for (auto& [index, c] : s.channels) {
    c->writer = nullptr;  // leaked: it does not exist here
    c->lines.clear();
    c->writing = false;
    c->dropped = 0;
  }
  s.mutex.unlock();
}

// Lines still queued as the process exits reach their sinks (for a while).
void flush_at_exit() { flush(std::chrono::seconds(2)); }

__attribute__((constructor)) void watch_forks() {
  pthread_atfork(prepare_fork, parent_after_fork, child_after_fork);
  std::atexit(flush_at_exit);
}

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
  std::shared_ptr<Channel>& c = s.channels[loop];
  if (!c) {
    c = std::make_shared<Channel>();
    c->loop = loop;
  }
  c->format = config.log_format;
}

void detach_loop(int loop) {
  State& s = state();
  std::thread* writer = nullptr;
  {
    std::lock_guard lock(s.mutex);
    LoopOutput* out = find_loop(s, loop);
    if (out == nullptr) return;
    const Route route = route_of(s, loop);
    for (std::string& line : take_summaries(s, loop, *out, 0, true)) enqueue(route, std::move(line));
    s.loops.erase(loop);
    s.channels.erase(loop);
    route.channel->stop = true;
    route.channel->changed.notify_all();
    writer = std::exchange(route.channel->writer, nullptr);
  }
  // It ends once every line it holds is written.
  if (writer != nullptr) {
    writer->join();
    delete writer;
  }
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

void message_and_flush(int loop, std::string event, std::string text, std::vector<Field> fields) {
  message(loop, std::move(event), std::move(text), std::move(fields));
  flush(std::chrono::seconds(2));
}

void end_process_strict(int loop, const std::string& why) {
  message(loop, "strict_exit",
          "strict mode: ending the process with status " + std::to_string(strict_exit_status) + " after " + why,
          {{"exit_status", std::int64_t{strict_exit_status}}});
  {
    // This line and those before it reach the sink, unless it hangs.
    State& s = state();
    std::unique_lock lock(s.mutex);
    const Route route = route_of(s, loop);
    wait_written(lock, *route.channel, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }
  std::fflush(nullptr);
  _exit(strict_exit_status);
}

bool flush(std::chrono::milliseconds timeout) {
  State& s = state();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(s.mutex);
  std::vector<std::shared_ptr<Channel>> channels;
  for (const auto& [index, c] : s.channels) channels.push_back(c);
  bool all = true;
  for (const auto& c : channels) all = wait_written(lock, *c, deadline) && all;
  return all;
}

void set_report_window_for_testing(std::chrono::nanoseconds window) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.window_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(window.count(), 1));
}

}  // namespace stallwatch::emit
