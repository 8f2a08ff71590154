// Per-loop rate limit and stack deduplication for stall reports, over fixed
// one-minute windows. Watchdog thread only. NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <unordered_map>

namespace stallwatch::watchdog {

class ReportLimiter {
 public:
  static constexpr std::uint64_t window_ns = 60'000'000'000ull;

  explicit ReportLimiter(int per_minute) : per_minute_(per_minute) {}

  // Whether a report may be written now; a refused one is counted for the
  // window's summary.
  bool admit(std::uint64_t now_ns);
  // How many reports with this stack the window has seen, this one included.
  int note_stack(std::uint64_t stack_id);
  // When the window is over: the number suppressed in it (maybe 0), and a new
  // window begins. Returns 0 while the window runs.
  std::uint64_t take_expired_summary(std::uint64_t now_ns);
  // The number suppressed in the running window, which is then reset (the
  // loop ends: nothing may be left unsaid).
  std::uint64_t take_pending();

 private:
  void roll(std::uint64_t now_ns);

  int per_minute_;
  bool open_ = false;
  std::uint64_t window_start_ns_ = 0;
  int admitted_ = 0;
  std::uint64_t suppressed_ = 0;
  std::unordered_map<std::uint64_t, int> stacks_;
};

}  // namespace stallwatch::watchdog
