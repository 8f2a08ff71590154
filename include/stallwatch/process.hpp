// stallwatch/process.hpp — run a subprocess without blocking the loop.
//
// The counterpart of Python's subprocess.run: the program starts with
// posix_spawn, its stdin is fed and its stdout/stderr captured through
// non-blocking pipes, and its exit is awaited through a pidfd on the loop's
// reactor. Loop thread, from a fiber.
//
//   auto result = stallwatch::run_process({"git", "rev-parse", "HEAD"});
//   if (result.exit_code == 0) use(result.out);
//
// Errors: std::system_error when the program cannot be started (ENOENT for
// a missing program); deadline_exceeded past the deadline, after the child
// was killed (SIGKILL) and reaped ("stallwatch: run_process sleep: deadline
// exceeded after 100 ms", whichever wait ran out: output, input or exit);
// cancelled ("stallwatch: run_process sleep: cancelled"), the child killed
// and reaped likewise. The child is always reaped: no zombies.
#pragma once

#include <string>
#include <vector>

#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

struct ProcessOptions {
  std::string input;             // written to the child's stdin, then closed
  bool capture_stderr = true;    // false: the child inherits our stderr
  Deadline deadline;             // past it the child is killed
  std::vector<std::string> env;  // "NAME=value" entries; empty: inherit ours
};

struct ProcessResult {
  int exit_code = -1;    // the exit status, or -1 when killed by a signal
  int term_signal = 0;   // the signal that killed it, 0 when it exited
  std::string out;       // everything written to stdout
  std::string err;       // everything written to stderr (when captured)
  bool ok() const { return exit_code == 0; }
};

// Runs argv[0] (looked up in PATH) with argv, waits for it to exit, and
// returns its status and output. argv must not be empty.
STALLWATCH_EXPORT ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

}  // namespace v1
}  // namespace stallwatch
