// Tests of the metrics part: the collectable's families against LoopRecords
// filled by hand, the /metrics endpoint (bad address, port in use, a real
// scrape checked by promtool) and the public register_metrics API.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <tuple>
#include <thread>
#include <vector>

#include "base/coarse_clock.hpp"
#include "emit/emitter.hpp"
#include "core/loop_record.hpp"
#include "metrics/collectable.hpp"
#include "metrics/endpoint.hpp"
#include "metrics/kernel_tcp.hpp"
#include "stallwatch/net.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/metrics.hpp"

namespace {

using stallwatch::base::LogHistogram;
using stallwatch::core::LoopRecord;
using stallwatch::core::StallKind;
namespace metrics = stallwatch::metrics;

const prometheus::MetricFamily* find_family(const std::vector<prometheus::MetricFamily>& families,
                                            const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string label(const prometheus::ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label) {
    if (l.name == name) return l.value;
  }
  return "<absent>";
}

// The sample of `family` whose labels match `loop` (and `kind` if given).
const prometheus::ClientMetric* find_sample(const prometheus::MetricFamily& family, int loop,
                                            const std::string& kind = {}) {
  for (const auto& m : family.metric) {
    if (label(m, "loop") == std::to_string(loop) && (kind.empty() || label(m, "kind") == kind)) return &m;
  }
  return nullptr;
}

std::vector<std::string> label_names(const prometheus::MetricFamily& family) {
  std::vector<std::string> names;
  for (const auto& m : family.metric) {
    for (const auto& l : m.label) {
      if (std::find(names.begin(), names.end(), l.name) == names.end()) names.push_back(l.name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A loop record no test has written yet. Records are reused with their
// counters (they stay monotonic), so each test claims a new one and holds it
// until the binary ends.
struct ClaimedRecord {
  LoopRecord& record = stallwatch::core::claim_loop_record();
};

// Fills a record with known values: every per-loop metric gets something.
void fill(LoopRecord& r) {
  r.threshold_ns.store(40'000'000);
  r.slice.seq.store(1234);
  r.stats.slice_duration.record(5'000);        // ≤ 10 µs bucket
  r.stats.slice_duration.record(15'000);       // ≤ 20 µs bucket
  r.stats.slice_duration.record(20'000'000);   // ≤ 20.48 ms bucket
  r.stats.loop_lag.record(30'000);
  r.stats.fibers_spawned.add(17);
  r.stats.fibers_alive.store(5);
  r.stats.ready_fibers.store(2);
  r.stalls.stalls[static_cast<int>(StallKind::cpu)].add(3);
  r.stalls.stalls[static_cast<int>(StallKind::blocked)].add(2);
  r.stalls.stall_duration.record(60'000'000);
  r.stalls.stall_duration.record(200'000'000);
  r.stalls.stall_duration.record(20'000'000'000);  // 20 s: past the last finite bound
  r.stalls.reports.add(4);
  r.stalls.reports_suppressed.add(1);
}

// GET http://127.0.0.1:port/path; returns the whole response (head and body).
std::string http_get(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  REQUIRE(write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  std::string response;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, static_cast<std::size_t>(n));
  close(fd);
  return response;
}

std::string body_of(const std::string& response) {
  const auto end_of_head = response.find("\r\n\r\n");
  return end_of_head == std::string::npos ? std::string() : response.substr(end_of_head + 4);
}

// A listening socket on a kernel-chosen loopback port, to make a port busy.
struct BusyPort {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  BusyPort() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd, 1) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
  }
  ~BusyPort() { close(fd); }
};

bool have_promtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// Runs `promtool check metrics` on text; returns its exit status and output.
int promtool_check(const std::string& text, std::string& output) {
  char path[] = "/tmp/stallwatch-metrics-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  const std::string command = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[512];
  while (fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  const int status = pclose(pipe);
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Log lines written through the emitter during this test binary.
std::mutex logged_mutex;
std::vector<std::string> logged;

void capture_log() {
  static const bool installed = [] {
    stallwatch::Config config;
    config.log_sink = [](std::string_view line) {
      std::lock_guard lock(logged_mutex);
      logged.emplace_back(line);
    };
    stallwatch::emit::configure_process(config);
    return true;
  }();
  (void)installed;
}

}  // namespace

TEST_CASE("log histograms become cumulative Prometheus buckets with _sum and _count") {
  std::uint64_t counts[LogHistogram::bucket_count] = {};
  counts[0] = 2;                              // ≤ 10 µs
  counts[3] = 5;                              // ≤ 80 µs
  counts[LogHistogram::finite_buckets] = 1;   // +Inf only
  const auto h = metrics::to_prometheus_histogram(counts, 2'500'000'000);

  REQUIRE(h.bucket.size() == static_cast<std::size_t>(LogHistogram::bucket_count));
  CHECK(h.bucket[0].upper_bound == doctest::Approx(10e-6));
  CHECK(h.bucket[0].cumulative_count == 2);
  CHECK(h.bucket[2].cumulative_count == 2);
  CHECK(h.bucket[3].upper_bound == doctest::Approx(80e-6));
  CHECK(h.bucket[3].cumulative_count == 7);
  CHECK(h.bucket[LogHistogram::finite_buckets - 1].upper_bound == doctest::Approx(10.48576));
  CHECK(h.bucket[LogHistogram::finite_buckets - 1].cumulative_count == 7);
  CHECK(std::isinf(h.bucket.back().upper_bound));
  CHECK(h.bucket.back().cumulative_count == 8);
  CHECK(h.sample_count == 8);
  CHECK(h.sample_sum == doctest::Approx(2.5));
  for (std::size_t i = 1; i < h.bucket.size(); ++i) {
    CHECK(h.bucket[i].upper_bound > h.bucket[i - 1].upper_bound);
    CHECK(h.bucket[i].cumulative_count >= h.bucket[i - 1].cumulative_count);
  }
}

TEST_CASE("the collectable reports every DESIGN.md family with its type, labels and values") {
  ClaimedRecord claimed;
  LoopRecord& r = claimed.record;
  fill(r);
  const int loop = r.index;

  const auto families = metrics::shared_collectable()->Collect();

  using T = prometheus::MetricType;
  const std::vector<std::tuple<std::string, T, std::vector<std::string>>> expected = {
      {"stallwatch_slices_total", T::Counter, {"loop"}},
      {"stallwatch_slice_duration_seconds", T::Histogram, {"loop"}},
      {"stallwatch_current_slice_seconds", T::Gauge, {"loop"}},
      {"stallwatch_stalls_total", T::Counter, {"kind", "loop"}},
      {"stallwatch_stall_duration_seconds", T::Histogram, {"loop"}},
      {"stallwatch_stall_reports_total", T::Counter, {"loop"}},
      {"stallwatch_stall_reports_suppressed_total", T::Counter, {"loop"}},
      {"stallwatch_loop_lag_seconds", T::Histogram, {"loop"}},
      {"stallwatch_fibers", T::Gauge, {"loop"}},
      {"stallwatch_ready_fibers", T::Gauge, {"loop"}},
      {"stallwatch_fibers_spawned_total", T::Counter, {"loop"}},
      {"stallwatch_in_thread_pending", T::Gauge, {}},
      {"stallwatch_in_thread_duration_seconds", T::Histogram, {}},
      {"stallwatch_threshold_seconds", T::Gauge, {}},
      {"stallwatch_blocking_call_reports_total", T::Counter, {}},
      {"stallwatch_blocking_call_reports_suppressed_total", T::Counter, {}},
      {"stallwatch_accept_backoffs_total", T::Counter, {}},
      {"stallwatch_tcp_listen_overflows_total", T::Counter, {}},
      {"stallwatch_tcp_listen_drops_total", T::Counter, {}},
  };
  for (const auto& [name, type, labels] : expected) {
    CAPTURE(name);
    const auto* f = find_family(families, name);
    REQUIRE(f != nullptr);
    CHECK(f->type == type);
    CHECK_FALSE(f->help.empty());
    CHECK(label_names(*f) == labels);
  }
  if (const auto* blocking = find_family(families, "stallwatch_blocking_calls_total")) {
    CHECK(blocking->type == T::Counter);
    CHECK(label_names(*blocking) == std::vector<std::string>{"function"});
  }

  CHECK(find_sample(*find_family(families, "stallwatch_slices_total"), loop)->counter.value == 1234);
  const auto& stalls = *find_family(families, "stallwatch_stalls_total");
  CHECK(find_sample(stalls, loop, "cpu")->counter.value == 3);
  CHECK(find_sample(stalls, loop, "blocked")->counter.value == 2);
  CHECK(find_sample(stalls, loop, "preempted")->counter.value == 0);
  CHECK(find_sample(*find_family(families, "stallwatch_stall_reports_total"), loop)->counter.value == 4);
  CHECK(find_sample(*find_family(families, "stallwatch_stall_reports_suppressed_total"), loop)->counter.value ==
        1);
  CHECK(find_sample(*find_family(families, "stallwatch_fibers"), loop)->gauge.value == 5);
  CHECK(find_sample(*find_family(families, "stallwatch_ready_fibers"), loop)->gauge.value == 2);
  CHECK(find_sample(*find_family(families, "stallwatch_fibers_spawned_total"), loop)->counter.value == 17);

  const auto& stall_h = find_sample(*find_family(families, "stallwatch_stall_duration_seconds"), loop)->histogram;
  // 5 stalls begun, 3 of them ended: the 2 in progress count in +Inf alone,
  // so _count equals the stalls counted.
  CHECK(stall_h.sample_count == 5);
  CHECK(stall_h.sample_sum == doctest::Approx(20.26));
  CHECK(stall_h.bucket.back().cumulative_count == 5);
  CHECK(stall_h.bucket[LogHistogram::finite_buckets - 1].cumulative_count == 2);

  const auto& slice_h = find_sample(*find_family(families, "stallwatch_slice_duration_seconds"), loop)->histogram;
  // 1234 slices ended (the loop is idle); the 1231 never recorded were
  // shorter than a coarse tick and count in the first bucket.
  CHECK(slice_h.sample_count == 1234);
  CHECK(slice_h.bucket[0].cumulative_count == 1232);
  CHECK(slice_h.bucket[1].cumulative_count == 1233);
  CHECK(slice_h.sample_sum == doctest::Approx(0.02002));

  const auto& lag_h = find_sample(*find_family(families, "stallwatch_loop_lag_seconds"), loop)->histogram;
  CHECK(lag_h.sample_count == 1);
  CHECK(lag_h.bucket[1].cumulative_count == 0);
  CHECK(lag_h.bucket[2].cumulative_count == 1);

  CHECK(find_family(families, "stallwatch_threshold_seconds")->metric.at(0).gauge.value == doctest::Approx(0.04));
}

TEST_CASE("current slice age: grows while a slice runs, 0 while the loop is idle or ended") {
  ClaimedRecord claimed;
  LoopRecord& r = claimed.record;
  r.active.store(true);
  r.slice.start_ns.store(stallwatch::base::monotonic_ns() - 3'000'000'000);
  r.slice.idle.store(false);

  auto current = [&] {
    const auto families = metrics::shared_collectable()->Collect();
    return find_sample(*find_family(families, "stallwatch_current_slice_seconds"), r.index)->gauge.value;
  };
  const double running = current();
  CHECK(running >= 3.0);
  CHECK(running < 3600.0);

  r.slice.idle.store(true);
  CHECK(current() == 0.0);

  r.slice.idle.store(false);
  r.active.store(false);
  CHECK(current() == 0.0);
}

TEST_CASE("text exposition: cumulative buckets, +Inf, _sum, _count and label values") {
  ClaimedRecord claimed;
  fill(claimed.record);
  const std::string loop = std::to_string(claimed.record.index);
  const std::string text = prometheus::TextSerializer().Serialize(metrics::shared_collectable()->Collect());

  CHECK(text.find("# TYPE stallwatch_stall_duration_seconds histogram") != std::string::npos);
  // 3 stalls ended and 2 in progress (5 counted): +Inf and _count hold all 5.
  CHECK(text.find("stallwatch_stall_duration_seconds_bucket{loop=\"" + loop + "\",le=\"+Inf\"} 5") !=
        std::string::npos);
  CHECK(text.find("stallwatch_stall_duration_seconds_count{loop=\"" + loop + "\"} 5") != std::string::npos);
  CHECK(text.find("stallwatch_stall_duration_seconds_sum{loop=\"" + loop + "\"} 20.26") != std::string::npos);
  CHECK(text.find("stallwatch_stalls_total{loop=\"" + loop + "\",kind=\"cpu\"} 3") != std::string::npos);
  CHECK(text.find("# TYPE stallwatch_slices_total counter") != std::string::npos);
  CHECK(text.find("stallwatch_slices_total{loop=\"" + loop + "\"} 1234") != std::string::npos);
}

TEST_CASE("start_endpoint: a malformed address or a port in use fails with the reason, never throws") {
  const auto collectable = metrics::shared_collectable();

  metrics::EndpointStart bad;
  CHECK_NOTHROW(bad = metrics::start_endpoint("127.0.0.1:99999", collectable));
  CHECK(bad.exposer == nullptr);
  CHECK(bad.error.find("port") != std::string::npos);

  BusyPort busy;
  metrics::EndpointStart in_use;
  CHECK_NOTHROW(in_use = metrics::start_endpoint("127.0.0.1:" + std::to_string(busy.port), collectable));
  CHECK(in_use.exposer == nullptr);
  CHECK(in_use.error.find("Address already in use") != std::string::npos);

  metrics::EndpointStart unresolvable;
  CHECK_NOTHROW(unresolvable = metrics::start_endpoint("stallwatch-test.invalid:9464", collectable));
  CHECK(unresolvable.exposer == nullptr);
  CHECK(unresolvable.error.find("cannot resolve stallwatch-test.invalid") != std::string::npos);

  metrics::EndpointStart unassignable;
  CHECK_NOTHROW(unassignable = metrics::start_endpoint("192.0.2.1:9464", collectable));
  CHECK(unassignable.exposer == nullptr);
  CHECK_FALSE(unassignable.error.empty());
}

TEST_CASE("ensure_endpoint: a port in use is one clear log line naming the address; the caller runs on") {
  capture_log();
  BusyPort busy;
  stallwatch::Config config;
  config.metrics_addr = "127.0.0.1:" + std::to_string(busy.port);
  CHECK_NOTHROW(metrics::ensure_endpoint(config));
  CHECK_NOTHROW(metrics::ensure_endpoint(config));  // once per process: no second line

  REQUIRE(stallwatch::emit::flush(std::chrono::seconds(30)));  // lines reach the sink on their own thread
  std::lock_guard lock(logged_mutex);
  std::vector<std::string> mine;
  for (const auto& line : logged) {
    if (line.find("metrics endpoint") != std::string::npos) mine.push_back(line);
  }
  REQUIRE(mine.size() == 1);
  CHECK(mine[0].find(config.metrics_addr) != std::string::npos);
  CHECK(mine[0].find("Address already in use") != std::string::npos);
}

TEST_CASE("a real scrape of /metrics is served and passes promtool check metrics") {
  ClaimedRecord claimed;
  fill(claimed.record);
  metrics::EndpointStart start = metrics::start_endpoint("127.0.0.1:0", metrics::shared_collectable());
  REQUIRE_MESSAGE(start.exposer != nullptr, start.error);
  REQUIRE(start.port > 0);

  const std::string response = http_get(start.port, "/metrics");
  CHECK(response.rfind("HTTP/1.1 200", 0) == 0);
  const std::string body = body_of(response);
  CHECK(body.find("stallwatch_stalls_total{loop=\"" + std::to_string(claimed.record.index) + "\",kind=\"cpu\"} 3") !=
        std::string::npos);

  if (!have_promtool()) {
    WARN_MESSAGE(false, "promtool not installed (Debian package prometheus): promtool check skipped");
    return;
  }
  std::string output;
  CHECK_MESSAGE(promtool_check(body, output) == 0, output);
}

TEST_CASE("a host name is resolved to its IPv4 address before the server binds") {
  metrics::EndpointStart start = metrics::start_endpoint("localhost:0", metrics::shared_collectable());
  REQUIRE_MESSAGE(start.exposer != nullptr, start.error);
  CHECK(http_get(start.port, "/metrics").rfind("HTTP/1.1 200", 0) == 0);
}

TEST_CASE("register_metrics serves stallwatch's families from the service's own exposer") {
  prometheus::Exposer exposer("127.0.0.1:0", 1);
  stallwatch::register_metrics(exposer, "/service-metrics");
  CHECK(stallwatch::metrics_collectable() == stallwatch::metrics_collectable());

  ClaimedRecord claimed;
  fill(claimed.record);
  const int port = exposer.GetListeningPorts().at(0);
  const std::string body = body_of(http_get(port, "/service-metrics"));
  CHECK(body.find("stallwatch_slices_total{loop=\"" + std::to_string(claimed.record.index) + "\"} 1234") !=
        std::string::npos);
}

namespace {

// What one scrape showed for one loop index: every counter and every
// cumulative bucket, which must never go down from one scrape to the next.
struct LoopSeen {
  std::map<std::string, double> values;  // name (with kind / bucket bound) → value
};

// Checks one scrape against itself (_count equals its counter) and against
// the scraper's previous one (nothing went down); appends what is wrong.
void check_scrape(const std::vector<prometheus::MetricFamily>& families, std::map<std::string, LoopSeen>& previous,
                  std::vector<std::string>& problems) {
  const auto* slices = find_family(families, "stallwatch_slices_total");
  if (slices == nullptr) return;
  std::map<std::string, LoopSeen> now;
  const auto note = [&](const std::string& loop, const std::string& name, double value) {
    now[loop].values[name] = value;
  };
  for (const auto& family : families) {
    for (const auto& m : family.metric) {
      const std::string loop = label(m, "loop");
      if (loop == "<absent>") continue;
      if (family.type == prometheus::MetricType::Counter) {
        note(loop, family.name + "{" + label(m, "kind") + "}", m.counter.value);
      } else if (family.type == prometheus::MetricType::Histogram) {
        for (const auto& b : m.histogram.bucket) {
          note(loop, family.name + "_bucket{le=" + std::to_string(b.upper_bound) + "}",
               static_cast<double>(b.cumulative_count));
        }
        note(loop, family.name + "_count", static_cast<double>(m.histogram.sample_count));
      }
    }
  }
  for (auto& [loop, seen] : now) {
    auto& v = seen.values;
    const double slices_total = v["stallwatch_slices_total{<absent>}"];
    if (slices_total != v["stallwatch_slice_duration_seconds_count"]) {
      problems.push_back("loop " + loop + ": slices_total " + std::to_string(slices_total) +
                         " != slice_duration_seconds_count " + std::to_string(v["stallwatch_slice_duration_seconds_count"]));
    }
    const double stalls = v["stallwatch_stalls_total{cpu}"] + v["stallwatch_stalls_total{blocked}"] +
                          v["stallwatch_stalls_total{preempted}"];
    if (stalls != v["stallwatch_stall_duration_seconds_count"]) {
      problems.push_back("loop " + loop + ": stalls_total " + std::to_string(stalls) +
                         " != stall_duration_seconds_count " + std::to_string(v["stallwatch_stall_duration_seconds_count"]));
    }
    for (const auto& [name, value] : previous[loop].values) {
      if (v.count(name) != 0 && v[name] < value) {
        problems.push_back("loop " + loop + ": " + name + " went down from " + std::to_string(value) + " to " +
                           std::to_string(v[name]));
      }
    }
  }
  for (auto& [loop, seen] : now) previous[loop] = std::move(seen);
}

// Spins for ms on the loop: a stall past a 1 ms threshold.
void stall_for(std::chrono::milliseconds ms) {
  const auto until = std::chrono::steady_clock::now() + ms;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace

TEST_CASE("counters only go up while loops end and reuse their index, and each _count equals its counter") {
  std::atomic<bool> stop{false};
  std::mutex problems_mutex;
  std::vector<std::string> problems;
  std::atomic<int> scrapes{0};
  std::vector<std::thread> scrapers;
  for (int i = 0; i < 2; ++i) {
    scrapers.emplace_back([&] {
      std::map<std::string, LoopSeen> previous;
      std::vector<std::string> mine;
      while (!stop.load()) {
        check_scrape(metrics::shared_collectable()->Collect(), previous, mine);
        scrapes.fetch_add(1);
      }
      std::lock_guard lock(problems_mutex);
      problems.insert(problems.end(), mine.begin(), mine.end());
    });
  }

  stallwatch::Options options;
  options.threshold = std::chrono::milliseconds(1);
  options.reports_per_minute = 0;  // stalls counted, no report lines
  options.metrics_addr = "off";
  options.log_sink = [](std::string_view) {};
  // Two threads each run one loop after another: every loop but the first
  // on a thread reuses an index that an ended loop left, with its counters.
  // Long loops (many slices) alternate with short ones (a few): before the
  // fix, slices_total fell from thousands to a handful at the reuse.
  std::vector<std::thread> loop_threads;
  std::atomic<std::uint64_t> loops_run{0};
  for (int t = 0; t < 2; ++t) {
    loop_threads.emplace_back([&, t] {
      for (int round = 0; round < 12; ++round) {
        const bool long_loop = (round + t) % 2 == 0;
        stallwatch::run(options, [&] {
          auto a = stallwatch::spawn([&] {
            for (int i = 0; i < (long_loop ? 3000 : 3); ++i) stallwatch::yield();
          });
          auto b = stallwatch::spawn([&] {
            for (int i = 0; i < (long_loop ? 3000 : 3); ++i) stallwatch::yield();
            if (long_loop) stall_for(std::chrono::milliseconds(4));
          });
          stallwatch::sleep_for(std::chrono::milliseconds(2));
          a.join();
          b.join();
        });
        loops_run.fetch_add(1);
      }
    });
  }
  for (auto& t : loop_threads) t.join();
  // A last scrape by each scraper after every loop ended.
  const int seen = scrapes.load();
  while (scrapes.load() < seen + 2) std::this_thread::yield();
  stop.store(true);
  for (auto& t : scrapers) t.join();

  CHECK(loops_run.load() == 24);
  CHECK(scrapes.load() > 10);
  for (const auto& problem : problems) FAIL_CHECK(problem);
  CHECK(problems.empty());

  // And the totals are those of every loop that ran on the indexes, not of
  // the last: 12 loops × (6 fibers' worth of slices at least) per thread.
  const auto families = metrics::shared_collectable()->Collect();
  const auto& slices = *find_family(families, "stallwatch_slices_total");
  double most = 0;
  for (const auto& m : slices.metric) most = std::max(most, m.counter.value);
  CHECK(most >= 6 * 3000);
}

TEST_CASE("ListenOverflows and ListenDrops are read from the TcpExt lines of /proc/net/netstat") {
  const char* text =
      "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPLostRetransmit\n"
      "TcpExt: 0 520 523 7\n"
      "IpExt: InNoRoutes InTruncatedPkts\n"
      "IpExt: 0 0\n";
  const auto counts = metrics::parse_listen_drops(text);
  REQUIRE(counts.has_value());
  CHECK(counts->overflows == 520);
  CHECK(counts->drops == 523);
  CHECK_FALSE(metrics::parse_listen_drops("TcpExt: SyncookiesSent ListenDrops\nTcpExt: 0 1\n").has_value());
  CHECK_FALSE(metrics::parse_listen_drops("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n").has_value());
  CHECK_FALSE(metrics::parse_listen_drops("").has_value());

  // This kernel's own file parses, and the collectable exports what it says.
  const auto live = metrics::read_listen_drops();
  REQUIRE(live.has_value());
  const auto families = metrics::shared_collectable()->Collect();
  const auto* overflows = find_family(families, "stallwatch_tcp_listen_overflows_total");
  REQUIRE(overflows != nullptr);
  CHECK(overflows->metric.at(0).counter.value >= static_cast<double>(live->overflows));
}

TEST_CASE("the accept queue of a listener is exported by address: connections not yet accepted, and its limit") {
  stallwatch::run([] {
    stallwatch::ListenOptions options;
    options.backlog = 16;
    auto listener = stallwatch::TcpListener::bind("127.0.0.1", 0, options);
    const std::string address = listener.local_address().to_string();
    std::vector<stallwatch::TcpStream> clients;
    for (int i = 0; i < 3; ++i) {
      clients.push_back(stallwatch::TcpStream::connect("127.0.0.1", listener.local_address().port(),
                                                       stallwatch::deadline_after(std::chrono::seconds(5))));
    }
    auto sample = [&](const char* name) -> double {
      const auto families = metrics::shared_collectable()->Collect();
      const auto* f = find_family(families, name);
      if (f == nullptr) return -1;
      for (const auto& m : f->metric) {
        if (m.label.size() == 1 && m.label[0].name == "address" && m.label[0].value == address) return m.gauge.value;
      }
      return -1;
    };
    CHECK(sample("stallwatch_listen_queue_depth") == 3);
    CHECK(sample("stallwatch_listen_queue_limit") == 16);
    listener.accept(stallwatch::deadline_after(std::chrono::seconds(5)));
    CHECK(sample("stallwatch_listen_queue_depth") == 2);
    listener.close();
    CHECK(sample("stallwatch_listen_queue_depth") == -1);  // a closed listener leaves the metrics
  });
}
