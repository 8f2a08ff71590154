// wait_readable / wait_writable (io.hpp): park the fiber on the reactor.
#include "io/wait.hpp"

#include "core/loop.hpp"
#include "core/parking.hpp"
#include "stallwatch/io.hpp"

namespace stallwatch {

void io::wait_for(int fd, bool writable, Deadline deadline, const char* what) {
  core::Loop& loop = core::Loop::require(what);
  core::Fiber* self = loop.running();
  core::throw_if_cancel_requested(self, what);
  if (loop.reactor().consume_or_wait(fd, writable, &self->io)) return;
  core::throw_if_interrupted(loop.park(core::to_deadline_ns(deadline)), what);
}

inline namespace v1 {

void wait_readable(int fd, Deadline deadline) { io::wait_for(fd, false, deadline, "wait_readable"); }
void wait_writable(int fd, Deadline deadline) { io::wait_for(fd, true, deadline, "wait_writable"); }

void forget_fd(int fd) noexcept {
  if (core::Loop* loop = core::Loop::current()) loop->reactor().forget(fd);
}

}  // namespace v1
}  // namespace stallwatch
