// The Prometheus adapter: turns the core's plain stats into prometheus-cpp
// metric families at scrape time (STYLE.md rule 10: the exporter stays out of
// the core).
//
// Nothing here runs on the hot path. Collect() runs on whichever thread
// scrapes (a civetweb worker of the Exposer, or the service's own exposer
// when it registered the collectable itself), reads every LoopRecord with
// relaxed loads, the blocking-call counts and the offload pool's snapshot,
// and builds the families listed in DESIGN.md.
//
// Every counter only goes up, across loops that end and reuse an index, and
// in each scrape a histogram's _count equals its counter:
// stallwatch_slices_total and stallwatch_slice_duration_seconds_count (the
// slices begun), sum by loop of stallwatch_stalls_total and
// stallwatch_stall_duration_seconds_count (the stalls begun). A slice or
// stall still running is counted in the +Inf bucket alone until it ends.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "base/log_histogram.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch::metrics {

class StatsCollectable final : public prometheus::Collectable {
 public:
  // Reads every source and returns the families; families without samples
  // are left out. Any thread; holds the loop registry lock only while it
  // copies each loop's numbers.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // The slice histogram's finite cumulative buckets as this collectable last
  // published them, by loop index (see publish_no_lower in the .cpp).
  mutable std::mutex published_mutex_;
  mutable std::vector<std::array<std::uint64_t, base::LogHistogram::finite_buckets>> published_slice_buckets_;
};

// The process-wide collectable, shared by the built-in endpoint and by
// services that register it with their own exposer. Created on first use and
// deliberately never destroyed (see the .cpp). Any thread.
const std::shared_ptr<StatsCollectable>& shared_collectable();

// A part above metrics/ (the HTTP and PostgreSQL clients) that has families
// of its own: every scrape calls each source, on the scraping thread, to
// append them. Adding a source twice adds it once; none is removed. Any thread.
// Exported, with to_prometheus_histogram and the builders below, for those
// clients' own libraries (libstallwatch-curl, libstallwatch-pg); internal.
using FamilySource = void (*)(std::vector<prometheus::MetricFamily>& out);
STALLWATCH_EXPORT void add_family_source(FamilySource source);

// Converts non-cumulative log-histogram buckets (base::LogHistogram layout: finite
// buckets 10 µs·2^i, then +Inf) into a Prometheus histogram: cumulative
// buckets with upper bounds in seconds, the +Inf bucket last, _count equal to
// the +Inf bucket and _sum in seconds. Pure; any thread.
STALLWATCH_EXPORT prometheus::ClientMetric::Histogram to_prometheus_histogram(
    const std::uint64_t (&counts)[base::LogHistogram::bucket_count], std::uint64_t sum_ns);
// The same, read from a live histogram with relaxed loads (a record in
// progress may show in a bucket and not yet in _sum). Any thread.
STALLWATCH_EXPORT prometheus::ClientMetric::Histogram to_prometheus_histogram(const base::LogHistogram& histogram);

// Builders for a source's families: an empty family, and one sample with its
// labels appended to it. Pure; any thread.
STALLWATCH_EXPORT prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type);
STALLWATCH_EXPORT void add_counter(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
                 std::uint64_t value);
STALLWATCH_EXPORT void add_gauge(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value);
STALLWATCH_EXPORT void add_histogram(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels,
                   prometheus::ClientMetric::Histogram histogram);

}  // namespace stallwatch::metrics
