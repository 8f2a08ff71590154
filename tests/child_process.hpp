// A test body run in a forked child with its stderr captured: for what is
// process-wide (signal dispositions, fatal overflows, strict exits). Test
// helper; include it in one test file per executable.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace stallwatch_test {

struct ChildResult {
  int status = 0;
  std::string err;  // everything the child wrote to stderr, its log included
};

// Runs body in a forked child, stderr into a pipe; the child exits with
// body's result, and is stopped by SIGALRM after a minute.
inline ChildResult run_in_child(const std::function<int()>& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[1]);
    ::alarm(60);
    ::_exit(body());
  }
  ::close(fds[1]);
  ChildResult result;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) result.err.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  REQUIRE(::waitpid(pid, &result.status, 0) == pid);
  return result;
}

}  // namespace stallwatch_test
