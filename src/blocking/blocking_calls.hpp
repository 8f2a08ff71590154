// Known blocking calls made on a loop: what the interposers of
// libstallwatch-probes (src/interpose/) report to the library, and what the
// metrics read back.
//
// The interposers ask stallwatch_probe_should_flag() before every probed
// call: off a loop fiber that is one call and a thread-local check. On a loop
// fiber, when the call really blocks, they call stallwatch_probe_record(name),
// which counts it and reports the first call from each call site with its
// stack (through the emitter, under the loop's rate limit), and in strict
// mode reports it and ends the process.
//
// run() calls blocking::configure(config) as each loop starts:
//
//   blocking::configure(config);  // may throw config_error
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>

#include "stallwatch/config.hpp"
#include "stallwatch/export.hpp"

// Entry points for libstallwatch-probes; C linkage so that the interposers
// find them by plain names. Exported from libstallwatch.so.
extern "C" {
// True when the calling thread runs a loop fiber outside stallwatch's internals
// and outside any allow_blocking scope. Any thread; async-signal-safe.
STALLWATCH_EXPORT bool stallwatch_probe_should_flag() noexcept;
// Records a blocking call to `function` (a name from config/probed_functions.hpp)
// made by the caller's caller. Call only when should_flag() said true. Counts
// the call; the first call from each call site is reported (symbolized off
// the loop, rate-limited). In strict mode it does not return: it reports the
// call and ends the process with exit status strict_exit_status. Keeps errno.
// Loop thread.
STALLWATCH_EXPORT void stallwatch_probe_record(const char* function) noexcept;
}

namespace stallwatch::blocking {

// At most this many distinct function names are counted; further names are
// counted under "other" (bounded label cardinality).
inline constexpr std::size_t max_counted_functions = 64;

// Applies a loop's configuration: strict mode and STALLWATCH_ALLOW; then, in
// strict mode, check_probes_canary(config), and warn_if_probes_misordered(). Throws config_error for a
// malformed STALLWATCH_ALLOW or a failed canary. The loop thread, as its loop
// starts.
void configure(const Config& config);

// Waits until every report queued so far is written (reports are symbolized
// on a thread of their own); false when the timeout passed first. Any thread.
bool flush_reports(std::chrono::milliseconds timeout);

// Visits (function, count) for every function recorded so far; at most a
// bounded number of distinct names, the rest under "other". Any thread.
void for_each_call_count(const std::function<void(std::string_view, std::uint64_t)>& fn);

// Call-site reports since the process started: written, and held back by
// the rate limit (each held-back call counts; its site is reported once the
// rate allows). Strict-mode reports end the process and are not counted here.
struct ReportCounts {
  std::uint64_t reported = 0;
  std::uint64_t suppressed = 0;
};
ReportCounts report_counts();

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

}  // namespace stallwatch::blocking
