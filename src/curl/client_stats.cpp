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

ClientMetric::Label loop_label(std::size_t index) { return {"loop", std::to_string(index)}; }

void append_families(std::vector<MetricFamily>& out) {
  MetricFamily requests{"stallwatch_http_client_requests_total",
                        "HTTP client requests ended, by method and status class (error: no response).",
                        MetricType::Counter, {}};
  MetricFamily duration{"stallwatch_http_client_request_duration_seconds",
                        "Duration of HTTP client requests, from perform to the end of the response.",
                        MetricType::Histogram, {}};
  MetricFamily active{"stallwatch_http_client_active_requests", "HTTP client requests in flight.",
                      MetricType::Gauge, {}};
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (std::size_t loop = 0; loop < r.by_loop.size(); ++loop) {
    const ClientStats& s = r.by_loop[loop];
    for (int m = 0; m < method_count; ++m) {
      for (int c = 0; c < status_class_count; ++c) {
        const std::uint64_t n = s.requests(m, c);
        if (n == 0) continue;
        ClientMetric metric;
        metric.label = {loop_label(loop), {"method", std::string(known_methods[m])},
                        {"status_class", std::string(status_classes[c])}};
        metric.counter.value = static_cast<double>(n);
        requests.metric.push_back(std::move(metric));
      }
    }
    std::uint64_t counts[base::LogHistogram::bucket_count];
    std::uint64_t total = 0;
    for (int i = 0; i < base::LogHistogram::bucket_count; ++i) total += counts[i] = s.duration().count(i);
    if (total == 0 && s.active() == 0) continue;
    ClientMetric h;
    h.label = {loop_label(loop)};
    h.histogram = metrics::to_prometheus_histogram(counts, s.duration().sum_ns());
    duration.metric.push_back(std::move(h));
    ClientMetric g;
    g.label = {loop_label(loop)};
    g.gauge.value = static_cast<double>(s.active());
    active.metric.push_back(std::move(g));
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
