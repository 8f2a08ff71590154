// stallwatch/config.hpp — Options for run(), and how the environment overrides them.
//
// Options are read once, when run() starts a loop, on the calling thread.
// Every field is optional: an unset field takes its STALLWATCH_* environment
// variable if set, else the default in DESIGN.md. The environment wins over a
// set field, so an operator can retune a service without rebuilding it.
//
//   stallwatch::Options options;
//   options.threshold = std::chrono::milliseconds(20);
//   options.log_sink = [](std::string_view line) { my_logger.warn("{}", line); };
//   stallwatch::run(options, [] { serve(); });
//
// An invalid value throws stallwatch::config_error naming the variable, the
// value and what is accepted.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/errors.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

enum class log_format { text, json };

struct Options {
  std::optional<bool> watchdog;                       // STALLWATCH_WATCHDOG: on|off
  std::optional<std::chrono::milliseconds> threshold; // STALLWATCH_THRESHOLD_MS: 1..600000
  std::optional<int> reports_per_minute;              // STALLWATCH_REPORTS_PER_MINUTE: 0..100000, per loop
  std::optional<stallwatch::log_format> log_format;   // STALLWATCH_LOG_FORMAT: text|json
  std::optional<std::string> metrics_addr;            // STALLWATCH_METRICS_ADDR: host:port|off
  std::optional<bool> strict;                         // STALLWATCH_STRICT: 0|1
  std::optional<std::size_t> stack_kb;                // STALLWATCH_STACK_KB: 16..65536
  // STALLWATCH_SIGNAL: auto|a real-time signal number. Unset (auto): the
  // first real-time signal from SIGRTMIN+4 up that has no handler, logged
  // once. An explicit signal that already has a handler stallwatch did not
  // install makes run() throw config_error. See README "Options".
  std::optional<int> capture_signal;
  // STALLWATCH_NOT_APP: more code that is not the application's, for the
  // culprit a report names: comma-separated module names ("libcurl",
  // "libsqlite3.so.0") and source path prefixes ("/opt/vendor/include/").
  // Adds to the defaults (the C/C++ runtimes, the shared libraries under
  // /lib, /usr/lib …, stallwatch, /usr/include/ …).
  std::optional<std::string> not_app;
  // STALLWATCH_SCHED_BATCH: 0|1. 1: the loop's thread runs under Linux's
  // SCHED_BATCH while run() runs (when it was SCHED_OTHER; put back after):
  // woken by I/O, it no longer preempts the thread running on its CPU but
  // waits for that one's time slice to end. Where the loop trades small
  // messages with processes on the same CPUs (a local database, a proxy)
  // that saves a pair of context switches per message; the cost is up to a
  // scheduler time slice of wake-up latency (a clock tick or more:
  // milliseconds) while another program keeps the CPU busy. Threads the
  // loop's thread starts later inherit the policy. See docs/BENCHMARKS.md (PostgreSQL).
  std::optional<bool> sched_batch;

  // Receives every line of this loop (stall and blocking-call reports,
  // summaries, messages), without a trailing newline; lines that belong to
  // no loop go to the first sink any loop set. Unset: stderr. Every field is
  // escaped first, so no value can break a line. Called on the watchdog
  // thread, the report threads or the loop's own thread, never with a lock
  // held that a loop needs: it must be thread-safe, and if it is slow it
  // delays only later lines, not the loops. A sink that throws loses nothing:
  // the line goes to stderr.
  std::function<void(std::string_view line)> log_sink;
};

// The resolved configuration: every value set, validated.
struct Config {
  bool watchdog = true;
  std::chrono::milliseconds threshold{50};
  int reports_per_minute = 10;
  stallwatch::log_format log_format = log_format::text;
  std::string metrics_addr = "127.0.0.1:9464";  // "off" disables the endpoint
  bool strict = false;
  std::size_t stack_kb = 64;
  int capture_signal = 0;  // 0: auto, chosen when the first loop starts
  std::string capture_signal_setting;  // where an explicit signal was set: "STALLWATCH_SIGNAL" or "Options::capture_signal"
  std::vector<std::string> not_app;  // module names and /path/prefixes, each validated
  bool sched_batch = false;
  std::function<void(std::string_view line)> log_sink;
};

// Merges options with the STALLWATCH_* environment and validates the result.
// Throws config_error. Any thread.
STALLWATCH_EXPORT Config resolve_config(const Options& options);

}  // namespace v1
}  // namespace stallwatch
