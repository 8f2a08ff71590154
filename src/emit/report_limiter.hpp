// One rate limit for one loop's reports of one kind, over fixed windows
// (a minute, unless a test shortens it), with stack deduplication. Used under
// the emitter's lock. NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <unordered_map>

namespace stallwatch::emit {

class ReportLimiter {
 public:
  ReportLimiter(int per_window, std::uint64_t window_ns) : per_window_(per_window), window_ns_(window_ns) {}

  // Whether a report may be written now; a refused one is counted for the
  // window's summary.
  bool admit(std::uint64_t now_ns);
  // How many reports with this stack the window has seen, this one included.
  int note_stack(std::uint64_t stack_id);
  // When the window is over: the number suppressed in it (maybe 0), and a new
  // window begins with the next report. Returns 0 while the window runs.
  std::uint64_t take_expired_summary(std::uint64_t now_ns);
  // The number suppressed in the running window, which is then reset (the
  // loop ends: nothing may be left unsaid).
  std::uint64_t take_pending();
  // When the running window closes, if it holds suppressed reports (a summary
  // is then due); 0 otherwise.
  std::uint64_t summary_due_ns() const { return open_ && suppressed_ > 0 ? window_start_ns_ + window_ns_ : 0; }

 private:
  void roll(std::uint64_t now_ns);

  int per_window_;
  std::uint64_t window_ns_;
  bool open_ = false;
  std::uint64_t window_start_ns_ = 0;
  int admitted_ = 0;
  std::uint64_t suppressed_ = 0;
  std::unordered_map<std::uint64_t, int> stacks_;
};

}  // namespace stallwatch::emit
