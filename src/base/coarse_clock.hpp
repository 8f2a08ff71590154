// A process-wide coarse clock, so the hot path can time slices without a
// clock read: whoever reads the real clock anyway (the watchdog on each tick,
// a loop on each scheduler pass) publishes it here, and a context switch
// stamps its slice with one relaxed load.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace stallwatch::base {

inline std::atomic<std::uint64_t> coarse_now_ns_{0};

// Reads CLOCK_MONOTONIC. Async-signal-safe.
inline std::uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// The latest published time; never behind by more than one watchdog tick
// while the watchdog runs.
inline std::uint64_t coarse_now() { return coarse_now_ns_.load(std::memory_order_relaxed); }

// Publishes a fresh reading (monotonic: a stale writer never moves it back).
inline void publish_now(std::uint64_t now_ns) {
  std::uint64_t seen = coarse_now_ns_.load(std::memory_order_relaxed);
  while (seen < now_ns &&
         !coarse_now_ns_.compare_exchange_weak(seen, now_ns, std::memory_order_relaxed)) {
  }
}

inline std::uint64_t refresh_now() {
  const std::uint64_t now = monotonic_ns();
  publish_now(now);
  return now;
}

}  // namespace stallwatch::base
