// What every parking call shares: its deadline on the loop's clock, and the
// typed errors for a park that was cut short. Loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "core/fiber.hpp"
#include "stallwatch/deadline.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/export.hpp"

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

// The same errors, named after the operation a user called rather than the
// wait inside it: "stallwatch: connect to 127.0.0.1:9: deadline exceeded
// after 500 ms", "stallwatch: in_process: cancelled". `after` is the time the
// deadline lay ahead when the operation began, in whole milliseconds.
// Exported for the client libraries (libstallwatch-curl, -pg); internal.
[[noreturn, gnu::cold]] STALLWATCH_EXPORT void throw_operation_deadline_exceeded(const std::string& operation,
                                                                                 std::chrono::nanoseconds after);
[[noreturn, gnu::cold]] STALLWATCH_EXPORT void throw_operation_cancelled(const std::string& operation);

// Runs body, an operation that parks until deadline at most, and renames the
// deadline_exceeded or cancelled that any wait inside it throws after the
// operation. name() builds the operation's name, only when it is needed. The
// clock is read once at the start, and only when a deadline is set.
template <class Name, class Body>
decltype(auto) as_operation(Name&& name, Deadline deadline, Body&& body) {
  const Clock::time_point started = deadline.is_set() ? Clock::now() : Clock::time_point{};
  try {
    return std::forward<Body>(body)();
  } catch (const deadline_exceeded&) {
    throw_operation_deadline_exceeded(name(), deadline.is_set() ? deadline.at - started : std::chrono::nanoseconds(0));
  } catch (const cancelled&) {
    throw_operation_cancelled(name());
  }
}

}  // namespace stallwatch::core
