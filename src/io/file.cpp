// Whole-file read and write, run on the in_thread pool.
#include "stallwatch/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "core/loop.hpp"
#include "core/parking.hpp"
#include "stallwatch/in_thread.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

[[noreturn]] void throw_path_error(int err, const char* what, const std::string& path) {
  throw std::system_error(err, std::generic_category(), std::string("stallwatch: ") + what + " '" + path + "'");
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Blocking: runs on the in_thread pool.
std::string read_file_blocking(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_path_error(errno, "open", path);
  struct stat st {};
  std::string out;
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) out.reserve(static_cast<std::size_t>(st.st_size));
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_path_error(errno, "read", path);
    }
    out.append(chunk, static_cast<std::size_t>(n));
  }
  return out;
}

// Blocking: runs on the in_thread pool.
void write_file_blocking(const std::string& path, std::string_view data) {
  static std::atomic<unsigned> serial{0};
  const std::string temp = path + ".tmp." + std::to_string(::getpid()) + "." +
                           std::to_string(serial.fetch_add(1, std::memory_order_relaxed));
  // O_EXCL with mode 0666: the umask applies as for any new file.
  FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (fd.get() < 0) throw_path_error(errno, "create temporary file for", path);
  try {
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
      const ssize_t n = ::write(fd.get(), p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_path_error(errno, "write", temp);
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) < 0) throw_path_error(errno, "fsync", temp);
    if (::close(fd.release()) < 0) throw_path_error(errno, "close", temp);
    if (::rename(temp.c_str(), path.c_str()) < 0) throw_path_error(errno, "rename to", path);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

}  // namespace

// Each checks for a loop itself, so an error names the call the user made,
// not the in_thread it goes through.
std::string read_file(const std::string& path) {
  core::Loop::require("read_file");
  return core::as_operation([] { return std::string("read_file"); }, Deadline{},
                            [&] { return in_thread(read_file_blocking, path); });
}

void write_file(const std::string& path, std::string_view data) {
  core::Loop::require("write_file");
  core::as_operation([] { return std::string("write_file"); }, Deadline{},
                     [&] { in_thread(write_file_blocking, path, data); });
}

}  // namespace v1
}  // namespace stallwatch
