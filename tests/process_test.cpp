// run_process (process.hpp): posix_spawn, captured output, pidfd exit.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>

#include "stallwatch/errors.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/process.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

// True when this process has no child left, zombie or not.
bool no_children() {
  int status;
  return waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD;
}

}  // namespace

TEST_CASE("stdout, stderr and the exit status come back") {
  sw::run([] {
    auto r = sw::run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK(r.exit_code == 3);
    CHECK(r.term_signal == 0);
    CHECK_FALSE(r.ok());
    CHECK(sw::run_process({"true"}).ok());
  });
  CHECK(no_children());
}

TEST_CASE("input is fed while output is drained, both larger than a pipe") {
  sw::run([] {
    std::string input(4 << 20, 'a');
    for (std::size_t i = 0; i < input.size(); i += 97) input[i] = '\n';
    sw::ProcessOptions options;
    options.input = input;
    auto r = sw::run_process({"cat"}, options);
    CHECK(r.ok());
    CHECK(r.out == input);
  });
}

TEST_CASE("a child killed by a signal reports it") {
  sw::run([] {
    auto r = sw::run_process({"sh", "-c", "kill -KILL $$"});
    CHECK(r.exit_code == -1);
    CHECK(r.term_signal == SIGKILL);
  });
  CHECK(no_children());
}

TEST_CASE("a missing program is ENOENT") {
  sw::run([] {
    try {
      sw::run_process({"stallwatch-no-such-program"});
      FAIL("should throw");
    } catch (const std::system_error& e) {
      CHECK(e.code().value() == ENOENT);
      CHECK(std::string(e.what()).find("stallwatch-no-such-program") != std::string::npos);
    }
  });
  CHECK(no_children());
}

TEST_CASE("past the deadline the child is killed and reaped") {
  sw::run([] {
    sw::ProcessOptions options;
    options.deadline = sw::deadline_after(100ms);
    CHECK_THROWS_AS(sw::run_process({"sleep", "30"}, options), sw::deadline_exceeded);
  });
  CHECK(no_children());
}

TEST_CASE("a deadline or a cancel names run_process and the program, not the wait inside it") {
  sw::run([] {
    sw::ProcessOptions options;
    options.deadline = sw::deadline_after(100ms);
    CHECK_THROWS_WITH_AS(sw::run_process({"sleep", "30"}, options),
                         "stallwatch: run_process sleep: deadline exceeded after 100 ms", sw::deadline_exceeded);
    // A deadline reached while the output is drained (the child holds its
    // stdout open) and one reached while only its exit is awaited (it closed
    // its stdout first) read the same.
    options.deadline = sw::deadline_after(150ms);
    CHECK_THROWS_WITH_AS(sw::run_process({"sh", "-c", "exec >&-; sleep 30"}, options),
                         "stallwatch: run_process sh: deadline exceeded after 150 ms", sw::deadline_exceeded);

    auto call = sw::spawn([] { sw::run_process({"sleep", "30"}); }, "runs sleep");
    sw::sleep_for(50ms);
    call.cancel();
    CHECK_THROWS_WITH_AS(call.join(), "stallwatch: run_process sleep: cancelled", sw::cancelled);
  });
  CHECK(no_children());
}

TEST_CASE("the environment can be replaced") {
  sw::run([] {
    sw::ProcessOptions options;
    options.env = {"STALLWATCH_TEST_VALUE=42", "PATH=/usr/bin:/bin"};
    auto r = sw::run_process({"sh", "-c", "echo $STALLWATCH_TEST_VALUE"}, options);
    CHECK(r.out == "42\n");
  });
}

TEST_CASE("the loop keeps running other fibers while a child runs") {
  sw::run([] {
    int ticks = 0;
    bool running = true;
    auto ticker = sw::spawn([&] {
      while (running) {
        ++ticks;
        sw::sleep_for(5ms);
      }
    });
    auto r = sw::run_process({"sleep", "0.3"});
    running = false;
    ticker.join();
    CHECK(r.ok());
    CHECK(ticks >= 5);
  });
}

TEST_CASE("several children at once from several fibers") {
  sw::run([] {
    std::vector<sw::Task<std::string>> tasks;
    for (int i = 0; i < 8; ++i) {
      tasks.push_back(sw::spawn([i] { return sw::run_process({"sh", "-c", "sleep 0.1; echo " + std::to_string(i)}).out; }));
    }
    for (int i = 0; i < 8; ++i) CHECK(tasks[i].join() == std::to_string(i) + "\n");
  });
  CHECK(no_children());
}
