// The process-wide log: one sink (the first loop's Options::log_sink, else
// stderr) and one format, behind one mutex so lines from several threads never
// interleave.
#include "core/log.hpp"

#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>

namespace stallwatch::core {
namespace {

struct LogState {
  std::mutex mutex;
  std::function<void(std::string_view)> sink;
  log_format format = log_format::text;
  bool format_set = false;
};

LogState& state() {
  // Never destroyed: threads may still log while static destructors run.
  static LogState* s = new LogState;
  return *s;
}

// write(2) the whole buffer, retrying on EINTR and short writes.
void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

void configure_log(const Config& config) {
  LogState& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.sink && config.log_sink) s.sink = config.log_sink;
  if (!s.format_set) {
    s.format = config.log_format;
    s.format_set = true;
  }
}

void log_line(std::string_view line) {
  LogState& s = state();
  std::lock_guard lock(s.mutex);
  if (s.sink) {
    try {
      s.sink(line);
      return;
    } catch (...) {
      // A throwing sink must not take the watchdog down; fall back to stderr.
    }
  }
  std::string buffer;
  buffer.reserve(line.size() + 1);
  buffer.append(line);
  buffer.push_back('\n');
  write_all(STDERR_FILENO, buffer.data(), buffer.size());
}

log_format current_log_format() {
  LogState& s = state();
  std::lock_guard lock(s.mutex);
  return s.format;
}

}  // namespace stallwatch::core
