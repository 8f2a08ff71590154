// What every parking call shares: its deadline on the loop's clock, and the
// typed errors for a park that was cut short. Loop thread.
#pragma once

#include <cstdint>

#include "core/fiber.hpp"
#include "stallwatch/deadline.hpp"

namespace stallwatch::core {

// Nanoseconds on CLOCK_MONOTONIC (steady_clock's epoch); 0 for no deadline.
std::uint64_t to_deadline_ns(Deadline deadline);
// Throws cancelled when the fiber was asked to stop; `what` names the call.
void throw_if_cancel_requested(const Fiber* self, const char* what);
// Throws deadline_exceeded or cancelled when a park ended that way.
void throw_if_interrupted(WakeReason why, const char* what);

}  // namespace stallwatch::core
