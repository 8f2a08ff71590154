// wait_readable / wait_writable (io.hpp): park the fiber on the reactor.
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "stallwatch/io.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

void wait_for(int fd, bool writable, Deadline deadline) {
  const char* what = writable ? "wait_writable" : "wait_readable";
  core::Loop& loop = core::Loop::require(what);
  core::Fiber* self = loop.running();
  core::throw_if_cancel_requested(self, what);
  if (loop.reactor().consume_or_wait(fd, writable, &self->io)) return;
  core::throw_if_interrupted(loop.park(core::to_deadline_ns(deadline)), what);
}

}  // namespace

void wait_readable(int fd, Deadline deadline) { wait_for(fd, false, deadline); }
void wait_writable(int fd, Deadline deadline) { wait_for(fd, true, deadline); }

void forget_fd(int fd) noexcept {
  if (core::Loop* loop = core::Loop::current()) loop->reactor().forget(fd);
}

}  // namespace v1
}  // namespace stallwatch
