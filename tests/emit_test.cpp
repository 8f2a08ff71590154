// The emitter: both formats of every line, escaping (no value can break a
// line or forge one), the rate limit and its summaries, which come when the
// window closes with no further report, and routing to each loop's sink.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/text.hpp"
#include "emit/advice.hpp"
#include "emit/emitter.hpp"
#include "emit/format.hpp"
#include "emit/report_limiter.hpp"

using namespace std::chrono_literals;
namespace emit = stallwatch::emit;
using stallwatch::log_format;

namespace {

// A fiber name that tries to end its line and forge a report of its own.
const std::string forged_name = "x\"\nstallwatch: stall ended loop=9 fiber=1 \"y\" after 1 ms (cpu 1 ms), 1 sample\r\\";

emit::Frame demo_frame() {
  emit::Frame f;
  f.pc = 0x55d1c2a41b2e;
  f.function = "busy_hash(std::string const&)";
  f.file = "/src/examples/demo.cpp";
  f.line = 42;
  f.module = "stallwatch-demo";
  f.module_offset = 0x1b2e;
  f.build_id = "abcdef";
  return f;
}

// Every line of `text` (split at '\n') is one stallwatch wrote: a head line
// or a frame line of a report. A forged line would start otherwise.
void check_no_forged_line(const std::string& text) {
  INFO(text);
  std::size_t start = 0;
  bool first = true;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('\n', start), text.size());
    const std::string line = text.substr(start, end - start);
    CHECK(line.find('\r') == std::string::npos);
    if (first) CHECK(line.rfind("stallwatch: ", 0) == 0);
    else CHECK(line.rfind("  ", 0) == 0);
    CHECK(line.rfind("stallwatch: stall ended loop=9", 0) != 0);  // inside the line, escaped, is harmless
    first = false;
    start = end + 1;
  }
}

// A JSON line: one line, and the forged text only inside an escaped string.
void check_json_line(const std::string& json) {
  INFO(json);
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find('\r') == std::string::npos);
}

struct Collector {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> lines;

  stallwatch::Config config(int reports_per_minute) {
    stallwatch::Config c;
    c.reports_per_minute = reports_per_minute;
    c.log_sink = [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
      changed.notify_all();
    };
    return c;
  }
  // Waits up to timeout for a line containing needle.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] {
      return std::any_of(lines.begin(), lines.end(),
                         [&](const std::string& l) { return l.find(needle) != std::string::npos; });
    });
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return lines;
  }
};

}  // namespace

TEST_CASE("text and JSON formats carry the same fields, escaped") {
  emit::StallSample s;
  s.loop = 2;
  s.fiber = {7, "handler \"GET\" /cpu\n"};
  s.kind = "blocked";
  s.syscall = "read";
  s.wall_ns = 212'400'000;
  s.cpu_ns = 100'000;
  s.threshold_ns = 50'000'000;
  s.sample = 2;
  emit::Frame libc = demo_frame();
  libc.function = "read";
  libc.file.clear();
  libc.module = "libc.so.6";
  s.frames = {libc, demo_frame()};
  s.culprit = 1;
  s.stack_id = 0x1234;

  const std::string text = emit::format(s, log_format::text);
  CHECK(text.rfind("stallwatch: stall loop=2 fiber=7 \"handler \\\"GET\\\" /cpu\\x0a\" blocked in read for 212 ms "
                   "in busy_hash(std::string const&) at /src/examples/demo.cpp:42 "
                   "(cpu 0.1 ms, threshold 50 ms) sample 2\n",
                   0) == 0);
  CHECK(text.find("\n  #1 0x000055d1c2a41b2e busy_hash(std::string const&) at /src/examples/demo.cpp:42 "
                  "(stallwatch-demo+0x1b2e)") != std::string::npos);
  CHECK(text.find("build-id libc.so.6=abcdef stallwatch-demo=abcdef") != std::string::npos);
  CHECK(emit::format(s, log_format::json)
            .find(",\"culprit\":{\"function\":\"busy_hash(std::string const&)\",\"file\":\"/src/examples/demo.cpp\","
                  "\"line\":42,\"module\":\"stallwatch-demo\"},") != std::string::npos);
  s.culprit = -1;
  CHECK(emit::format(s, log_format::text).find(" for 212 ms in (no application frame) (cpu") != std::string::npos);
  CHECK(emit::format(s, log_format::json).find(",\"culprit\":null,") != std::string::npos);
  s.culprit = 1;

  const std::string json = emit::format(s, log_format::json);
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find("\"fiber_name\":\"handler \\\"GET\\\" /cpu\\u000a\"") != std::string::npos);
  CHECK(json.find("\"kind\":\"blocked\",\"syscall\":\"read\"") != std::string::npos);
  CHECK(json.find("\"wall_ms\":212.400") != std::string::npos);
  CHECK(json.find("\"line\":42") != std::string::npos);

  s.seen = 3;
  const std::string repeat = emit::format(s, log_format::text);
  CHECK(repeat.find("same stack as an earlier report") != std::string::npos);
  CHECK(repeat.find("#0") == std::string::npos);

  const emit::StallEnd e{2, {7, "x"}, 431'000'000, 430'000'000, 3};
  CHECK(emit::format(e, log_format::text) ==
        "stallwatch: stall ended loop=2 fiber=7 \"x\" after 431 ms (cpu 430 ms), 3 samples");
  CHECK(emit::format_suppressed(0, emit::ReportKind::stall, 14, 60, log_format::text) ==
        "stallwatch: suppressed 14 stall reports on loop 0 in the last minute");
  CHECK(emit::format_suppressed(1, emit::ReportKind::blocking_call, 3, 60, log_format::json) ==
        "{\"event\":\"suppressed\",\"reports\":\"blocking-call\",\"loop\":1,\"count\":3,\"window_s\":60}");

  const emit::Message m{4, "fiber_exception", "fiber 3 ended: boom", {{"fiber", std::int64_t{3}}, {"ok", true}}};
  CHECK(emit::format(m, log_format::text) == "stallwatch: fiber 3 ended: boom");
  CHECK(emit::format(m, log_format::json) ==
        "{\"event\":\"fiber_exception\",\"loop\":4,\"fiber\":3,\"ok\":true,\"message\":\"fiber 3 ended: boom\"}");
}

TEST_CASE("a fiber name cannot break a line, in either format, in any event") {
  emit::StallSample sample;
  sample.fiber = {5, forged_name};
  sample.frames = {demo_frame()};
  sample.frames[0].function = "f()\nstallwatch: forged";
  emit::StallSample no_stack = sample;
  no_stack.capture = "timeout";
  no_stack.capture_note = "the thread did not answer\nstallwatch: forged";
  const emit::StallEnd end{0, {5, forged_name}, 1, 1, 1};
  emit::BlockingCall call;
  call.fiber = {5, forged_name};
  call.function = "usleep";
  call.frames = {demo_frame()};
  const emit::Message message{0, "fiber_exception", "fiber 5 ended: " + forged_name, {{"what", forged_name}}};

  for (const std::string& text :
       {emit::format(sample, log_format::text), emit::format(no_stack, log_format::text),
        emit::format(end, log_format::text), emit::format(call, log_format::text),
        emit::format(message, log_format::text)}) {
    check_no_forged_line(text);
  }
  for (const std::string& json :
       {emit::format(sample, log_format::json), emit::format(no_stack, log_format::json),
        emit::format(end, log_format::json), emit::format(call, log_format::json),
        emit::format(message, log_format::json)}) {
    check_json_line(json);
    CHECK(json.find("x\\\"\\u000astallwatch: stall ended loop=9") != std::string::npos);
  }
}

TEST_CASE("JSON shows a byte that is not UTF-8 as U+FFFD, never as a real character") {
  // Before: \xff became \u00ff, which reads as a real "ÿ".
  std::string json;
  stallwatch::base::append_json_string(json, "caf\xc3\xa9 \xff\xc3 \xc3\xbf");
  CHECK(json == "\"caf\xc3\xa9 \\ufffd\\ufffd \xc3\xbf\"");  // é kept, two bad bytes, a real ÿ kept
  CHECK(stallwatch::base::one_line("\xff") == "\\xff");  // text lines keep \xNN
}

TEST_CASE("the rate limiter admits N per window, counts the rest, deduplicates stacks") {
  constexpr std::uint64_t window = 60'000'000'000ull;
  emit::ReportLimiter limiter(2, window);
  const std::uint64_t t0 = 1'000'000'000;
  CHECK(limiter.summary_due_ns() == 0);
  CHECK(limiter.admit(t0));
  CHECK(limiter.admit(t0 + 1));
  CHECK(limiter.summary_due_ns() == 0);  // nothing held back: no summary due
  CHECK_FALSE(limiter.admit(t0 + 2));
  CHECK(limiter.summary_due_ns() == t0 + window);
  CHECK_FALSE(limiter.admit(t0 + 3));
  CHECK(limiter.take_expired_summary(t0 + 10) == 0);
  CHECK(limiter.take_expired_summary(t0 - 10) == 0);  // a clock read before the window opened
  CHECK(limiter.note_stack(5) == 1);
  CHECK(limiter.note_stack(5) == 2);
  CHECK(limiter.take_expired_summary(t0 + window) == 2);
  CHECK(limiter.admit(t0 + window + 1));
  CHECK(limiter.note_stack(5) == 1);

  emit::ReportLimiter none(0, window);
  CHECK_FALSE(none.admit(t0));
  CHECK(none.take_pending() == 1);
}

TEST_CASE("a window's \"suppressed N\" summary comes when the window closes, with no further report") {
  emit::set_report_window_for_testing(300ms);
  Collector collector;
  constexpr int loop = 40;
  emit::attach_loop(loop, collector.config(1));
  emit::set_report_window_for_testing(std::chrono::minutes(1));
  const auto start = std::chrono::steady_clock::now();
  CHECK(emit::admit(loop, emit::ReportKind::stall));
  CHECK_FALSE(emit::admit(loop, emit::ReportKind::stall));
  CHECK_FALSE(emit::admit(loop, emit::ReportKind::stall));
  CHECK(emit::admit(loop, emit::ReportKind::blocking_call));
  CHECK_FALSE(emit::admit(loop, emit::ReportKind::blocking_call));
  // Nothing more is reported: the summaries must come by themselves.
  CHECK(collector.wait_for("suppressed 2 stall reports on loop 40", 5s));
  CHECK(collector.wait_for("suppressed 1 blocking-call reports on loop 40", 5s));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 250ms);  // not before the window closed
  emit::detach_loop(loop);
  CHECK(collector.snapshot().size() == 2);
}

TEST_CASE("a loop that ends says what its open window held back") {
  Collector collector;
  constexpr int loop = 41;
  emit::attach_loop(loop, collector.config(0));
  CHECK_FALSE(emit::admit(loop, emit::ReportKind::stall));
  emit::detach_loop(loop);
  const auto lines = collector.snapshot();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "stallwatch: suppressed 1 stall reports on loop 41 in the last minute");
}

TEST_CASE("each loop's lines reach its own sink; an ended loop's go to the process's") {
  Collector a, b;
  emit::attach_loop(42, a.config(10));
  auto json = b.config(10);
  json.log_format = log_format::json;
  emit::attach_loop(43, json);
  emit::message(42, "note", "for a");
  emit::message(43, "note", "for b");
  emit::detach_loop(42);
  emit::detach_loop(43);
  REQUIRE(a.snapshot().size() == 1);
  CHECK(a.snapshot()[0] == "stallwatch: for a");
  REQUIRE(b.snapshot().size() == 1);
  CHECK(b.snapshot()[0] == "{\"event\":\"note\",\"loop\":43,\"message\":\"for b\"}");
  emit::message(42, "note", "after the end");
  CHECK(a.snapshot().size() == 1);
}

TEST_CASE("a sink that throws loses no line: it goes to stderr, and the caller carries on") {
  stallwatch::Config config;
  config.log_sink = [](std::string_view) { throw std::runtime_error("sink down"); };
  emit::attach_loop(44, config);
  CHECK_NOTHROW(emit::message(44, "note", "still written"));
  emit::detach_loop(44);
}

TEST_CASE("a hung sink holds its loop's lines up to a bound; the drop is counted and said once it returns") {
  std::mutex mutex;
  std::condition_variable changed;
  bool released = false;
  bool entered = false;
  std::vector<std::string> lines;
  stallwatch::Config config;
  config.log_sink = [&](std::string_view line) {
    std::unique_lock lock(mutex);
    if (!entered) {
      entered = true;
      changed.notify_all();
      changed.wait(lock, [&] { return released; });  // the first line hangs until released
    }
    lines.emplace_back(line);
  };
  constexpr int loop = 45;
  emit::attach_loop(loop, config);
  emit::message(loop, "note", "first");
  {
    std::unique_lock lock(mutex);
    REQUIRE(changed.wait_for(lock, 10s, [&] { return entered; }));
  }
  // The sink hangs: every write still returns at once.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1100; ++i) emit::message(loop, "note", "line " + std::to_string(i));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  {
    std::lock_guard lock(mutex);
    released = true;
    changed.notify_all();
  }
  emit::detach_loop(loop);
  std::lock_guard lock(mutex);
  // "first", the dropped count, then the 1024 that waited.
  REQUIRE(lines.size() == 1 + 1 + 1024);
  CHECK(lines[0] == "stallwatch: first");
  CHECK(lines[1] == "stallwatch: 76 lines of loop 45 were dropped while the sink was slow (at most 1024 wait for it)");
  CHECK(lines[2] == "stallwatch: line 0");
  CHECK(lines.back() == "stallwatch: line 1023");
}

TEST_CASE("the writer of a line never runs the sink: a hung sink holds up no other loop") {
  std::mutex mutex;
  std::condition_variable changed;
  bool released = false;
  stallwatch::Config hung;
  const std::thread::id writer = std::this_thread::get_id();
  std::atomic<bool> sink_on_writer{false};
  hung.log_sink = [&](std::string_view) {
    if (std::this_thread::get_id() == writer) sink_on_writer = true;
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return released; });
  };
  Collector other;
  emit::attach_loop(46, hung);
  emit::attach_loop(47, other.config(10));
  emit::message(46, "note", "into the hung sink");
  emit::message(47, "note", "for the other loop");
  CHECK(other.wait_for("for the other loop", 5s));
  CHECK_FALSE(sink_on_writer);
  {
    std::lock_guard lock(mutex);
    released = true;
    changed.notify_all();
  }
  emit::detach_loop(46);
  emit::detach_loop(47);
}

TEST_CASE("a blocking-call report advises the cooperative call from one table") {
  using stallwatch::emit::advice_for;
  CHECK(advice_for("curl_easy_perform").find("stallwatch::curl::perform or stallwatch::http") != std::string_view::npos);
  CHECK(advice_for("getaddrinfo").find("stallwatch::resolve") != std::string_view::npos);
  CHECK(advice_for("gethostbyname") == advice_for("getaddrinfo"));
  for (const char* f : {"sleep", "usleep", "nanosleep", "clock_nanosleep"}) {
    CHECK(advice_for(f).find("stallwatch::sleep_for") != std::string_view::npos);
  }
  CHECK(advice_for("system").find("stallwatch::run_process") != std::string_view::npos);
  CHECK(advice_for("popen") == advice_for("system"));
  for (const char* f : {"futex", "pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait"}) {
    CHECK(advice_for(f).find("stallwatch::Future") != std::string_view::npos);
  }
  for (const char* f : {"PQexec", "PQexecParams", "PQprepare", "PQexecPrepared", "PQconnectdb",
                        "PQconnectdbParams", "PQgetResult", "PQcancel"}) {
    CHECK(advice_for(f).find("stallwatch::pg") != std::string_view::npos);
  }
  CHECK(advice_for("fsync").find("stallwatch::in_thread") != std::string_view::npos);
  CHECK(advice_for("").find("stallwatch::in_thread") != std::string_view::npos);

  stallwatch::emit::BlockingCall call;
  call.function = "curl_easy_perform";
  const std::string text = stallwatch::emit::format(call, stallwatch::log_format::text);
  CHECK(text.find("\n  advice: use stallwatch::curl::perform or stallwatch::http") != std::string::npos);
  const std::string json = stallwatch::emit::format(call, stallwatch::log_format::json);
  CHECK(json.find(",\"advice\":\"use stallwatch::curl::perform or stallwatch::http") != std::string::npos);
}
