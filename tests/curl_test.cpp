// curl::perform and the HTTP client (stallwatch/curl.hpp, stallwatch/http.hpp)
// against real servers on 127.0.0.1: the test's own threaded HTTP/1.1 server
// and nginx for HTTPS (certificate made with openssl). Built against the
// shared library, so that the same binary also runs in strict mode with
// libstallwatch-probes preloaded (test `curl_strict`), where any blocking call
// a transfer made on the loop would end it.
#include <doctest/doctest.h>

#include <netdb.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "curl/test_servers.hpp"
#include "stallwatch/curl.hpp"
#include "stallwatch/http.hpp"
#include "stallwatch/stallwatch.hpp"

using namespace std::chrono_literals;
namespace http = stallwatch::http;
using test_servers::HttpServer;
using test_servers::Nginx;
using stallwatch::Clock;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr bool under_thread_sanitizer = true;
#else
constexpr bool under_thread_sanitizer = false;
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool under_a_sanitizer = true;
#else
constexpr bool under_a_sanitizer = false;
#endif

// Resident set size in bytes (read under allow_blocking: a /proc file).
long rss_bytes() {
  stallwatch::allow_blocking allow;
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * ::sysconf(_SC_PAGESIZE);
}

// fn(0) … fn(n-1), each on a fiber of its own, all at once; results in order.
template <class F>
auto each(int n, F fn) {
  using T = decltype(fn(0));
  std::vector<std::function<T()>> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back([fn, i] { return fn(i); });
  return stallwatch::collect(jobs, static_cast<std::size_t>(n));
}

// Nanoseconds this thread has waited on a run queue, runnable but off the
// CPU (/proc/thread-self/schedstat, second field): time the OS took, not the loop.
std::uint64_t run_queue_wait_ns() {
  stallwatch::allow_blocking allow;
  unsigned long long on_cpu = 0, waited = 0;
  if (FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
    if (std::fscanf(f, "%llu %llu", &on_cpu, &waited) != 2) waited = 0;
    std::fclose(f);
  }
  return waited;
}

// Time the host has taken from each of this virtual machine's CPUs (steal,
// /proc/stat's eighth field), in nanoseconds; counted in clock ticks (10 ms),
// so coarse.
std::vector<std::uint64_t> steal_per_cpu_ns() {
  stallwatch::allow_blocking allow;
  std::vector<std::uint64_t> steal;
  if (FILE* f = std::fopen("/proc/stat", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr && std::strncmp(line, "cpu", 3) == 0) {
      unsigned long long v[8] = {};
      if (line[3] == ' ') continue;  // the machine's total
      if (std::sscanf(line, "%*s %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                      &v[6], &v[7]) == 8) {
        steal.push_back(v[7] * 1'000'000'000ull / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK)));
      }
    }
    std::fclose(f);
  }
  return steal;
}

// The most steal any one CPU had between two readings.
std::uint64_t most_steal_ns(const std::vector<std::uint64_t>& before, const std::vector<std::uint64_t>& after) {
  std::uint64_t most = 0;
  for (std::size_t i = 0; i < std::min(before.size(), after.size()); ++i) most = std::max(most, after[i] - before[i]);
  return most;
}

// CPU time of the calling thread, in nanoseconds.
std::uint64_t thread_cpu_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(t.tv_nsec);
}

// A fiber's worth of timing: sleeps 5 ms at a time until stopped and keeps
// its worst lateness, raw and as the loop's own doing: less the time the OS
// kept the loop's thread waiting for a CPU meanwhile (the machine is shared
// and loaded; the test server's threads run at a lower priority), and less
// the time the host took from this virtual machine's CPUs (steal: a 5 ms
// tick came 56 ms late once, while the loop sat 51 ms in a non-blocking recv
// using no CPU, neither running nor waiting to run). A loop blocked in the
// kernel (a blocking call) is still the loop's own doing.
struct Ticker {
  bool stop = false;
  Clock::duration worst_raw{};
  Clock::duration worst{};

  void run() {
    auto next = Clock::now() + 5ms;
    while (!stop) {
      const std::uint64_t waited_before = run_queue_wait_ns();
      const std::vector<std::uint64_t> steal_before = steal_per_cpu_ns();
      stallwatch::sleep_until(next);
      const Clock::duration late = Clock::now() - next;
      const auto os = std::chrono::nanoseconds(run_queue_wait_ns() - waited_before +
                                               most_steal_ns(steal_before, steal_per_cpu_ns()));
      worst_raw = std::max(worst_raw, late);
      worst = std::max(worst, late - std::min<Clock::duration>(late, os));
      next += 5ms;
      if (Clock::now() > next) next = Clock::now() + 5ms;
    }
  }

  std::string said() const {
    return "ticker late by " + std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(worst_raw).count()) +
           " us at most; " + std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(worst).count()) +
           " us as the loop's own doing";
  }
};

template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("1,000 GETs from 100 fibers on one loop, while a 5 ms ticker is never late by 40 ms") {
  HttpServer server;
  std::string said;  // doctest's MESSAGE opens a file: said after the loop
  stallwatch::run([&] {
    Ticker ticker;
    auto ticking = stallwatch::spawn([&] { ticker.run(); }, "ticker");
    const std::vector<int> ok = each(100,
        [&](int) {
          int good = 0;
          for (int k = 0; k < 10; ++k) {
            const http::Response r = http::get(server.url("/small"), stallwatch::deadline_after(30s));
            good += r.status == 200 && r.body == "hello" && r.header("x-test-header") == "yes";
          }
          return good;
        });
    ticker.stop = true;
    ticking.join();
    int total = 0;
    for (int n : ok) total += n;
    CHECK(total == 1000);
    said = ticker.said();
    // Under the sanitizers the loop's own code runs several times slower (a
    // driver round of 64 completions took up to 100 ms under TSan, 48 ms
    // under ASan in the full suite): the bound is checked in the plain build;
    // the sanitizer builds check memory and races.
    if (!under_a_sanitizer) CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(ticker.worst).count() < 40);
  });
  MESSAGE(said);
  // Kept alive: most requests reuse a connection. (curl keeps at most four
  // idle connections per transfer in flight, so a few close as fibers finish.)
  CHECK(server.connections() < 250);
}

TEST_CASE("a 1 MiB POST, a 20 MiB GET, a 404 as a response, headers in any case") {
  HttpServer server;
  stallwatch::run([&] {
    std::string big(1 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = test_servers::pattern_byte(i * 7);
    const http::Response echo = http::post(server.url("/echo"), big, "application/octet-stream", stallwatch::deadline_after(30s));
    CHECK(echo.status == 200);
    CHECK(echo.body == big);

    const http::Response large = http::get(server.url("/bytes/20971520"), stallwatch::deadline_after(60s));
    REQUIRE(large.body.size() == 20u << 20);
    bool pattern = true;
    for (std::size_t i = 0; i < large.body.size(); i += 4093) pattern &= large.body[i] == test_servers::pattern_byte(i);
    CHECK(pattern);

    const http::Response missing = http::get(server.url("/nothing-here"));
    CHECK(missing.status == 404);
    CHECK(missing.body == "not found");
    CHECK(missing.header("CONTENT-LENGTH") == "9");
    CHECK(missing.header("X-Test-Header") == "yes");
    CHECK_FALSE(missing.header("x-absent").has_value());
    CHECK(http::get(server.url("/status/503")).status == 503);
  });
}

TEST_CASE("a 1 GiB GET streamed through on_body keeps memory flat") {
  HttpServer server;
  std::string said;
  // Without the watchdog: its symbolizer reads the modules' debug information
  // once per process, on its own thread, after the first loop starts (30-45
  // MB, more than the client's whole budget here), and when this case runs
  // first that lands in the window measured below.
  stallwatch::Options options;
  options.watchdog = false;
  stallwatch::run(options, [&] {
    const long before = rss_bytes();
    long peak = before;
    std::uint64_t received = 0;
    bool pattern = true;
    http::Request request;
    request.url = server.url("/bytes/1073741824");
    request.deadline = stallwatch::deadline_after(120s);
    request.on_body = [&](std::string_view chunk) {
      pattern &= chunk[0] == test_servers::pattern_byte(received);
      const std::uint64_t mark = received >> 26;  // every 64 MiB
      received += chunk.size();
      if ((received >> 26) != mark) peak = std::max(peak, rss_bytes());
    };
    const auto started = Clock::now();
    const http::Response r = http::fetch(request);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    said = "1 GiB streamed in " + std::to_string(took.count()) + " ms, RSS growth " +
           std::to_string((peak - before) / 1024) + " KiB";
    CHECK(r.status == 200);
    CHECK(r.body.empty());
    CHECK(received == (1ull << 30));
    CHECK(pattern);
    // Under ThreadSanitizer RSS also counts the shadow memory it maps as
    // memory is touched, not the client's: checked in the other builds.
    if (!under_thread_sanitizer) CHECK(peak - before < 16l << 20);
  });
  MESSAGE(said);
}

// GETs `bytes` through an on_body that works `per_chunk` on each chunk
// while a 5 ms ticker runs on the loop: "N MiB in T ms; ticker late by …".
std::string stream_beside_a_ticker(const HttpServer& server, std::uint64_t bytes, Clock::duration per_chunk) {
  std::string said;
  stallwatch::run([&] {
    Ticker ticker;
    auto ticking = stallwatch::spawn([&] { ticker.run(); }, "ticker");
    std::uint64_t received = 0;
    bool pattern = true;
    http::Request request;
    request.url = server.url("/bytes/" + std::to_string(bytes));
    request.deadline = stallwatch::deadline_after(120s);
    request.on_body = [&](std::string_view chunk) {
      for (std::size_t i = 0; i < chunk.size(); i += 4093) pattern &= chunk[i] == test_servers::pattern_byte(received + i);
      received += chunk.size();
      const auto until = Clock::now() + per_chunk;  // the chunk's work
      while (Clock::now() < until) {
      }
    };
    const auto started = Clock::now();
    const http::Response r = http::fetch(request);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    ticker.stop = true;
    ticking.join();
    CHECK(r.status == 200);
    CHECK(received == bytes);
    CHECK(pattern);
    said = std::to_string(bytes >> 20) + " MiB in " + std::to_string(took.count()) + " ms; " + ticker.said();
    CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(ticker.worst).count() < 40);
  });
  return said;
}

TEST_CASE("a body streamed faster than on_body takes it, while a 5 ms ticker is never late by 40 ms") {
  // The socket never runs dry. The loop got no pass before the whole body
  // was in (a tick 0.65-1.4 s late at 50 us a chunk); then, with the
  // driver's rounds bounded, one socket action still handed on_body up to
  // 100 chunks in one go (a tick 0.2 s late at 1 ms a chunk).
  HttpServer server;
  std::string said;
  SUBCASE("256 MiB, 50 us a chunk") { said = stream_beside_a_ticker(server, 256u << 20, 50us); }
  SUBCASE("8 MiB, 1 ms a chunk") { said = stream_beside_a_ticker(server, 8u << 20, 1ms); }
  MESSAGE(said);
}

TEST_CASE("an on_body call longer than the threshold is a stall of \"curl multi\" reported at on_body's line") {
  if (std::getenv("STALLWATCH_THRESHOLD_MS") != nullptr || std::getenv("STALLWATCH_STRICT") != nullptr) {
    MESSAGE("skipped: the environment sets the threshold or strict mode");
    return;
  }
  HttpServer server;
  // Shared with the sink, not on this frame: the first sink a loop sets also
  // takes the process's lines (of no loop), after this run() too.
  struct Lines {
    std::mutex mutex;
    std::vector<std::string> lines;
  };
  const auto seen = std::make_shared<Lines>();
  stallwatch::Options options;
  options.log_sink = [seen](std::string_view line) {
    std::lock_guard lock(seen->mutex);
    seen->lines.emplace_back(line);
  };
  int slow_line = 0;
  std::string head;
  stallwatch::run(options, [&] {
    bool slowed = false;
    http::Request request;
    request.url = server.url("/bytes/1048576");
    request.deadline = stallwatch::deadline_after(30s);
    request.on_body = [&](std::string_view) {
      if (std::exchange(slowed, true)) return;
      const auto until = Clock::now() + 150ms;
      slow_line = __LINE__ + 1;
      while (Clock::now() < until) {
      }
    };
    CHECK(http::fetch(request).status == 200);
    // The report is written off the loop, after the watchdog's sample.
    for (int i = 0; i < 500 && head.empty(); ++i) {
      stallwatch::sleep_for(10ms);
      std::lock_guard lock(seen->mutex);
      for (const std::string& line : seen->lines) {
        if (line.rfind("stallwatch: stall loop=", 0) == 0) head = line;
      }
    }
  });
  INFO(head);
  CHECK(head.find("\"curl multi\"") != std::string::npos);
  // The culprit, the head line's first frame of the application's own code,
  // is the line of on_body that took the time, not the driver or libcurl.
  CHECK(head.find("curl_test.cpp:" + std::to_string(slow_line)) != std::string::npos);
}

TEST_CASE("a deadline on a server that never answers names the URL; the loop's next request works") {
  HttpServer server;
  stallwatch::run([&] {
    const auto started = Clock::now();
    const std::string what = message_of([&] { http::get(server.url("/hang"), stallwatch::deadline_after(200ms)); });
    const auto took = Clock::now() - started;
    CHECK(what.find("deadline exceeded") != std::string::npos);
    CHECK(what.find("GET " + server.url("/hang")) != std::string::npos);
    CHECK(took >= 190ms);
    CHECK(took < 2s);
    CHECK(http::get(server.url("/small"), stallwatch::deadline_after(10s)).body == "hello");
    CHECK_THROWS_AS(http::get(server.url("/hang"), stallwatch::deadline_after(50ms)), stallwatch::deadline_exceeded);
  });
}

TEST_CASE("refused, reset mid-body and an invalid certificate are http::errors that name the URL and the reason") {
  HttpServer server;
  Nginx nginx;
  stallwatch::run([&] {
    const std::string refused_url = "http://127.0.0.1:" + std::to_string(test_servers::free_port()) + "/x";
    try {
      http::get(refused_url, stallwatch::deadline_after(10s));
      FAIL("no error");
    } catch (const http::error& e) {
      CHECK(e.code() == CURLE_COULDNT_CONNECT);
      CHECK(std::string(e.what()).find("GET " + refused_url) != std::string::npos);
      CHECK(std::string(e.what()).find("Couldn't connect") != std::string::npos);
    }
    try {
      http::get(server.url("/reset"), stallwatch::deadline_after(10s));
      FAIL("no error");
    } catch (const http::error& e) {
      CHECK((e.code() == CURLE_RECV_ERROR || e.code() == CURLE_PARTIAL_FILE));
      CHECK(std::string(e.what()).find("GET " + server.url("/reset")) != std::string::npos);
    }
    try {
      http::Request request;  // trusting only a CA that did not sign nginx's certificate
      request.url = nginx.https_url("/");
      request.ca_file = nginx.other_ca_file();
      request.deadline = stallwatch::deadline_after(10s);
      http::fetch(request);
      FAIL("no error");
    } catch (const http::error& e) {
      CHECK(e.code() == CURLE_PEER_FAILED_VERIFICATION);
      CHECK(std::string(e.what()).find(nginx.https_url("/")) != std::string::npos);
    }
  });
}

TEST_CASE("the system CA store is parsed off the loop: the first HTTPS request holds the loop a few ms") {
  Nginx nginx;
  std::uint64_t loop_cpu_ns = 0;
  stallwatch::run([&] {
    // TLS set up once on this loop (OpenSSL's first context), with the test's CA.
    http::Request warm;
    warm.url = nginx.https_url("/");
    warm.ca_file = nginx.ca_file();
    warm.deadline = stallwatch::deadline_after(30s);
    CHECK(http::fetch(warm).status == 200);
    // The system store does not know the test's CA: the request fails, after
    // the store was loaded (some 140 certificates, ~20 ms of CPU to parse).
    const std::uint64_t before = thread_cpu_ns();
    try {
      http::get(nginx.https_url("/"), stallwatch::deadline_after(30s));
      FAIL("no error");
    } catch (const http::error& e) {
      CHECK(e.code() == CURLE_PEER_FAILED_VERIFICATION);
    }
    loop_cpu_ns = thread_cpu_ns() - before;
  });
  MESSAGE("the loop's CPU for the first request against the system store: " << loop_cpu_ns / 1000 << " us");
  // Parsed on the loop it was ~45 ms; what is left is the handshake (1-2 ms,
  // 3-5 ms with the loop's own code under TSan).
  CHECK(loop_cpu_ns < (under_a_sanitizer ? 15'000'000u : 8'000'000u));
}

TEST_CASE("a password in the URL appears in no message") {
  HttpServer server;
  stallwatch::run([&] {
    const std::string port = std::to_string(test_servers::free_port());
    const std::string refused = message_of([&] { http::get("http://alice:s3cret@127.0.0.1:" + port + "/x"); });
    CHECK(refused.find("s3cret") == std::string::npos);
    CHECK(refused.find("http://alice@127.0.0.1:" + port + "/x") != std::string::npos);
    const std::string hang = "http://alice:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/hang";
    const std::string late = message_of([&] { http::get(hang, stallwatch::deadline_after(50ms)); });
    CHECK(late.find("s3cret") == std::string::npos);
    CHECK(late.find("deadline exceeded") != std::string::npos);
    CHECK(stallwatch::curl::redact_url("https://u:p@w@host/a@b") == "https://u@host/a@b");
    CHECK(stallwatch::curl::redact_url("http://host/a:b@c") == "http://host/a:b@c");
  });
}

TEST_CASE("cancel ends a transfer mid-body at once, and its connection is not reused") {
  HttpServer server;
  stallwatch::run([&] {
    CHECK(http::get(server.url("/small")).status == 200);
    CHECK(server.connections() == 1);
    std::uint64_t received = 0;
    auto task = stallwatch::spawn([&] {
      http::Request request;
      request.url = server.url("/stall");
      request.on_body = [&](std::string_view chunk) { received += chunk.size(); };
      http::fetch(request);
    }, "stalled GET");
    while (received < (64u << 10)) stallwatch::sleep_for(1ms);
    const auto started = Clock::now();
    task.cancel();
    const std::string what = message_of([&] { task.join(); });
    CHECK(what.find("cancelled") != std::string::npos);
    CHECK(what.find(server.url("/stall")) != std::string::npos);
    CHECK(Clock::now() - started < 100ms);
    CHECK(http::get(server.url("/small")).body == "hello");
    CHECK(server.connections() == 2);  // the half-read connection was closed, not reused
  });
}

namespace {
std::size_t append_to_string(char* data, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

TEST_CASE("50 raw easy handles through curl::perform at once") {
  // As libcurl asks of a program that makes its own handles: off the loop,
  // before the first (it reads OpenSSL's configuration file).
  curl_global_init(CURL_GLOBAL_DEFAULT);
  HttpServer server;
  stallwatch::run([&] {
    const std::vector<std::string> bodies = each(50,
        [&](int i) {
          CURL* easy = curl_easy_init();
          std::string body;
          const std::string url = server.url("/status/" + std::to_string(400 + i));
          curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
          curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &append_to_string);
          curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
          const CURLcode rc = stallwatch::curl::perform(easy, stallwatch::deadline_after(30s));
          long status = 0;
          curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
          curl_easy_cleanup(easy);
          return rc == CURLE_OK && status == 400 + i ? body : std::string("failed");
        });
    for (int i = 0; i < 50; ++i) CHECK(bodies[i] == "status " + std::to_string(400 + i));
  });
}

TEST_CASE("HTTPS through nginx with the test's CA file, HTTP/2 multiplexed on one loop") {
  Nginx nginx;
  stallwatch::run([&] {
    const std::vector<int> statuses = each(20,
        [&](int) {
          http::Request request;
          request.url = nginx.https_url("/");
          request.ca_file = nginx.ca_file();
          request.deadline = stallwatch::deadline_after(30s);
          const http::Response r = http::fetch(request);
          return r.body == "hello" ? static_cast<int>(r.status) : -1;
        });
    for (int s : statuses) CHECK(s == 200);
  });
}

TEST_CASE("raw HTTPS handles share one HTTP/2 connection on a loop") {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  Nginx nginx;
  std::string ca;  // read here, off the loop
  {
    std::ifstream in(nginx.ca_file());
    ca.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  struct Seen {
    long version = 0;
    long connects = 0;
    long status = 0;
  };
  std::vector<Seen> seen;
  stallwatch::run([&] {
    seen = each(20, [&](int) {
      CURL* easy = curl_easy_init();
      std::string body;
      const std::string url = nginx.https_url("/");
      curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
      curl_blob blob{ca.data(), ca.size(), CURL_BLOB_COPY};
      curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
      curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
      curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
      curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &append_to_string);
      curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
      Seen s;
      if (stallwatch::curl::perform(easy, stallwatch::deadline_after(30s)) == CURLE_OK && body == "hello") {
        curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &s.version);
        curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &s.connects);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &s.status);
      }
      curl_easy_cleanup(easy);
      return s;
    });
  });
  long connects = 0;
  for (const Seen& s : seen) {
    CHECK(s.status == 200);
    CHECK(s.version == CURL_HTTP_VERSION_2_0);
    connects += s.connects;
  }
  CHECK(connects == 1);  // multiplexed: one connection for all twenty
}

TEST_CASE("redirects are off by default, followed up to a limit when asked") {
  HttpServer server;
  stallwatch::run([&] {
    const http::Response plain = http::get(server.url("/redirect/2"));
    CHECK(plain.status == 302);
    CHECK(plain.header("location") == "/redirect/1");
    http::Request follow;
    follow.url = server.url("/redirect/2");
    follow.max_redirects = 5;
    const http::Response followed = http::fetch(follow);
    CHECK(followed.status == 200);
    CHECK(followed.body == "hello");
    follow.max_redirects = 1;
    try {
      http::fetch(follow);
      FAIL("no error");
    } catch (const http::error& e) {
      CHECK(e.code() == CURLE_TOO_MANY_REDIRECTS);
    }
  });
}

TEST_CASE("a request carries nothing of the one before it on the thread (pooled easy handles are not reset)") {
  HttpServer server;
  stallwatch::run([&] {
    // The request head the server saw, then "body N".
    auto sent = [&](const std::string& method, const http::Headers& headers = {}, const std::string& body = "") {
      http::Request request;
      request.method = method;
      request.url = server.url("/request");
      request.headers = headers;
      request.body = body;
      request.deadline = stallwatch::deadline_after(30s);
      return http::fetch(request).body;
    };
    auto lacks = [](const std::string& text, const std::string& part) { return text.find(part) == std::string::npos; };

    const std::string posted = sent("POST", {{"X-One", "1"}}, "abc");
    CHECK(posted.rfind("POST /request ", 0) == 0);
    CHECK_FALSE(lacks(posted, "X-One: 1\r\n"));
    CHECK_FALSE(lacks(posted, "Content-Length: 3\r\n"));
    CHECK_FALSE(lacks(posted, "body 3"));

    const std::string got = sent("GET");
    CHECK(got.rfind("GET /request ", 0) == 0);
    CHECK(lacks(got, "X-One"));
    CHECK(lacks(got, "Content-Length"));
    CHECK(lacks(got, "Content-Type"));
    CHECK_FALSE(lacks(got, "body 0"));

    CHECK(sent("DELETE").rfind("DELETE /request ", 0) == 0);
    CHECK(sent("GET").rfind("GET /request ", 0) == 0);

    http::Request head;
    head.method = "HEAD";
    head.url = server.url("/request");
    const http::Response headed = http::fetch(head);
    CHECK(headed.status == 200);
    CHECK(headed.body.empty());
    CHECK(sent("GET").rfind("GET /request ", 0) == 0);  // with its body: NOBODY is gone

    http::Request follow;
    follow.url = server.url("/redirect/1");
    follow.max_redirects = 5;
    CHECK(http::fetch(follow).status == 200);
    CHECK(http::get(server.url("/redirect/1")).status == 302);  // not followed any more
  });
}

TEST_CASE("the per-host connection limit caps the loop's connections") {
  HttpServer server;
  stallwatch::run([&] {
    stallwatch::curl::set_max_host_connections(2);
    const std::vector<long> statuses =
        each(20, [&](int) { return http::get(server.url("/small"), stallwatch::deadline_after(30s)).status; });
    for (long s : statuses) CHECK(s == 200);
  });
  CHECK(server.connections() <= 2);
}

TEST_CASE("client requests are counted per loop, method and status class") {
  HttpServer server;
  stallwatch::run([&] {
    http::get(server.url("/small"));
    http::get(server.url("/status/404"));
    http::post(server.url("/echo"), "x", "text/plain");
    CHECK_THROWS_AS(http::get(server.url("/hang"), stallwatch::deadline_after(20ms)), stallwatch::deadline_exceeded);
  });
  const auto families = stallwatch::metrics_collectable()->Collect();
  auto value = [&](const std::string& name, const std::string& method, const std::string& status_class) {
    for (const auto& f : families) {
      if (f.name != name) continue;
      double sum = 0;
      for (const auto& m : f.metric) {
        bool match = true;
        for (const auto& l : m.label) {
          if (l.name == "method" && l.value != method) match = false;
          if (l.name == "status_class" && l.value != status_class) match = false;
        }
        if (match) sum += m.counter.value;
      }
      return sum;
    }
    return -1.0;
  };
  const std::string requests = "stallwatch_http_client_requests_total";
  CHECK(value(requests, "GET", "2xx") >= 1);
  CHECK(value(requests, "GET", "4xx") >= 1);
  CHECK(value(requests, "POST", "2xx") >= 1);
  CHECK(value(requests, "GET", "error") >= 1);
  // Every request ended above is in the duration histogram, and none is
  // still counted in flight.
  std::uint64_t timed = 0;
  double in_flight = -1;
  for (const auto& f : families) {
    for (const auto& m : f.metric) {
      if (f.name == "stallwatch_http_client_request_duration_seconds") timed += m.histogram.sample_count;
      if (f.name == "stallwatch_http_client_active_requests") in_flight = std::max(in_flight, m.gauge.value);
    }
  }
  CHECK(timed >= 4);
  CHECK(in_flight == 0);
}

TEST_CASE("a host name is resolved off the loop (libcurl's threaded resolver)") {
  // The machine's own name, when /etc/hosts maps it to a loopback address
  // (127.0.0.1 here, 127.0.1.1 on a stock Debian): looked up by getaddrinfo,
  // which libcurl must run on its resolver thread, never on the loop (the
  // strict run would end at once).
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &found) != 0 || found == nullptr) {
    MESSAGE("skipped: the host name " << name << " does not resolve");
    return;
  }
  const in_addr_t address = reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr.s_addr;
  ::freeaddrinfo(found);
  if ((ntohl(address) >> 24) != 127) {
    MESSAGE("skipped: the host name " << name << " is not a loopback address");
    return;
  }
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  REQUIRE((info->features & CURL_VERSION_ASYNCHDNS) != 0);
  HttpServer server(address);
  stallwatch::run([&] {
    const http::Response r =
        http::get("http://" + std::string(name) + ":" + std::to_string(server.port()) + "/small",
                  stallwatch::deadline_after(10s));
    CHECK(r.body == "hello");
  });
}

TEST_CASE("the demo server: 200 keep-alive GETs from 20 fibers") {
  const char* demo = std::getenv("STALLWATCH_DEMO");
  if (demo == nullptr || *demo == '\0') {
    MESSAGE("skipped: STALLWATCH_DEMO names no stallwatch-demo");
    return;
  }
  test_servers::Demo server(demo);
  stallwatch::run([&] {
    const std::vector<int> ok = each(20, [&](int) {
      int good = 0;
      for (int k = 0; k < 10; ++k) {
        const http::Response r = http::get(server.url("/"), stallwatch::deadline_after(30s));
        good += r.status == 200 && r.body == "hello";
      }
      return good;
    });
    int total = 0;
    for (int n : ok) total += n;
    CHECK(total == 200);
    CHECK(http::get(server.url("/no-such-endpoint"), stallwatch::deadline_after(30s)).status == 404);
  });
}
