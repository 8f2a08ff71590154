// What every parking call shares: its deadline on the loop's clock, and the
// typed errors for a park that was cut short. Loop thread.
#pragma once

#include <chrono>
#include <cstdint>

#include "core/fiber.hpp"
#include "stallwatch/deadline.hpp"

namespace stallwatch::core {

// Nanoseconds on CLOCK_MONOTONIC (steady_clock's epoch); 0 for no deadline.
inline std::uint64_t to_deadline_ns(Deadline deadline) {
  if (!deadline.is_set()) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.at.time_since_epoch()).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 1;
}

// The throws, out of line and cold: every park passes the checks below.
[[noreturn, gnu::cold]] void throw_cancelled(const char* what);
[[noreturn, gnu::cold]] void throw_deadline_exceeded(const char* what);
[[noreturn, gnu::cold]] void throw_primitive_destroyed(const char* what);

// Throws cancelled when the fiber was asked to stop; `what` names the call.
inline void throw_if_cancel_requested(const Fiber* self, const char* what) {
  if (self->cancel_requested) [[unlikely]] throw_cancelled(what);
}

// Throws deadline_exceeded, cancelled or primitive_destroyed when a park ended that way.
inline void throw_if_interrupted(WakeReason why, const char* what) {
  if (why == WakeReason::notified) [[likely]] return;
  if (why == WakeReason::timeout) throw_deadline_exceeded(what);
  if (why == WakeReason::cancelled) throw_cancelled(what);
  if (why == WakeReason::abandoned) throw_primitive_destroyed(what);
}

}  // namespace stallwatch::core
