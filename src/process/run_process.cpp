// run_process: posix_spawn, non-blocking pipes, and a pidfd to await exit.
#include "base/system_error.hpp"
#include "stallwatch/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "base/thread_state.hpp"
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"

extern char** environ;

namespace stallwatch {
inline namespace v1 {

namespace {

// One end of a pipe, closed (and forgotten by the reactor) on scope exit.
class PipeEnd {
 public:
  PipeEnd() = default;
  explicit PipeEnd(int fd) : fd_(fd) {}
  PipeEnd(PipeEnd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  PipeEnd& operator=(PipeEnd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~PipeEnd() { reset(); }
  int get() const { return fd_; }
  void reset() noexcept {
    if (fd_ < 0) return;
    forget_fd(fd_);
    ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  PipeEnd read;
  PipeEnd write;
};

// O_CLOEXEC on both ends, so a child spawned meanwhile by another thread
// does not inherit them; the spawn's dup2 clears it on the child's copy.
Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) base::throw_errno(errno, std::string("run_process: ") + "pipe2");
  return Pipe{PipeEnd(fds[0]), PipeEnd(fds[1])};
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) base::throw_errno(errno, std::string("run_process: ") + "fcntl(O_NONBLOCK)");
}

// Reads fd to end of file into out, parking on EAGAIN.
void drain(int fd, std::string& out, Deadline deadline) {
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      out.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return;
    } else if (errno == EAGAIN) {
      wait_readable(fd, deadline);
    } else if (errno != EINTR) {
      base::throw_errno(errno, std::string("run_process: ") + "read from child");
    }
  }
}

// Writes all of data to fd, parking on EAGAIN. A child that exits without
// reading its input is not an error (EPIPE ends the feed).
void feed(int fd, std::string_view data, Deadline deadline) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN) {
      wait_writable(fd, deadline);
    } else if (errno == EPIPE) {
      return;
    } else if (errno != EINTR) {
      base::throw_errno(errno, std::string("run_process: ") + "write to child");
    }
  }
}

void record_status(int status, ProcessResult& result) {
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
  }
}

// Parks until pid exits, then reaps it. Uses a pidfd on the reactor; where
// the kernel has no pidfd_open, polls with a growing sleep instead.
int await_exit(pid_t pid, Deadline deadline) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    PipeEnd guard(pidfd);
    wait_readable(pidfd, deadline);
  } else {
    auto delay = std::chrono::milliseconds(1);
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) return status;
      if (r < 0 && errno != EINTR) base::throw_errno(errno, "run_process: waitpid");
      // Named after the operation by run_process, as the reactor's waits are.
      if (deadline.is_set() && Clock::now() >= deadline.at) core::throw_deadline_exceeded("waitpid");
      sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(50));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) base::throw_errno(errno, std::string("run_process: ") + "waitpid");
  }
  return status;
}

// Cleanup after an error: the child must not outlive the call as a zombie.
// SIGKILL ends it at once, so the blocking reap is short.
void kill_and_reap(pid_t pid) noexcept {
  ::kill(pid, SIGKILL);
  base::InternalBlockingScope internal;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

class SpawnActions {
 public:
  SpawnActions() { ::posix_spawn_file_actions_init(&actions_); }
  ~SpawnActions() { ::posix_spawn_file_actions_destroy(&actions_); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
  void dup_to(int fd, int target) { ::posix_spawn_file_actions_adddup2(&actions_, fd, target); }
  const posix_spawn_file_actions_t* get() const { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_;
};

// A clean signal state for the child: nothing blocked (the parent may block
// SIGTERM to read it from a signalfd) and every disposition at default.
class SpawnAttributes {
 public:
  SpawnAttributes() {
    ::posix_spawnattr_init(&attr_);
    sigset_t none;
    sigset_t all;
    sigemptyset(&none);
    sigfillset(&all);
    ::posix_spawnattr_setsigmask(&attr_, &none);
    ::posix_spawnattr_setsigdefault(&attr_, &all);
    ::posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  ~SpawnAttributes() { ::posix_spawnattr_destroy(&attr_); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
  const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

struct HelperState {
  PipeEnd input_end;
  PipeEnd err_end;
  std::string input;
  std::string err;
  Deadline deadline;
  std::exception_ptr error;  // the first helper failure, rethrown by the caller

  // Runs a helper's work, keeping its failure for the caller to rethrow,
  // so an abandoned helper never ends with an unobserved error.
  template <class F>
  void run(F&& work) {
    try {
      work();
    } catch (...) {
      if (!error) error = std::current_exception();
    }
  }
};

// The work of run_process; the caller renames its waits' errors after it.
ProcessResult spawn_and_collect(const std::vector<std::string>& argv, const ProcessOptions& options) {
  Pipe in = make_pipe();
  Pipe out = make_pipe();
  Pipe err;
  if (options.capture_stderr) err = make_pipe();

  SpawnActions actions;
  actions.dup_to(in.read.get(), STDIN_FILENO);
  actions.dup_to(out.write.get(), STDOUT_FILENO);
  if (options.capture_stderr) actions.dup_to(err.write.get(), STDERR_FILENO);

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (const std::string& e : options.env) env.push_back(const_cast<char*>(e.c_str()));
  env.push_back(nullptr);

  const SpawnAttributes attributes;
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], actions.get(), attributes.get(), args.data(),
                                options.env.empty() ? environ : env.data());
  if (rc != 0) base::throw_errno(rc, std::string("run_process: ") + "spawn '" + argv[0] + "'");

  // The child holds its own copies now.
  in.read.reset();
  out.write.reset();
  err.write.reset();

  // The helper fibers share this with the caller, so they stay safe even
  // if the caller unwinds before they end (killing the child ends them).
  auto shared = std::make_shared<HelperState>();
  shared->input_end = std::move(in.write);
  shared->err_end = std::move(err.read);
  shared->input = options.input;
  shared->deadline = options.deadline;

  ProcessResult result;
  Task<void> feeder;
  Task<void> err_reader;
  try {
    set_nonblocking(shared->input_end.get());
    set_nonblocking(out.read.get());
    feeder = spawn(
        [shared] {
          shared->run([&] { feed(shared->input_end.get(), shared->input, shared->deadline); });
          shared->input_end.reset();
        },
        "run_process stdin");
    if (options.capture_stderr) {
      set_nonblocking(shared->err_end.get());
      err_reader = spawn([shared] { shared->run([&] { drain(shared->err_end.get(), shared->err, shared->deadline); }); },
                         "run_process stderr");
    }
    drain(out.read.get(), result.out, options.deadline);
    feeder.join();
    if (err_reader.valid()) err_reader.join();
    if (shared->error) std::rethrow_exception(shared->error);
    result.err = std::move(shared->err);
    record_status(await_exit(pid, options.deadline), result);
  } catch (...) {
    kill_and_reap(pid);
    feeder.cancel();
    err_reader.cancel();
    throw;
  }
  return result;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
  core::Loop::require("run_process");  // before the child is spawned
  if (argv.empty()) throw std::invalid_argument("stallwatch: run_process: argv is empty");
  // A deadline or a cancel in any of its waits (output, input, exit) is
  // reported as this call's: "run_process sleep: deadline exceeded after …".
  return core::as_operation([&] { return "run_process " + argv[0]; }, options.deadline,
                            [&] { return spawn_and_collect(argv, options); });
}

}  // namespace v1
}  // namespace stallwatch
