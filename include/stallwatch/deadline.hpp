// stallwatch/deadline.hpp — deadlines for parking operations.
//
// Every call that parks a fiber takes a Deadline; the default never expires.
// Past its deadline the call throws stallwatch::deadline_exceeded.
//
//   channel.receive(stallwatch::deadline_after(std::chrono::seconds(1)));
#pragma once

#include <chrono>

namespace stallwatch {
inline namespace v1 {

using Clock = std::chrono::steady_clock;

struct Deadline {
  Clock::time_point at = Clock::time_point::max();
  bool is_set() const { return at != Clock::time_point::max(); }
};

namespace detail {

// from + d, saturated at the clock's ends instead of wrapping: a duration too
// long for the clock (seconds::max(), 400 years) gives time_point::max(),
// which never comes. Every duration stallwatch turns into a time point goes
// through here.
template <class Rep, class Period>
Clock::time_point saturating_add(Clock::time_point from, std::chrono::duration<Rep, Period> d) {
  // Compared in long double nanoseconds, where no duration overflows.
  using wide = std::chrono::duration<long double, std::nano>;
  const wide to = wide(from.time_since_epoch()) + wide(d);
  if (to >= wide(Clock::time_point::max().time_since_epoch())) return Clock::time_point::max();
  if (to <= wide(Clock::time_point::min().time_since_epoch())) return Clock::time_point::min();
  return from + std::chrono::duration_cast<Clock::duration>(d);
}

}  // namespace detail

inline Deadline deadline_at(Clock::time_point at) { return Deadline{at}; }

// A deadline d from now; one too far for the clock never expires.
template <class Rep, class Period>
Deadline deadline_after(std::chrono::duration<Rep, Period> d) {
  return Deadline{detail::saturating_add(Clock::now(), d)};
}

}  // namespace v1
}  // namespace stallwatch
