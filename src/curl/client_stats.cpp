#include "curl/client_stats.hpp"

#include <prometheus/metric_family.h>

#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "metrics/collectable.hpp"

namespace stallwatch::curl_adapter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Every loop index's stats; a deque so that growing it moves none. Leaked:
// scrapes may run while static destructors do.
struct Registry {
  std::mutex mutex;
  std::deque<ClientStats> by_loop;
};

Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

void append_families(std::vector<MetricFamily>& out) {
  MetricFamily requests = metrics::family("stallwatch_http_client_requests_total",
                                          "HTTP client requests ended, by method and status class (error: no "
                                          "response).",
                                          MetricType::Counter);
  MetricFamily duration = metrics::family("stallwatch_http_client_request_duration_seconds",
                                          "Duration of HTTP client requests, from perform to the end of the "
                                          "response.",
                                          MetricType::Histogram);
  MetricFamily active =
      metrics::family("stallwatch_http_client_active_requests", "HTTP client requests in flight.", MetricType::Gauge);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (std::size_t loop = 0; loop < r.by_loop.size(); ++loop) {
    const ClientStats& s = r.by_loop[loop];
    const ClientMetric::Label loop_label{"loop", std::to_string(loop)};
    for (int m = 0; m < method_count; ++m) {
      for (int c = 0; c < status_class_count; ++c) {
        const std::uint64_t n = s.requests(m, c);
        if (n == 0) continue;
        metrics::add_counter(requests,
                             {loop_label, {"method", std::string(known_methods[m])},
                              {"status_class", std::string(status_classes[c])}},
                             n);
      }
    }
    ClientMetric::Histogram histogram = metrics::to_prometheus_histogram(s.duration());
    if (histogram.sample_count == 0 && s.active() == 0) continue;
    metrics::add_histogram(duration, {loop_label}, std::move(histogram));
    metrics::add_gauge(active, {loop_label}, static_cast<double>(s.active()));
  }
  for (MetricFamily* f : {&requests, &duration, &active}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
}

}  // namespace

int method_index(std::string_view method) {
  for (int i = 0; i + 1 < method_count; ++i) {
    if (known_methods[i] == method) return i;
  }
  return method_count - 1;
}

int status_class_index(long status) {
  return status >= 100 && status < 600 ? static_cast<int>(status / 100) - 1 : status_class_count - 1;
}

ClientStats& ClientStats::for_loop(int index) {
  static std::once_flag registered;
  std::call_once(registered, [] { metrics::add_family_source(&append_families); });
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const auto i = static_cast<std::size_t>(index < 0 ? 0 : index);
  while (r.by_loop.size() <= i) r.by_loop.emplace_back();
  return r.by_loop[i];
}

void ClientStats::record(std::string_view method, long status, std::uint64_t duration_ns) {
  requests_[method_index(method)][status_class_index(status)].add();
  duration_.record(duration_ns);
}

}  // namespace stallwatch::curl_adapter
