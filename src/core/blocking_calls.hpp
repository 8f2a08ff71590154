// Counts of known blocking calls made on a loop, recorded by the blocking-call
// probes (libstallwatch-probes) and read by the metrics collectable.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace stallwatch::core {

// Visits (function, count) for every function recorded so far; at most a
// bounded number of distinct names, the rest under "other". Any thread.
void for_each_blocking_call_count(const std::function<void(std::string_view, std::uint64_t)>& fn);

}  // namespace stallwatch::core
