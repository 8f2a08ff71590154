#include "emit/report_limiter.hpp"

namespace stallwatch::emit {

void ReportLimiter::roll(std::uint64_t now_ns) {
  open_ = true;
  window_start_ns_ = now_ns;
  admitted_ = 0;
  suppressed_ = 0;
  stacks_.clear();
}

bool ReportLimiter::admit(std::uint64_t now_ns) {
  if (!open_) roll(now_ns);
  if (admitted_ < per_window_) {
    ++admitted_;
    return true;
  }
  ++suppressed_;
  return false;
}

int ReportLimiter::note_stack(std::uint64_t stack_id) {
  // Bounded: a window with this many distinct stacks starts counting afresh.
  if (stacks_.size() >= 4096) stacks_.clear();
  return ++stacks_[stack_id];
}

std::uint64_t ReportLimiter::take_expired_summary(std::uint64_t now_ns) {
  if (!open_ || now_ns < window_start_ns_ + window_ns_) return 0;
  const std::uint64_t suppressed = suppressed_;
  open_ = false;
  admitted_ = 0;
  suppressed_ = 0;
  stacks_.clear();
  return suppressed;
}

std::uint64_t ReportLimiter::take_pending() {
  const std::uint64_t suppressed = suppressed_;
  suppressed_ = 0;
  return suppressed;
}

}  // namespace stallwatch::emit
