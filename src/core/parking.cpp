#include "core/parking.hpp"

#include <chrono>
#include <string>

#include "stallwatch/errors.hpp"

namespace stallwatch::core {

std::uint64_t to_deadline_ns(Deadline deadline) {
  if (!deadline.is_set()) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.at.time_since_epoch()).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 1;
}

void throw_if_cancel_requested(const Fiber* self, const char* what) {
  if (self->cancel_requested) throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled");
}

void throw_if_interrupted(WakeReason why, const char* what) {
  if (why == WakeReason::timeout) throw deadline_exceeded(std::string("stallwatch: ") + what + ": deadline exceeded");
  if (why == WakeReason::cancelled) throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled");
}

}  // namespace stallwatch::core
