// The calling thread's own stack, as program counters.
#pragma once

namespace stallwatch::watchdog {

// Fills pcs with up to max return addresses of the calling thread, innermost
// first (this function's caller is pcs[0]); returns how many. Uses unw_step
// rather than unw_backtrace, whose per-thread trace cache frees itself in the
// last round of thread-exit destructors, after ThreadSanitizer has already
// finished the thread. Async-signal-safe.
int backtrace_here(void** pcs, int max) noexcept;

}  // namespace stallwatch::watchdog
