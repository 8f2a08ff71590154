// The OS side of stack capture: the handler's installation (sigaction), the
// request (tgkill), and priming the unwinder. The only file that makes these
// calls. NOT async-signal-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "watchdog/sigsafe/capture_slot.hpp"

namespace stallwatch::watchdog {

// The default capture signal: SIGRTMIN + 4 (real-time, so requests queue and
// are never merged with a user's SIGUSR1/2).
int default_capture_signal();

// Installs capture_signal_handler for signo (SA_SIGINFO | SA_RESTART |
// SA_ONSTACK) unless it is already installed for that number. Throws
// std::system_error if sigaction fails. Any thread.
void install_capture_handler(int signo);

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
