// The Prometheus adapter: turns the core's plain stats into prometheus-cpp
// metric families at scrape time (STYLE.md rule 10: the exporter stays out of
// the core).
//
// Nothing here runs on the hot path. Collect() runs on whichever thread
// scrapes (a civetweb worker of the Exposer, or the service's own exposer
// when it registered the collectable itself), reads every LoopRecord with
// relaxed loads, the blocking-call counts and the offload pool's snapshot,
// and builds the families listed in DESIGN.md.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "base/log_histogram.hpp"

namespace stallwatch::metrics {

class StatsCollectable final : public prometheus::Collectable {
 public:
  // Reads every source and returns the families; families without samples
  // are left out. Any thread; holds the loop registry lock only while it
  // copies each loop's numbers.
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// The process-wide collectable, shared by the built-in endpoint and by
// services that register it with their own exposer. Created on first use and
// deliberately never destroyed (see the .cpp). Any thread.
const std::shared_ptr<StatsCollectable>& shared_collectable();

// Converts non-cumulative log-histogram buckets (base::LogHistogram layout: finite
// buckets 10 µs·2^i, then +Inf) into a Prometheus histogram: cumulative
// buckets with upper bounds in seconds, the +Inf bucket last, _count equal to
// the +Inf bucket and _sum in seconds. Pure; any thread.
prometheus::ClientMetric::Histogram to_prometheus_histogram(
    const std::uint64_t (&counts)[base::LogHistogram::bucket_count], std::uint64_t sum_ns);

}  // namespace stallwatch::metrics
