// wait_readable / wait_writable (io.hpp): park the fiber on the reactor.
#include <chrono>
#include <string>

#include "core/loop.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/io.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

void wait_for(int fd, bool writable, Deadline deadline) {
  const char* what = writable ? "wait_writable" : "wait_readable";
  core::Loop& loop = core::Loop::require(what);
  core::Fiber* self = loop.running();
  if (self->cancel_requested) throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled");
  if (loop.reactor().consume_or_wait(fd, writable, self)) return;
  std::uint64_t deadline_ns = 0;
  if (deadline.is_set()) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.at.time_since_epoch()).count();
    deadline_ns = ns > 0 ? static_cast<std::uint64_t>(ns) : 1;
  }
  switch (loop.park(deadline_ns)) {
    case core::WakeReason::timeout:
      throw deadline_exceeded(std::string("stallwatch: ") + what + ": deadline exceeded");
    case core::WakeReason::cancelled:
      throw cancelled(std::string("stallwatch: ") + what + ": fiber cancelled");
    default:
      return;
  }
}

}  // namespace

void wait_readable(int fd, Deadline deadline) { wait_for(fd, false, deadline); }
void wait_writable(int fd, Deadline deadline) { wait_for(fd, true, deadline); }

void forget_fd(int fd) noexcept {
  if (core::Loop* loop = core::Loop::current()) loop->reactor().forget(fd);
}

}  // namespace v1
}  // namespace stallwatch
