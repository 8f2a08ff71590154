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

inline Deadline deadline_at(Clock::time_point at) { return Deadline{at}; }

template <class Rep, class Period>
Deadline deadline_after(std::chrono::duration<Rep, Period> d) {
  return Deadline{Clock::now() + std::chrono::duration_cast<Clock::duration>(d)};
}

}  // namespace v1
}  // namespace stallwatch
