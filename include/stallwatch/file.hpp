// stallwatch/file.hpp — read or write a whole file without blocking the loop.
//
// Regular files are never "not ready" to epoll, so these run the blocking
// open/read/write on the in_thread pool and park the fiber until done. Loop
// thread, from a fiber.
//
//   std::string config = stallwatch::read_file("/etc/myservice.conf");
//   stallwatch::write_file("/var/lib/myservice/state", state);
//
// Errors: std::system_error carrying errno, its message naming the path;
// not_on_loop naming read_file or write_file when called off a loop;
// cancelled ("stallwatch: read_file: cancelled") once the pool thread is done.
#pragma once

#include <string>
#include <string_view>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

// Returns the whole contents of the file at path.
STALLWATCH_EXPORT std::string read_file(const std::string& path);

// Replaces the file at path with data (created with mode 0644 less the
// umask). Atomic for readers: data goes to a temporary file in the same
// directory, is flushed, and is renamed over path.
STALLWATCH_EXPORT void write_file(const std::string& path, std::string_view data);

}  // namespace v1
}  // namespace stallwatch
