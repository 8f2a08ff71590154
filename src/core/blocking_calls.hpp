// Known blocking calls made on a loop: what libstallwatch-probes reports to
// the library, and what the metrics collectable reads back.
//
// The probes (src/probes, a separate shared library interposing libc) ask
// stallwatch_probe_should_flag() before every probed call: off a loop fiber
// that is one call and a thread-local check. On a loop fiber, when the call
// really blocks, they call stallwatch_probe_record(name), which counts it,
// logs the first call from each call site with its stack (rate-limited), and
// in strict mode reports it and ends the process.
//
// The loop calls configure_blocking_calls(config) as it starts:
//
//   core::configure_blocking_calls(config);  // may throw config_error
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/config.hpp"
#include "stallwatch/export.hpp"

// Entry points for libstallwatch-probes; C linkage so that the probes library
// finds them by plain names. Exported from libstallwatch.so.
extern "C" {
// True when the calling thread runs a loop fiber outside stallwatch's internals
// and outside any allow_blocking scope. Any thread; async-signal-safe.
STALLWATCH_EXPORT bool stallwatch_probe_should_flag() noexcept;
// Records a blocking call to `function` (a name from probes/probed_functions.hpp)
// made by the caller's caller. Call only when should_flag() said true. Counts
// the call; the first call from each call site is queued for the report
// writer (symbolized off the loop, rate-limited). In strict mode it does not
// return: it logs the report and ends the process with exit status
// blocking_call_exit_status. Keeps errno. Loop thread.
STALLWATCH_EXPORT void stallwatch_probe_record(const char* function) noexcept;
}

namespace stallwatch::core {

// The exit status of a process ended by a blocking call in strict mode.
inline constexpr int blocking_call_exit_status = 70;

// At most this many distinct function names are counted; further names are
// counted under "other" (bounded label cardinality).
inline constexpr std::size_t max_counted_functions = 64;

// Waits until every report queued so far is symbolized and logged (reports
// are written by a thread of their own, never on the loop); false when the
// timeout passed first. Also runs at exit. Any thread but the report writer.
bool flush_blocking_call_reports(std::chrono::milliseconds timeout);

// Visits (function, count) for every function recorded so far; at most a
// bounded number of distinct names, the rest under "other". Any thread.
void for_each_blocking_call_count(const std::function<void(std::string_view, std::uint64_t)>& fn);

// Call-site reports since the process started: logged, and held back by the
// rate limit (each held-back call counts; its site is reported once the rate
// allows). Strict-mode reports end the process and are not counted here.
struct BlockingReportCounts {
  std::uint64_t reported = 0;
  std::uint64_t suppressed = 0;
};

// The report counts so far. Any thread.
BlockingReportCounts blocking_call_report_counts();

// One STALLWATCH_ALLOW entry: `function` (a probed name, or "*" for all) made
// from code in `module` (empty: from anywhere).
struct AllowEntry {
  std::string function;
  std::string module;
  bool operator==(const AllowEntry&) const = default;
};

// Parses a STALLWATCH_ALLOW value: "function,function@module,*@module".
// Blanks around entries are ignored; an empty value allows nothing. Throws
// config_error naming the variable, the value, the bad entry and what is
// accepted. Any thread.
std::vector<AllowEntry> parse_allow_list(std::string_view text);

// True when an entry permits `function` called from a stack whose frames lie
// in the modules named (file base names such as "libcurl.so.4"). An entry's
// module matches a base name that equals it or continues it with '.'
// ("libcurl" matches "libcurl.so.4"). Any thread.
bool allow_list_permits(const std::vector<AllowEntry>& allow, std::string_view function,
                        const std::vector<std::string>& modules);

// Applies a loop's configuration to the probes: strict mode, the report rate
// (reports_per_minute, process-wide for blocking calls), and STALLWATCH_ALLOW
// from the environment; then, in strict mode, check_probes_canary(config),
// and warn_if_probes_misordered().
// Throws config_error for a malformed STALLWATCH_ALLOW or a failed canary.
// The loop thread, as its loop starts.
void configure_blocking_calls(const Config& config);

// In strict mode, checks that libstallwatch-probes is loaded and that its
// interposers come before libc; otherwise logs and throws config_error saying
// how to load them (LD_PRELOAD or linking stallwatch-probes). Does nothing
// when config.strict is false. Any thread.
void check_probes_canary(const Config& config);

// True when libstallwatch-probes is loaded and comes before libc and
// libstallwatch.so in symbol lookup. Any thread.
bool probes_interposed();

// Logs once per process when libstallwatch-probes is loaded but
// probes_interposed() is false: its interposers are then not reached, or
// reached only through libstallwatch's own for the waits. Any thread.
void warn_if_probes_misordered();

}  // namespace stallwatch::core
