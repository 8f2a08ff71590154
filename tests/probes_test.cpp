// Blocking-call probes: the allow-list parser, the guard, the recording path
// (with a loop fiber's thread state set by hand), and real programs run with
// the probes preloaded or linked (tests/probes/blocking_demo.cpp).
#include <doctest/doctest.h>

#include "stallwatch/features.hpp"
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "blocking/blocking_calls.hpp"
#include "config/allow_list.hpp"
#include "emit/emitter.hpp"
#include "core/loop_record.hpp"
#include "base/thread_state.hpp"
#include "config/probed_functions.hpp"
#include "stallwatch/watchdog.hpp"
#include "stallwatch/allow_blocking.hpp"
#include "stallwatch/errors.hpp"

namespace core = stallwatch::core;
namespace base = stallwatch::base;

namespace {

// ---- in-process helpers ----

std::mutex log_mutex;
std::vector<std::string> logged;

void capture_log() {
  static const bool installed = [] {
    stallwatch::Config config;
    config.log_sink = [](std::string_view line) {
      std::lock_guard lock(log_mutex);
      logged.emplace_back(line);
    };
    stallwatch::emit::configure_process(config);
    return true;
  }();
  (void)installed;
  // Reports an earlier test queued must not land in this test's lines.
  REQUIRE(stallwatch::blocking::flush_reports(std::chrono::seconds(30)));
  REQUIRE(stallwatch::emit::flush(std::chrono::seconds(30)));
  std::lock_guard lock(log_mutex);
  logged.clear();
}

// The lines logged so far, once the report writer has written what is queued.
std::vector<std::string> log_lines() {
  REQUIRE(stallwatch::blocking::flush_reports(std::chrono::seconds(30)));
  REQUIRE(stallwatch::emit::flush(std::chrono::seconds(30)));
  std::lock_guard lock(log_mutex);
  return logged;
}

std::uint64_t count_of(std::string_view function) {
  std::uint64_t n = 0;
  stallwatch::blocking::for_each_call_count([&](std::string_view f, std::uint64_t c) {
    if (f == function) n = c;
  });
  return n;
}

// GCC's UBSan reports stores into this test's view of the initial-exec
// thread_local as null-pointer accesses (a false positive: plain builds and
// ASan see the right address), so the accessors opt out of that one check.
#define STALLWATCH_TLS_ACCESS __attribute__((noinline, no_sanitize("null")))

// Makes the calling thread look like loop `index` running fiber `fiber`, its
// lines going to the process's sink under a rate of reports_per_minute.
class FakeLoopFiber {
 public:
  STALLWATCH_TLS_ACCESS FakeLoopFiber(int index, std::uint64_t fiber, int reports_per_minute = 100,
                                      std::function<void(std::string_view)> sink = {}) {
    record_.index = index;
    identity_.id = fiber;
    identity_.name = "fake";
    identity_.name_len = 4;
    stallwatch::Config config;
    config.reports_per_minute = reports_per_minute;
    config.log_sink = std::move(sink);
    stallwatch::emit::attach_loop(index, config);
    stallwatch::detail::tls_current_loop = &record_;
    base::tls_thread_state.fiber = &identity_;
  }
  STALLWATCH_TLS_ACCESS ~FakeLoopFiber() {
    base::tls_thread_state = base::ThreadState{};
    stallwatch::detail::tls_current_loop = nullptr;
    stallwatch::blocking::flush_reports(std::chrono::seconds(30));
    stallwatch::emit::detach_loop(record_.index);
  }
  void switch_to(std::uint64_t fiber) { identity_.id = fiber; }
  core::LoopRecord& record() { return record_; }

 private:
  core::LoopRecord record_;
  base::FiberIdentity identity_;
};

stallwatch::Config production(int reports_per_minute) {
  stallwatch::Config config;
  config.reports_per_minute = reports_per_minute;
  return config;
}

std::string config_error_of(std::string_view allow) {
  try {
    stallwatch::config::parse_allow_list(allow);
  } catch (const stallwatch::config_error& e) {
    return e.what();
  }
  return "no error";
}

// ---- running the demo program ----

struct Outcome {
  int exit_status = -1;  // -1 when killed by a signal
  std::string out;
  std::string err;
};

std::string env_or_skip(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// Runs program with argument, the STALLWATCH_* variables in env set (others
// unset), with or without the probes preloaded; collects stdout and stderr.
Outcome run_demo(const std::string& program, const std::string& argument,
                 const std::map<std::string, std::string>& env, bool preload) {
  int out_pipe[2];
  int err_pipe[2];
  REQUIRE(pipe(out_pipe) == 0);
  REQUIRE(pipe(err_pipe) == 0);
  const std::string probes = env_or_skip("PROBES_LIB");
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (const char* name : {"STALLWATCH_STRICT", "STALLWATCH_ALLOW", "STALLWATCH_LOG_FORMAT",
                             "STALLWATCH_REPORTS_PER_MINUTE", "STALLWATCH_THRESHOLD_MS", "LD_PRELOAD"}) {
      unsetenv(name);
    }
    setenv("STALLWATCH_METRICS_ADDR", "off", 1);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    if (preload) {
      setenv("LD_PRELOAD", probes.c_str(), 1);
      // Under AddressSanitizer the preload comes before the ASan runtime: fine
      // here, the probes forward to the next definition, ASan's interceptor.
      const char* asan = std::getenv("ASAN_OPTIONS");
      const std::string options = std::string(asan != nullptr ? asan : "") + ":verify_asan_link_order=0";
      setenv("ASAN_OPTIONS", options.c_str(), 1);
    }
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close(out_pipe[0]);
    close(err_pipe[0]);
    execl(program.c_str(), program.c_str(), argument.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  Outcome outcome;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_pipes = 2;
  while (open_pipes > 0) {
    if (poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      } else {
        (i == 0 ? outcome.out : outcome.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

Outcome run_preloaded(const std::string& argument, const std::map<std::string, std::string>& env = {}) {
  return run_demo(env_or_skip("PROBES_DEMO"), argument, env, true);
}

std::size_t reports_of(const Outcome& o, const std::string& function) {
  const std::string needle = "blocking call " + function + " on loop=";
  std::size_t n = 0;
  for (std::size_t at = o.err.find(needle); at != std::string::npos; at = o.err.find(needle, at + 1)) ++n;
  return n;
}

bool have_programs() { return !env_or_skip("PROBES_LIB").empty() && !env_or_skip("PROBES_DEMO").empty(); }

}  // namespace

// ---- STALLWATCH_ALLOW ----

TEST_CASE("STALLWATCH_ALLOW: functions, modules and blanks") {
  using E = stallwatch::config::AllowEntry;
  CHECK(stallwatch::config::parse_allow_list("").empty());
  CHECK(stallwatch::config::parse_allow_list("  ").empty());
  CHECK(stallwatch::config::parse_allow_list("read") == std::vector<E>{{"read", ""}});
  CHECK(stallwatch::config::parse_allow_list(" getaddrinfo@libcurl , fsync,*@libpq.so.5") ==
        std::vector<E>{{"getaddrinfo", "libcurl"}, {"fsync", ""}, {"*", "libpq.so.5"}});
  for (const auto& probed : stallwatch::config::probed_functions) {
    CHECK(stallwatch::config::parse_allow_list(probed.name).size() == 1);
  }
}

TEST_CASE("STALLWATCH_ALLOW: a malformed list is a clear error") {
  const std::string empty = config_error_of("read,,fsync");
  CHECK(empty.find("STALLWATCH_ALLOW=\"read,,fsync\"") != std::string::npos);
  CHECK(empty.find("is empty") != std::string::npos);
  CHECK(empty.find("accepted: a comma-separated list of function or function@module") != std::string::npos);
  CHECK(empty.find("pthread_mutex_lock") != std::string::npos);  // lists what is accepted
  CHECK(config_error_of("read,").find("is empty") != std::string::npos);
  CHECK(config_error_of("reed").find("entry \"reed\" names a function not probed") != std::string::npos);
  CHECK(config_error_of("@libc").find("has no function before '@'") != std::string::npos);
  CHECK(config_error_of("read@").find("has no module after '@'") != std::string::npos);
  CHECK(config_error_of("read@lib/x.so").find("not a file name") != std::string::npos);
  CHECK(config_error_of("read@a@b").find("not a file name") != std::string::npos);
  CHECK(config_error_of("*").find("name a module") != std::string::npos);
}

TEST_CASE("STALLWATCH_ALLOW: an entry permits its function, from its module when it names one") {
  const auto allow = stallwatch::config::parse_allow_list("fsync,getaddrinfo@libcurl,*@libpq");
  const std::vector<std::string> app = {"service", "libstallwatch.so.0"};
  const std::vector<std::string> curl = {"libcurl.so.4", "service"};
  CHECK(stallwatch::config::allow_list_permits(allow, "fsync", app));
  CHECK_FALSE(stallwatch::config::allow_list_permits(allow, "read", app));
  CHECK(stallwatch::config::allow_list_permits(allow, "getaddrinfo", curl));
  CHECK_FALSE(stallwatch::config::allow_list_permits(allow, "getaddrinfo", app));
  CHECK_FALSE(stallwatch::config::allow_list_permits(allow, "getaddrinfo", {"libcurlx.so.1"}));
  CHECK(stallwatch::config::allow_list_permits(allow, "write", {"libpq.so.5"}));
  CHECK(stallwatch::config::allow_list_permits(allow, "recv", {"libpq"}));
  CHECK_FALSE(stallwatch::config::allow_list_permits(allow, "recv", {"libpqxx.so"}));
}

// ---- which calls are flagged ----

TEST_CASE("only a loop fiber outside internals and allow_blocking scopes is checked") {
  CHECK_FALSE(stallwatch_probe_should_flag());  // plain thread
  {
    FakeLoopFiber fiber(0, 7);
    CHECK(stallwatch_probe_should_flag());
    {
      base::InternalBlockingScope internal;
      CHECK_FALSE(stallwatch_probe_should_flag());
    }
    fiber.switch_to(0);  // the scheduler itself
    CHECK_FALSE(stallwatch_probe_should_flag());
    fiber.switch_to(7);
    CHECK(stallwatch_probe_should_flag());
  }
  CHECK_FALSE(stallwatch_probe_should_flag());
}

TEST_CASE("allow_blocking covers its own fiber only, nests, and ends with its scope") {
  FakeLoopFiber fiber(0, 7);
  {
    stallwatch::allow_blocking outer;
    CHECK_FALSE(stallwatch_probe_should_flag());
    fiber.switch_to(8);  // fiber 7 parked inside its scope; fiber 8 runs
    CHECK(stallwatch_probe_should_flag());
    fiber.switch_to(7);
    {
      stallwatch::allow_blocking inner;
      CHECK_FALSE(stallwatch_probe_should_flag());
    }
    CHECK_FALSE(stallwatch_probe_should_flag());
  }
  CHECK(stallwatch_probe_should_flag());
}

// ---- recording ----

TEST_CASE("a recorded call is counted and its first call site is logged with its stack") {
  capture_log();
  stallwatch::blocking::configure(production(100));
  FakeLoopFiber fiber(3, 42);
  const std::uint64_t before = count_of("fsync");
  volatile int calls = 3;  // volatile: an unrolled loop would make three call sites
  for (int i = 0; i < calls; ++i) stallwatch_probe_record("fsync");
  const int call_line = __LINE__ - 1;
  CHECK(count_of("fsync") == before + 3);
  const auto lines = log_lines();
  REQUIRE(lines.size() == 1);
  // The head line names the culprit: this test's own line.
  CHECK(lines[0].starts_with("stallwatch: blocking call fsync on loop=3 fiber=42 \"fake\" in "));
  CHECK(lines[0].find("probes_test.cpp:" + std::to_string(call_line) + ", first from this call site\n") !=
        std::string::npos);
  CHECK(lines[0].find("\n  #0 0x") != std::string::npos);
  CHECK(lines[0].find("probes_test.cpp:") != std::string::npos);  // the caller, by file and line
}

TEST_CASE("each loop's blocking-call reports reach its own sink") {
  capture_log();
  std::mutex mutex;
  std::vector<std::string> lines_a, lines_b;
  auto sink_into = [&mutex](std::vector<std::string>& lines) {
    return [&mutex, &lines](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
  };
  auto loop_b = [&] {
    FakeLoopFiber fiber(6, 61, 100, sink_into(lines_b));
    stallwatch_probe_record("fdatasync");
  };
  {
    FakeLoopFiber fiber(5, 51, 100, sink_into(lines_a));
    std::thread b(loop_b);
    stallwatch_probe_record("fdatasync");
    b.join();
  }
  std::lock_guard lock(mutex);
  REQUIRE(lines_a.size() == 1);
  CHECK(lines_a[0].starts_with("stallwatch: blocking call fdatasync on loop=5 fiber=51"));
  REQUIRE(lines_b.size() == 1);
  CHECK(lines_b[0].starts_with("stallwatch: blocking call fdatasync on loop=6 fiber=61"));
  CHECK(log_lines().empty());  // nothing reached the process's sink
}

TEST_CASE("errno survives recording") {
  FakeLoopFiber fiber(0, 9);
  errno = EAGAIN;
  stallwatch_probe_record("read");
  CHECK(errno == EAGAIN);
}

TEST_CASE("reports beyond the rate are held back; the calls are still counted") {
  capture_log();
  FakeLoopFiber fiber(0, 11, 2);
  const std::uint64_t before = count_of("pread") + count_of("pwrite") + count_of("send") + count_of("recv");
  const stallwatch::blocking::ReportCounts reports_before = stallwatch::blocking::report_counts();
  // Four call sites (the function name is part of the site).
  for (const char* f : {"pread", "pwrite", "send", "recv"}) stallwatch_probe_record(f);
  CHECK(count_of("pread") + count_of("pwrite") + count_of("send") + count_of("recv") == before + 4);
  const auto lines = log_lines();
  const auto written = static_cast<std::uint64_t>(std::count_if(
      lines.begin(), lines.end(), [](const std::string& line) { return line.starts_with("stallwatch: blocking call "); }));
  CHECK(written <= 2);
  // Every report is either logged or counted as held back, never lost.
  const stallwatch::blocking::ReportCounts reports = stallwatch::blocking::report_counts();
  CHECK(reports.reported - reports_before.reported == written);
  CHECK(reports.suppressed - reports_before.suppressed == 4 - written);
  stallwatch::blocking::configure(production(100));
}

TEST_CASE("STALLWATCH_ALLOW entries are not recorded") {
  capture_log();
  setenv("STALLWATCH_ALLOW", "flock,fcntl@probes_test", 1);
  stallwatch::blocking::configure(production(100));
  unsetenv("STALLWATCH_ALLOW");
  FakeLoopFiber fiber(0, 12);
  const std::uint64_t flock_before = count_of("flock");
  const std::uint64_t fcntl_before = count_of("fcntl");
  stallwatch_probe_record("flock");
  stallwatch_probe_record("fcntl");  // made from probes_test: permitted
  CHECK(count_of("flock") == flock_before);
  CHECK(count_of("fcntl") == fcntl_before);
  CHECK(log_lines().empty());

  setenv("STALLWATCH_ALLOW", "fcntl@libnothere", 1);
  stallwatch::blocking::configure(production(100));
  unsetenv("STALLWATCH_ALLOW");
  stallwatch_probe_record("fcntl");
  CHECK(count_of("fcntl") == fcntl_before + 1);

  setenv("STALLWATCH_ALLOW", "fcntl,,", 1);
  CHECK_THROWS_AS(stallwatch::blocking::configure(production(100)), stallwatch::config_error);
  unsetenv("STALLWATCH_ALLOW");
  stallwatch::blocking::configure(production(100));
}

TEST_CASE("strict mode ends the process with status 70 at the first recorded call") {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    stallwatch::Config strict;
    strict.strict = true;
    try {
      stallwatch::blocking::configure(strict);  // the canary fails here: no probes in this process
    } catch (const stallwatch::config_error&) {
    }
    FakeLoopFiber fiber(0, 13);
    stallwatch_probe_record("sleep");
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == stallwatch::strict_exit_status);
}

TEST_CASE("the strict-mode canary names the missing preload") {
  CHECK_FALSE(stallwatch::blocking::probes_interposed());
  stallwatch::Config config;
  CHECK_NOTHROW(stallwatch::blocking::check_probes_canary(config));  // production mode: no canary
  config.strict = true;
  try {
    stallwatch::blocking::check_probes_canary(config);
    FAIL("the canary passed without the probes");
  } catch (const stallwatch::config_error& e) {
    CHECK(std::string(e.what()).find("LD_PRELOAD=libstallwatch-probes.so") != std::string::npos);
  }
}

TEST_CASE("distinct function names are bounded; the rest count as other") {
  capture_log();
  stallwatch::blocking::configure(production(0));
  FakeLoopFiber fiber(0, 14, 0);
  for (int i = 0; i < 80; ++i) stallwatch_probe_record(("made_up_" + std::to_string(i)).c_str());
  std::size_t names = 0;
  std::uint64_t other = 0;
  stallwatch::blocking::for_each_call_count([&](std::string_view f, std::uint64_t c) {
    ++names;
    if (f == "other") other = c;
  });
  CHECK(names == stallwatch::blocking::max_counted_functions);
  CHECK(other >= 80 - stallwatch::blocking::max_counted_functions);
  stallwatch::blocking::configure(production(100));
}

// ---- real programs ----

// libpq's calls need libpq and a server: tests/pg_probes_test.py makes each
// of them on a loop (the pg_probes test, inside a throwaway cluster); the
// demo makes every other probed call (curl_easy_perform when built with libcurl).
bool made_by_the_demo(std::string_view function) {
  if (function == "curl_easy_perform") return STALLWATCH_HAVE_CURL;
  return !function.starts_with("PQ");
}

TEST_CASE("preloaded: every probed function is flagged on a loop, far below the threshold") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("each", {{"STALLWATCH_REPORTS_PER_MINUTE", "1000"}});
  CHECK(o.exit_status == 0);
  CHECK(o.out == "done each\n");
  for (const auto& probed : stallwatch::config::probed_functions) {
    const std::string_view f = probed.name;
    if (!made_by_the_demo(f)) continue;
    INFO("function " << f << "\nstderr:\n" << o.err);
    CHECK(reports_of(o, std::string(f)) >= 1);
  }
  CHECK(o.err.find("stallwatch: stall") == std::string::npos);  // no stall: the calls were short
}

TEST_CASE("linked: every probed function is flagged without LD_PRELOAD") {
  const std::string linked = env_or_skip("PROBES_DEMO_LINKED");
  if (linked.empty()) return;
  const Outcome o = run_demo(linked, "each", {{"STALLWATCH_REPORTS_PER_MINUTE", "1000"}}, false);
  CHECK(o.exit_status == 0);
  for (const auto& probed : stallwatch::config::probed_functions) {
    const std::string_view f = probed.name;
    if (!made_by_the_demo(f)) continue;
    INFO("function " << f << "\nstderr:\n" << o.err);
    CHECK(reports_of(o, std::string(f)) >= 1);
  }
}

TEST_CASE("preloaded: nothing is flagged off the loop, in in_thread, or when the call cannot wait") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("quiet");
  INFO("stderr:\n" << o.err);
  CHECK(o.exit_status == 0);
  CHECK(o.out == "done quiet\n");
  CHECK(o.err.find("blocking call") == std::string::npos);
}

TEST_CASE("preloaded: allow_blocking permits its fiber's calls only") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("allow");
  INFO("stderr:\n" << o.err);
  CHECK(o.exit_status == 0);
  CHECK(reports_of(o, "usleep") == 0);
  CHECK(reports_of(o, "nanosleep") == 1);
  CHECK(o.err.find("blocking call nanosleep on loop=0 fiber=") != std::string::npos);
  CHECK(o.err.find("\"checked\"") != std::string::npos);
  CHECK(reports_of(o, "clock_nanosleep") == 1);
}

// The milliseconds a long-sleep run printed ("slept N ms"), or -1.
long slept_ms(const Outcome& o) {
  long ms = -1;
  return std::sscanf(o.out.c_str(), "slept %ld ms", &ms) == 1 ? ms : -1;
}

// The first frame of the first stall sample in a run's stderr, or "".
std::string first_sample_frame(const Outcome& o) {
  const std::size_t sample = o.err.find("stallwatch: stall loop=");
  if (sample == std::string::npos) return "";
  const std::size_t frame = o.err.find("\n  #0 ", sample);
  if (frame == std::string::npos) return "";
  return o.err.substr(frame + 3, o.err.find('\n', frame + 1) - frame - 3);
}

std::size_t count_of_text(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST_CASE("preloaded: a stall in a sleep is sampled from the probe's stack, and the sleep is not cut short") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("long-sleep");
  INFO("stdout:\n" << o.out << "stderr:\n" << o.err);
  CHECK(o.exit_status == 0);
  // A capture signal would have ended the usleep at the first sample (EINTR).
  CHECK(slept_ms(o) >= 295);
  CHECK(count_of_text(o.err, "\"sleeper\" blocked in clock_nanosleep for ") >= 2);
  // Frame #0 is the caller of usleep (the probe took the stack at the call).
  CHECK(first_sample_frame(o).find("blocking_demo.cpp:") != std::string::npos);
  CHECK(o.err.find("(anonymous namespace)::long_sleep()") != std::string::npos);
  CHECK(o.err.find("stallwatch: stall ended loop=0") != std::string::npos);
}

TEST_CASE("without the probes a stall in a sleep is reported from the caller's stack, and the sleep is not cut short") {
  const std::string program = env_or_skip("PROBES_DEMO");
  if (program.empty()) return;
  const Outcome o = run_demo(program, "long-sleep", {}, false);
  INFO("stdout:\n" << o.out << "stderr:\n" << o.err);
  CHECK(o.exit_status == 0);
  // libstallwatch's own interposer published the wait: no capture signal.
  CHECK(slept_ms(o) >= 295);
  CHECK(count_of_text(o.err, "\"sleeper\" blocked in clock_nanosleep for ") >= 2);
  CHECK(first_sample_frame(o).find("blocking_demo.cpp:") != std::string::npos);
  CHECK(o.err.find("long_sleep()") != std::string::npos);
}

// ---- every wait a signal would end early, stalled on a loop ----

// One line of the stalled-waits scenario:
//   wait NAME line LINE took MS ms returned R errno E
struct TimedWait {
  std::string name;
  int line = 0;
  long took_ms = -1;
  long returned = -1;
  int error = -1;
};

std::vector<TimedWait> timed_waits(const Outcome& o) {
  std::vector<TimedWait> waits;
  std::size_t at = 0;
  while ((at = o.out.find("wait ", at)) != std::string::npos) {
    char name[32] = {};
    TimedWait w;
    if (std::sscanf(o.out.c_str() + at, "wait %31s line %d took %ld ms returned %ld errno %d", name, &w.line,
                    &w.took_ms, &w.returned, &w.error) == 5) {
      w.name = name;
      waits.push_back(w);
    }
    at = o.out.find('\n', at);
  }
  return waits;
}

// The frame #0 line of the first stall report about the fiber named `fiber`.
std::string first_frame_of_fiber(const Outcome& o, const std::string& fiber) {
  const std::size_t head = o.err.find("\"" + fiber + "\" blocked in ");
  if (head == std::string::npos) return "";
  const std::size_t frame = o.err.find("\n  #0 ", head);
  if (frame == std::string::npos || o.err.find("\nstallwatch: ", head) < frame) return "";
  return o.err.substr(frame + 3, o.err.find('\n', frame + 1) - frame - 3);
}

// Each wait on its own stalled fiber ran its full time (sleep: 1 s, the
// others 300 ms), returned 0 (timed out) with errno untouched, and the
// stall was reported with frame #0 at the line of the call.
void check_stalled_waits(const Outcome& o) {
  INFO("stdout:\n" << o.out << "stderr:\n" << o.err);
  CHECK(o.exit_status == 0);
  const std::vector<TimedWait> waits = timed_waits(o);
  const std::vector<std::string> expected = {"sleep", "usleep",  "nanosleep",  "clock_nanosleep", "poll",
                                             "ppoll", "select", "pselect", "epoll_wait", "epoll_pwait"};
  REQUIRE(waits.size() == expected.size());
  for (std::size_t i = 0; i < waits.size(); ++i) {
    const TimedWait& w = waits[i];
    INFO("wait " << w.name << " took " << w.took_ms << " ms, returned " << w.returned << ", errno " << w.error);
    CHECK(w.name == expected[i]);
    const long requested_ms = w.name == "sleep" ? 1000 : 300;
    CHECK(w.took_ms >= requested_ms - 5);  // a capture signal ends it at about 50 ms
    CHECK(w.took_ms < requested_ms + 2000);
    CHECK(w.returned == 0);
    CHECK(w.error == 0);
    const std::string frame = first_frame_of_fiber(o, w.name);
    CHECK(frame.find("blocking_demo.cpp:" + std::to_string(w.line) + " ") != std::string::npos);
  }
  CHECK(o.err.find("stack not captured") == std::string::npos);
}

const std::map<std::string, std::string> every_report = {{"STALLWATCH_REPORTS_PER_MINUTE", "1000"}};

TEST_CASE("without the probes no wait a signal would end early is cut short, and each stall names its caller") {
  const std::string program = env_or_skip("PROBES_DEMO");
  if (program.empty()) return;
  check_stalled_waits(run_demo(program, "stalled-waits", every_report, false));
}

TEST_CASE("preloaded: no wait is cut short either (probes, then libstallwatch, then libc)") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("stalled-waits", every_report);
  check_stalled_waits(o);
  CHECK(reports_of(o, "sleep") == 1);  // and the probes still name the blocking calls
  CHECK(reports_of(o, "poll") == 1);
}

TEST_CASE("linked with the probes: no wait is cut short") {
  const std::string program = env_or_skip("PROBES_DEMO_LINKED");
  if (program.empty()) return;
  const Outcome o = run_demo(program, "stalled-waits", every_report, false);
  check_stalled_waits(o);
  CHECK(reports_of(o, "usleep") == 1);
}

TEST_CASE("preloaded: the first call of each call site is logged, within the rate") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("repeat");
  INFO("stderr:\n" << o.err);
  CHECK(reports_of(o, "usleep") == 2);
  CHECK(o.out.find("stallwatch_blocking_calls_total{function=\"usleep\"} 6\n") != std::string::npos);
  const Outcome limited = run_preloaded("repeat", {{"STALLWATCH_REPORTS_PER_MINUTE", "1"}});
  CHECK(reports_of(limited, "usleep") == 1);
}

TEST_CASE("preloaded strict mode: the first blocking call is reported with its stack and ends the process") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("usleep", {{"STALLWATCH_STRICT", "1"}});
  INFO("stderr:\n" << o.err);
  CHECK(o.exit_status == stallwatch::strict_exit_status);
  CHECK(o.out.find("after usleep") == std::string::npos);
  CHECK(o.err.find("blocking call usleep on loop=0 fiber=") != std::string::npos);
  CHECK(o.err.find("in strict mode (STALLWATCH_STRICT=1): ending the process with status 70") != std::string::npos);
  CHECK(o.err.find("status 70\n  advice: use stallwatch::sleep_for (or sleep_until)\n  #0 0x") != std::string::npos);
  CHECK(o.err.find("  #0 0x") != std::string::npos);
  CHECK(o.err.find("(probes_blocking_demo+0x") != std::string::npos);
  // Named although the program is not linked with -rdynamic, with file:line.
  CHECK(o.err.find("one_usleep") != std::string::npos);
  CHECK(o.err.find("blocking_demo.cpp:") != std::string::npos);
}

TEST_CASE("strict mode without the probes fails at start-up instead of passing silently") {
  if (!have_programs()) return;
  const Outcome o = run_demo(env_or_skip("PROBES_DEMO"), "usleep", {{"STALLWATCH_STRICT", "1"}}, false);
  INFO("stderr:\n" << o.err);
  CHECK(o.exit_status == 2);
  CHECK(o.out.find("after usleep") == std::string::npos);
  CHECK(o.err.find("blocking-call probes are not active") != std::string::npos);
}

// LD_PRELOAD with libstallwatch.so before the probes: libstallwatch's wait
// interposers come first and would forward sleep and poll to the probes as
// their own calls, never flagged. Said, not silent.
TEST_CASE("probes loaded after libstallwatch: strict mode refuses, production says so once") {
  if (!have_programs()) return;
  const std::string probes = env_or_skip("PROBES_LIB");
  const std::string src_dir = probes.substr(0, probes.rfind("/interpose/"));
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::map<std::string, std::string> misordered = {
      {"LD_PRELOAD", src_dir + "/libstallwatch.so:" + probes},
      {"ASAN_OPTIONS", std::string(asan != nullptr ? asan : "") + ":verify_asan_link_order=0"}};
  const std::string warning = "libstallwatch-probes is loaded but not before libstallwatch and libc";

  std::map<std::string, std::string> strict = misordered;
  strict["STALLWATCH_STRICT"] = "1";
  const Outcome refused = run_demo(env_or_skip("PROBES_DEMO"), "usleep", strict, false);
  INFO("strict stderr:\n" << refused.err);
  CHECK(refused.exit_status == 2);
  CHECK(refused.err.find("blocking-call probes are not active") != std::string::npos);

  const Outcome warned = run_demo(env_or_skip("PROBES_DEMO"), "usleep", misordered, false);
  INFO("production stderr:\n" << warned.err);
  CHECK(warned.exit_status == 0);
  CHECK(count_of_text(warned.err, warning) == 1);

  CHECK(run_preloaded("usleep").err.find(warning) == std::string::npos);
}

TEST_CASE("preloaded: STALLWATCH_ALLOW permits by function and module; malformed is a clear error") {
  if (!have_programs()) return;
  CHECK(reports_of(run_preloaded("usleep", {{"STALLWATCH_ALLOW", "usleep"}}), "usleep") == 0);
  const Outcome by_module =
      run_preloaded("usleep", {{"STALLWATCH_ALLOW", "usleep@probes_blocking_demo"}, {"STALLWATCH_STRICT", "1"}});
  CHECK(by_module.exit_status == 0);
  CHECK(by_module.out.find("after usleep") != std::string::npos);
  CHECK(reports_of(run_preloaded("usleep", {{"STALLWATCH_ALLOW", "usleep@libnothere"}}), "usleep") == 1);
  const Outcome malformed = run_preloaded("usleep", {{"STALLWATCH_ALLOW", "usleep,,read"}});
  INFO("stderr:\n" << malformed.err);
  CHECK(malformed.exit_status == 2);
  CHECK(malformed.err.find("STALLWATCH_ALLOW=\"usleep,,read\": entry \"\" is empty") != std::string::npos);
}

TEST_CASE("preloaded: JSON lines carry the same report") {
  if (!have_programs()) return;
  const Outcome o = run_preloaded("usleep", {{"STALLWATCH_LOG_FORMAT", "json"}});
  INFO("stderr:\n" << o.err);
  CHECK(o.err.find("{\"event\":\"blocking_call\",\"function\":\"usleep\",\"loop\":0,\"fiber\":") != std::string::npos);
  CHECK(o.err.find("\"fiber_name\":\"caller\",\"strict\":false,\"culprit\":{\"function\":") != std::string::npos);
  CHECK(o.err.find("tests/probes/blocking_demo.cpp\",\"line\":") != std::string::npos);
  CHECK(o.err.find(",\"module\":\"probes_blocking_demo\"},\"frames\":[{\"pc\":\"0x") != std::string::npos);
  CHECK(o.err.find("\"advice\":\"use stallwatch::sleep_for (or sleep_until)\"}") != std::string::npos);
}
