// The stall profile: every captured stall stack with the stalled time
// attributed to it, aggregated for the process. Any thread (one mutex).
// NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stallwatch::watchdog {

// Adds ns of stalled time to the stack given innermost frame first.
void profile_add(const std::vector<std::string>& frames_leaf_first, std::uint64_t ns);
// Folded-stack text: "root;...;leaf <microseconds>\n" per stack, sorted.
std::string profile_folded();
void profile_reset();

}  // namespace stallwatch::watchdog
