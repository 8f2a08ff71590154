// HTTP client request counts and durations per loop, for the metrics
// endpoint (docs/METRICS.md): stallwatch_http_client_requests_total{loop,
// method,status_class}, stallwatch_http_client_request_duration_seconds{loop},
// stallwatch_http_client_active_requests{loop}. Method and status class take
// a fixed set of values (OpenTelemetry's known methods, else _OTHER; 1xx …
// 5xx, or error for a transfer that got no response), so the label
// cardinality is bounded.
//
// Written by the loop thread of the loop index (single writer), read by the
// scrape threads. Records are never freed: a loop reusing an index counts on.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "base/log_histogram.hpp"

namespace stallwatch::curl_adapter {

inline constexpr std::string_view known_methods[] = {"GET",     "HEAD",    "POST",  "PUT",    "DELETE",
                                                     "PATCH",   "OPTIONS", "TRACE", "CONNECT", "_OTHER"};
inline constexpr int method_count = sizeof known_methods / sizeof known_methods[0];
inline constexpr std::string_view status_classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "error"};
inline constexpr int status_class_count = sizeof status_classes / sizeof status_classes[0];

class ClientStats {
 public:
  // The stats of loop `index`, made on first use; registers the metric
  // families with the metrics endpoint the first time. Any thread.
  static ClientStats& for_loop(int index);

  // One HTTP request that ended: status 0 when it got no response. Loop thread.
  void record(std::string_view method, long status, std::uint64_t duration_ns);
  void set_active(std::int64_t n) { active_.store(n, std::memory_order_relaxed); }

  std::uint64_t requests(int method, int status_class) const {
    return requests_[method][status_class].get();
  }
  const base::LogHistogram& duration() const { return duration_; }
  std::int64_t active() const { return active_.load(std::memory_order_relaxed); }

 private:
  base::SingleWriterCounter requests_[method_count][status_class_count];
  base::LogHistogram duration_;
  std::atomic<std::int64_t> active_{0};
};

int method_index(std::string_view method);
int status_class_index(long status);

}  // namespace stallwatch::curl_adapter
