// The OS side of stack capture: the handler's installation (sigaction), the
// request (tgkill), and priming the unwinder. The only file that makes these
// calls. NOT async-signal-safe.
//
// The signal stays the application's to choose (DESIGN.md rule 7): `auto`
// takes a real-time signal nobody handles, an explicit one that somebody
// handles is refused, a handler installed over ours is reported, and the
// disposition found is put back when the last loop ends.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "watchdog/sigsafe/capture_slot.hpp"

namespace stallwatch::watchdog {

// The first capture signal tried: SIGRTMIN + 4 (real-time, so requests
// queue and are never merged with a user's SIGUSR1/2).
int default_capture_signal();

// Installs capture_signal_handler for signo (SA_SIGINFO | SA_RESTART |
// SA_ONSTACK) unless it is already installed for that number, whatever was
// there. For tests of the handler; loops go through claim_capture_signal.
// Throws std::system_error if sigaction fails. Any thread.
void install_capture_handler(int signo);

// "SIGRTMIN+4 (signal 38)": how logs and errors name a real-time signal.
std::string describe_signal(int signo);

// The capture signal a starting loop uses, with stallwatch's handler
// installed on it and the loop counted as one of its users.
struct ClaimedSignal {
  int signo = 0;
  // Set once per process and signal, when `auto` chose it: the line saying
  // which signal the watchdog uses (and which it passed over), to be logged.
  std::string chosen_line;
};

// configured == 0 (STALLWATCH_SIGNAL=auto, the default): the signal
// stallwatch's handler is on already, else the first real-time signal from
// SIGRTMIN+4 up whose disposition is the default (no handler, not ignored).
// configured != 0: that signal, which must have the default disposition or
// stallwatch's handler; otherwise throws config_error naming the signal,
// `setting` (where it was configured), what holds it, and how to pick
// another. The disposition found is kept, to be put back by the release of
// the last user. Throws config_error when no real-time signal is free, and
// std::system_error if sigaction fails. Any thread; callers serialize with fork.
ClaimedSignal claim_capture_signal(int configured, std::string_view setting);

// One user of signo (a loop) is done. The last one puts back the disposition
// found at the claim, unless stallwatch's handler was replaced meanwhile: the
// application's own handler then stays. Any thread.
void release_capture_signal(int signo);

// After fork, in the child: the users are the loops the child keeps, one
// entry (its signal) each; the parent's other loop threads are gone.
void recount_capture_signal_users(const std::vector<int>& signals_of_remaining_loops);

// Empty while stallwatch's handler is installed for signo. Otherwise the
// plain account for the log: "the capture signal's handler was replaced:
// SIGRTMIN+4 (signal 38) now has the handler at 0x... (app_handler in
// /usr/bin/app), ...".
// Watchdog thread (one sigaction call).
std::string capture_handler_replacement(int signo);

// Runs one unwind on the calling thread so libunwind's lazy set-up (its
// tables, locks, per-thread state) is done before the handler ever runs.
// The loop thread calls it once at start.
void prime_unwinder();

// Asks thread tid to capture its stack into slot: bumps the request number and
// sends signo with tgkill. Returns the request number, or 0 if the signal
// could not be sent (the thread is gone). Watchdog thread.
std::uint64_t request_capture(CaptureSlot& slot, pid_t tid, int signo);

// Waits until the handler published request, polling for at most timeout_ns.
// True when the slot holds the answer. Watchdog thread.
bool wait_for_capture(const CaptureSlot& slot, std::uint64_t request, std::uint64_t timeout_ns);

}  // namespace stallwatch::watchdog
