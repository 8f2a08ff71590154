// The descriptor wait behind wait_readable / wait_writable (io.hpp), for the
// calls built on it: its errors (not_on_loop, deadline_exceeded, cancelled)
// name `what`, the call the user made ("read_exact"), not the wait inside.
// Loop thread, from a fiber.
#pragma once

#include "stallwatch/deadline.hpp"

namespace stallwatch::io {

// Parks the fiber until fd is readable (or writable), or the deadline passes.
void wait_for(int fd, bool writable, Deadline deadline, const char* what);

}  // namespace stallwatch::io
