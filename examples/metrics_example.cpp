// A loop that stalls on purpose and serves the metrics that count it: every
// few hundred milliseconds one fiber computes for 120 ms (an on-cpu stall)
// and another sleeps in usleep() on the loop (a blocked stall, and a probed
// blocking call), while a ticker and an in_thread user keep the loop-lag and
// offload-pool metrics moving, and (built with libcurl) a client fetches the
// metrics endpoint itself through stallwatch::http. Built as `stallwatch-metrics-example`; the
// Prometheus integration test (tests/prometheus_integration.py) scrapes it.
//
//   STALLWATCH_METRICS_ADDR=127.0.0.1:9464 stallwatch-metrics-example --seconds 60
//   curl -s 127.0.0.1:9464/metrics | grep stallwatch_stalls_total
//
// With --service-exposer HOST:PORT the metrics are served instead from an
// Exposer the program owns, as a service with its own prometheus-cpp
// registry would do (see docs/METRICS.md).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <stallwatch/metrics.hpp>
#include <stallwatch/stallwatch.hpp>
#if STALLWATCH_HAVE_CURL
#include <stallwatch/http.hpp>  // libstallwatch-curl
#endif

using namespace std::chrono_literals;

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void request_stop(int) { stop_requested.store(true, std::memory_order_relaxed); }

// Computes on the loop thread for `how_long`: the watchdog sees an on-cpu stall.
void compute_for(std::chrono::milliseconds how_long) {
  const auto end = std::chrono::steady_clock::now() + how_long;
  volatile std::uint64_t x = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) x = x * 6364136223846793005u + 1;
  }
}

struct Arguments {
  int seconds = 0;  // 0: until SIGINT or SIGTERM
  std::string service_exposer;
};

Arguments parse(int argc, char** argv) {
  Arguments a;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      a.seconds = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--service-exposer") == 0 && i + 1 < argc) {
      a.service_exposer = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--seconds N] [--service-exposer HOST:PORT]\n", argv[0]);
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Arguments args = parse(argc, argv);
  struct sigaction stop {};
  stop.sa_handler = request_stop;
  sigaction(SIGINT, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);

  // A service with its own registry and exposer serves stallwatch's metrics
  // from it; the built-in endpoint then stays off.
  std::unique_ptr<prometheus::Exposer> exposer;
  auto registry = std::make_shared<prometheus::Registry>();
  if (!args.service_exposer.empty()) {
    exposer = std::make_unique<prometheus::Exposer>(args.service_exposer);
    exposer->RegisterCollectable(registry);
    stallwatch::register_metrics(*exposer);
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(args.seconds);
  const auto running = [&] {
    return !stop_requested.load(std::memory_order_relaxed) &&
           (args.seconds == 0 || std::chrono::steady_clock::now() < deadline);
  };

  return stallwatch::run([&] {
    // A listener nobody connects to: its accept queue is exported
    // (stallwatch_listen_queue_depth) like any service's.
    auto listener = stallwatch::TcpListener::bind("127.0.0.1", 0);
    auto ticker = stallwatch::spawn([&] {
      while (running()) stallwatch::sleep_for(5ms);
    }, "ticker");
    auto cpu = stallwatch::spawn([&] {
      while (running()) {
        stallwatch::sleep_for(400ms);
        compute_for(120ms);
      }
    }, "cpu-stall");
    auto blocked = stallwatch::spawn([&] {
      while (running()) {
        stallwatch::sleep_for(700ms);
        ::usleep(120'000);  // blocks the whole loop: what the probes and the watchdog catch
      }
    }, "blocking-stall");
    auto offload = stallwatch::spawn([&] {
      while (running()) {
        stallwatch::in_thread([] { ::usleep(20'000); });  // the right way to block
        stallwatch::sleep_for(50ms);
      }
    }, "offload");
#if STALLWATCH_HAVE_CURL
    // The HTTP client's metrics: GET this program's own /metrics.
    const char* addr = std::getenv("STALLWATCH_METRICS_ADDR");
    const std::string target = !args.service_exposer.empty() ? args.service_exposer : (addr != nullptr ? addr : "");
    auto client = stallwatch::spawn([&] {
      while (running() && !target.empty() && target != "off") {
        try {
          stallwatch::http::get("http://" + target + "/metrics", stallwatch::deadline_after(2s));
        } catch (const std::exception&) {
          // Not listening yet, or gone: counted as status_class="error".
        }
        stallwatch::sleep_for(300ms);
      }
    }, "http-client");
#endif
    ticker.join();
    cpu.join();
    blocked.join();
    offload.join();
#if STALLWATCH_HAVE_CURL
    client.join();
#endif
    return 0;
  });
}
