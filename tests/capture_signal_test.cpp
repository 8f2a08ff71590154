// The capture signal stays the application's to choose (issue 11): `auto`
// passes over signals the application handles and says which it took, an
// explicit signal with a foreign handler is refused, a handler installed
// over stallwatch's is reported plainly, and the disposition found is put
// back when the last loop ends. Signal dispositions are process-wide, so
// every case runs in a forked child; the parent checks its exit status and
// what it logged.
#include <doctest/doctest.h>

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "stallwatch/config.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/loop.hpp"
#include "watchdog/sigsafe/capture_slot.hpp"

#include "child_process.hpp"

namespace {

using stallwatch_test::ChildResult;

// Runs body in a forked child with stderr captured and the environment the
// cases expect (no STALLWATCH_SIGNAL, no metrics endpoint); the child exits
// with body's result.
ChildResult run_in_child(const std::function<int()>& body) {
  return stallwatch_test::run_in_child([&body] {
    ::unsetenv("STALLWATCH_SIGNAL");
    ::setenv("STALLWATCH_METRICS_ADDR", "off", 1);
    return body();
  });
}

int exit_code(const ChildResult& r) { return WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -WTERMSIG(r.status); }

std::size_t count_of(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

// Options whose log lines go to stderr, one per line.
stallwatch::Options logging_options() {
  stallwatch::Options options;
  options.log_sink = [](std::string_view line) {
    std::string out(line);
    out += '\n';
    (void)!::write(STDERR_FILENO, out.data(), out.size());
  };
  return options;
}

volatile sig_atomic_t app_handler_calls = 0;
void app_handler(int) { app_handler_calls = app_handler_calls + 1; }

void install_app_handler(int signo) {
  struct sigaction action {};
  action.sa_handler = &app_handler;
  sigemptyset(&action.sa_mask);
  REQUIRE(::sigaction(signo, &action, nullptr) == 0);
}

struct sigaction disposition(int signo) {
  struct sigaction current {};
  ::sigaction(signo, nullptr, &current);
  return current;
}
bool is_stallwatch_handler(int signo) {
  const struct sigaction a = disposition(signo);
  return (a.sa_flags & SA_SIGINFO) != 0 && a.sa_sigaction == &stallwatch::watchdog::capture_signal_handler;
}
bool is_app_handler(int signo) {
  const struct sigaction a = disposition(signo);
  return (a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == &app_handler;
}
bool is_default(int signo) {
  const struct sigaction a = disposition(signo);
  return (a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == SIG_DFL;
}

std::string name_of(int offset) {
  return "SIGRTMIN+" + std::to_string(offset) + " (signal " + std::to_string(SIGRTMIN + offset) + ")";
}

void spin_for(std::chrono::milliseconds ms) {
  const auto until = std::chrono::steady_clock::now() + ms;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace

TEST_CASE("auto takes SIGRTMIN+4 when nothing handles it, says so once, and puts SIG_DFL back after") {
  const auto child = run_in_child([] {
    const int signo = SIGRTMIN + 4;
    if (!is_default(signo)) return 10;
    for (int i = 0; i < 2; ++i) {
      if (stallwatch::run(logging_options(), [&] { return is_stallwatch_handler(signo) ? 0 : 1; }) != 0) return 11;
    }
    return is_default(signo) ? 0 : 12;
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  CHECK(count_of(child.err, "stallwatch: capture signal " + name_of(4) +
                                " (STALLWATCH_SIGNAL=auto: the first real-time signal from " + name_of(4) +
                                " without a handler)\n") == 1);
}

TEST_CASE("auto passes over a signal the application handles, names it, and leaves its handler alone") {
  const auto child = run_in_child([] {
    install_app_handler(SIGRTMIN + 4);
    const int in_run = stallwatch::run(logging_options(), [] {
      if (!is_app_handler(SIGRTMIN + 4)) return 1;
      return is_stallwatch_handler(SIGRTMIN + 5) ? 0 : 2;
    });
    if (in_run != 0) return 10 + in_run;
    if (!is_app_handler(SIGRTMIN + 4)) return 20;
    return is_default(SIGRTMIN + 5) ? 0 : 21;
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  CHECK(count_of(child.err, "stallwatch: capture signal " + name_of(5) +
                                " (STALLWATCH_SIGNAL=auto: the first real-time signal from " + name_of(4) +
                                " without a handler; " + name_of(4) + " has the handler at 0x") == 1);
  CHECK(app_handler_calls == 0);
}

TEST_CASE("an explicit signal the application handles makes run throw config_error naming it and the way out") {
  const auto child = run_in_child([] {
    const int signo = SIGRTMIN + 6;
    install_app_handler(signo);
    bool main_ran = false;
    const auto attempt = [&](const stallwatch::Options& options) {
      try {
        stallwatch::run(options, [&] { main_ran = true; });
      } catch (const stallwatch::config_error& e) {
        std::string line = std::string("caught: ") + e.what() + "\n";
        (void)!::write(STDERR_FILENO, line.data(), line.size());
      }
    };
    ::setenv("STALLWATCH_SIGNAL", std::to_string(signo).c_str(), 1);
    attempt(logging_options());
    ::unsetenv("STALLWATCH_SIGNAL");
    stallwatch::Options options = logging_options();
    options.capture_signal = signo;
    attempt(options);
    if (main_ran) return 10;
    if (!is_app_handler(signo)) return 11;
    // Nothing of the refused loops stayed behind: a loop runs on this thread.
    return stallwatch::run(logging_options(), [] { return 0; });
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  for (const char* setting : {"STALLWATCH_SIGNAL", "Options::capture_signal"}) {
    CAPTURE(setting);
    const std::string head = "caught: stallwatch: the capture signal " + name_of(6) + ", set by " + setting +
                             ", already has the handler at 0x";
    const std::string tail = ", which stallwatch did not install and will not take over. Pick another capture signal: "
                             "STALLWATCH_SIGNAL=auto (the first real-time signal from " +
                             name_of(4) + " without a handler) or another real-time signal number from " +
                             std::to_string(SIGRTMIN) + " to " + std::to_string(SIGRTMAX) + "\n";
    const auto at = child.err.find(head);
    REQUIRE(at != std::string::npos);
    CHECK(child.err.find(tail, at) != std::string::npos);
  }
}

TEST_CASE("an explicit free signal is stallwatch's while any loop runs, and SIG_DFL again after the last") {
  const auto child = run_in_child([] {
    const int signo = SIGRTMIN + 7;
    stallwatch::Options options = logging_options();
    options.capture_signal = signo;
    const int outer = stallwatch::run(options, [&] {
      if (!is_stallwatch_handler(signo)) return 1;
      int inner = -1;
      std::thread other([&] { inner = stallwatch::run(options, [&] { return is_stallwatch_handler(signo) ? 0 : 1; }); });
      other.join();
      if (inner != 0) return 2;
      // The other loop ended; this one still needs the handler.
      return is_stallwatch_handler(signo) ? 0 : 3;
    });
    if (outer != 0) return 10 + outer;
    return is_default(signo) ? 0 : 20;
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  CHECK(child.err.find("stallwatch: capture signal") == std::string::npos);  // explicit: nothing to announce
}

TEST_CASE("a handler installed over stallwatch's is reported plainly, gets no capture signal, and stays") {
  const auto child = run_in_child([] {
    const int signo = SIGRTMIN + 8;
    stallwatch::Options options = logging_options();
    options.capture_signal = signo;
    options.threshold = std::chrono::milliseconds(20);
    stallwatch::run(options, [&] {
      install_app_handler(signo);
      spin_for(std::chrono::milliseconds(300));  // a stall, sampled at 20, 40, 80, 160 ms
    });
    if (app_handler_calls != 0) return 10;
    return is_app_handler(signo) ? 0 : 11;
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  const std::string replaced = "the capture signal's handler was replaced: " + name_of(8) + " now has the handler at 0x";
  CHECK(count_of(child.err, "stallwatch: loop 0: " + replaced) == 1);
  CHECK(count_of(child.err, ", installed after stallwatch's. The watchdog sends it no more captures, so this loop's "
                            "stalls are reported without their stacks; leave the signal to stallwatch, or give "
                            "stallwatch another with STALLWATCH_SIGNAL\n") == 1);
  CHECK(child.err.find("sample 1\n  (stack not captured: " + replaced) != std::string::npos);
  CHECK(child.err.find("did not answer the capture signal in time") == std::string::npos);
  // No capture, and still the fiber's name (read from the loop, not the handler).
  CHECK(child.err.find("stallwatch: stall loop=0 fiber=1 \"main\" ") != std::string::npos);
  CHECK(child.err.find("fiber=1 \"\"") == std::string::npos);
}

TEST_CASE("a capture left unanswered because the handler was replaced meanwhile says so, not only timeout") {
  const auto child = run_in_child([] {
    const int signo = SIGRTMIN + 9;
    stallwatch::Options options = logging_options();
    options.capture_signal = signo;
    options.threshold = std::chrono::milliseconds(20);
    stallwatch::run(options, [&] {
      // The first request (at about 20 ms) waits, blocked; the handler is
      // replaced before the watchdog gives up on it (250 ms).
      sigset_t capture;
      sigemptyset(&capture);
      sigaddset(&capture, signo);
      pthread_sigmask(SIG_BLOCK, &capture, nullptr);
      spin_for(std::chrono::milliseconds(100));
      install_app_handler(signo);
      spin_for(std::chrono::milliseconds(500));
    });
    return is_app_handler(signo) ? 0 : 11;
  });
  INFO("stderr: " << child.err);
  CHECK(exit_code(child) == 0);
  CHECK(child.err.find("sample 1\n  (stack not captured: the capture signal's handler was replaced: " + name_of(9)) !=
        std::string::npos);
  CHECK(child.err.find("stallwatch: stall loop=0 fiber=1 \"main\" ") != std::string::npos);
  CHECK(child.err.find("fiber=1 \"\"") == std::string::npos);
}
