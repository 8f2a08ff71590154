// The client's per-loop stats (stats.hpp) and their Prometheus families,
// added to stallwatch's collectable as a source (metrics::add_family_source).
#include "pg/stats.hpp"

#include <deque>
#include <mutex>
#include <string>
#include <utility>

#include "metrics/collectable.hpp"
#include "stallwatch/loop.hpp"

namespace stallwatch::inline v1::pg::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::deque<std::pair<int, LoopPgStats>> loops;  // deque: stable addresses
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: read by scrapes until exit
  return *r;
}

using prometheus::MetricFamily;
using prometheus::MetricType;

void append_pg_families(std::vector<MetricFamily>& out) {
  MetricFamily queries = metrics::family("stallwatch_pg_queries_total",
                                         "PostgreSQL queries answered on the loop (a result, an error, or given "
                                         "up at their deadline).",
                                         MetricType::Counter);
  MetricFamily duration = metrics::family("stallwatch_pg_query_duration_seconds",
                                          "Time from sending a query to its answer.", MetricType::Histogram);
  MetricFamily size = metrics::family("stallwatch_pg_pool_connections",
                                      "Connections open in the loop's pg::Pools.", MetricType::Gauge);
  MetricFamily in_use = metrics::family("stallwatch_pg_pool_connections_in_use",
                                        "Connections of the loop's pg::Pools with a query in flight.",
                                        MetricType::Gauge);
  MetricFamily waits = metrics::family("stallwatch_pg_pool_waits_total",
                                       "Pool queries that found every connection busy and waited for one.",
                                       MetricType::Counter);
  for_each_loop_pg_stats([&](int index, const LoopPgStats& s) {
    const std::vector<prometheus::ClientMetric::Label> loop{{"loop", std::to_string(index)}};
    metrics::add_counter(queries, loop, s.queries.get());
    metrics::add_histogram(duration, loop, metrics::to_prometheus_histogram(s.query_duration));
    metrics::add_gauge(size, loop, static_cast<double>(s.pool_size.load(std::memory_order_relaxed)));
    metrics::add_gauge(in_use, loop, static_cast<double>(s.pool_in_use.load(std::memory_order_relaxed)));
    metrics::add_counter(waits, loop, s.pool_waits.get());
  });
  if (queries.metric.empty()) return;
  for (MetricFamily* f : {&queries, &duration, &size, &in_use, &waits}) out.push_back(std::move(*f));
}

}  // namespace

LoopPgStats& this_loop_pg_stats() {
  const int index = this_loop_index();
  thread_local int cached_index = -2;
  thread_local LoopPgStats* cached = nullptr;
  if (index == cached_index) return *cached;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  LoopPgStats* found = nullptr;
  for (auto& [i, stats] : r.loops) {
    if (i == index) found = &stats;
  }
  if (found == nullptr) {
    r.loops.emplace_back(std::piecewise_construct, std::forward_as_tuple(index), std::forward_as_tuple());
    found = &r.loops.back().second;
    metrics::add_family_source(&append_pg_families);
  }
  cached_index = index;
  cached = found;
  return *found;
}

void for_each_loop_pg_stats(const std::function<void(int, const LoopPgStats&)>& fn) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const auto& [i, stats] : r.loops) fn(i, stats);
}

}  // namespace stallwatch::inline v1::pg::detail
