// stallwatch/watchdog.hpp — what the watchdog has seen: the stall profile and
// the stall count.
//
// The watchdog thread starts with the first loop (stallwatch::run) unless
// STALLWATCH_WATCHDOG=off, and stops when the last loop ends. When a slice
// runs past the threshold it captures the loop thread's stack while it is
// still stalled, and logs a report (see DESIGN.md for the format).
//
// The stall profile aggregates every captured stall stack with the stalled
// time attributed to it, in folded-stack format (flamegraph.pl, speedscope):
//
//   stallwatch::run([] { serve(); });
//   stallwatch::write_stall_profile("/tmp/stalls.folded");
//   // $ flamegraph.pl --countname=us /tmp/stalls.folded > stalls.svg
//
// Every function here may be called from any thread, on or off a loop.
//
// Capture signal: the watchdog asks the stalled thread for its stack with a
// real-time signal. By default (STALLWATCH_SIGNAL=auto) it is the first from
// SIGRTMIN+4 up that has no handler, named in the log once; a signal set in
// Options::capture_signal or STALLWATCH_SIGNAL that already has a handler
// makes run() throw config_error. A handler the application installs over
// stallwatch's later is reported ("the capture signal's handler was
// replaced: ...") and gets no captures; the disposition stallwatch found
// is put back when the last loop ends. A loop thread stalled in sleep, usleep,
// nanosleep, clock_nanosleep, poll, ppoll, select, pselect, epoll_wait or
// epoll_pwait gets no signal: libstallwatch interposes those calls, saves
// the registers at the call, and the watchdog unwinds the caller's stack
// from them while the call waits, so it runs its full time and returns what
// it would have returned unwatched. Any other call gets the signal, installed
// with SA_RESTART: reads, writes and lock waits resume; calls the kernel
// never restarts (sigtimedwait, pause, io_getevents, semop, a socket read
// with SO_RCVTIMEO …) return early with EINTR, as for any signal
// (src/watchdog/README.md, "Signals and their side effects").
//
// Strict mode (STALLWATCH_STRICT=1 or Options::strict): the first stall's
// report is written, then the process ends with _exit(strict_exit_status).
#pragma once

#include <cstdint>
#include <string>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// The exit status of a process ended by a stall in strict mode (EX_SOFTWARE).
inline constexpr int strict_exit_status = 70;

// The stall profile as folded stacks: one line per distinct stack, frames from
// the outermost to the stalled function separated by ';', then a space and
// the stalled time in microseconds. Sorted; empty when nothing stalled.
STALLWATCH_EXPORT std::string stall_profile_folded();

// Writes stall_profile_folded() to path (through path + ".tmp" and a rename,
// so readers never see half a file). Throws std::system_error naming the file.
STALLWATCH_EXPORT void write_stall_profile(const std::string& path);

// Forgets the profile gathered so far.
STALLWATCH_EXPORT void reset_stall_profile();

// Stalls seen so far in this process, on every loop (reported or suppressed).
STALLWATCH_EXPORT std::uint64_t stall_count() noexcept;

// The text-format report of the most recent stall (whatever the log format,
// even when the rate limit held it back); empty before the first stall.
STALLWATCH_EXPORT std::string last_stall_report();

}  // namespace v1
}  // namespace stallwatch
