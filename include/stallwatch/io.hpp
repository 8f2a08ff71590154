// stallwatch/io.hpp — wait for a descriptor without blocking the loop.
//
// The fiber parks until the descriptor is ready; the loop's reactor watches
// it meanwhile. Loop thread only. One fiber may wait on a descriptor for each
// direction at a time.
//
//   int fd = ...;  // O_NONBLOCK
//   stallwatch::wait_readable(fd, stallwatch::deadline_after(5s));
//   ssize_t n = ::read(fd, buf, sizeof buf);
#pragma once

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// Parks until fd is readable (or hung up / in error, so the next read reports
// it). Throws deadline_exceeded, cancelled, or std::system_error if fd cannot
// be watched.
STALLWATCH_EXPORT void wait_readable(int fd, Deadline deadline = {});
// Parks until fd is writable (or in error).
STALLWATCH_EXPORT void wait_writable(int fd, Deadline deadline = {});
// Tells the reactor fd is about to be closed, so it stops watching it. Call
// before close() on any fd that was waited on. Loop thread.
STALLWATCH_EXPORT void forget_fd(int fd) noexcept;

}  // namespace v1
}  // namespace stallwatch
