#include "metrics/collectable.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "blocking/blocking_calls.hpp"
#include "base/coarse_clock.hpp"
#include "core/loop_record.hpp"
#include "metrics/kernel_tcp.hpp"
#include "pool/pool_stats.hpp"
#include "stallwatch/net.hpp"

namespace stallwatch::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Set by an atexit handler: from then on Collect() returns nothing, so a
// scrape that arrives while static destructors run reads no torn-down state.
std::atomic<bool> process_exiting{false};

// The sources of add_family_source, leaked like the collectable itself.
class FamilySources {
 public:
  void add(FamilySource source) {
    std::lock_guard lock(mutex_);
    if (std::find(sources_.begin(), sources_.end(), source) == sources_.end()) sources_.push_back(source);
  }
  std::vector<FamilySource> copy() const {
    std::lock_guard lock(mutex_);
    return sources_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<FamilySource> sources_;
};

FamilySources& family_sources() {
  static auto* sources = new FamilySources;
  return *sources;
}

constexpr std::string_view kind_label(int kind) {
  switch (static_cast<core::StallKind>(kind)) {
    case core::StallKind::cpu: return "cpu";
    case core::StallKind::blocked: return "blocked";
    case core::StallKind::preempted: return "preempted";
  }
  return "unknown";
}

ClientMetric labelled(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

}  // namespace

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_counter(MetricFamily& f, std::vector<ClientMetric::Label> labels, std::uint64_t value) {
  ClientMetric m = labelled(std::move(labels));
  m.counter.value = static_cast<double>(value);
  f.metric.push_back(std::move(m));
}

void add_gauge(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m = labelled(std::move(labels));
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void add_histogram(MetricFamily& f, std::vector<ClientMetric::Label> labels,
                   ClientMetric::Histogram histogram) {
  ClientMetric m = labelled(std::move(labels));
  m.histogram = std::move(histogram);
  f.metric.push_back(std::move(m));
}

namespace {

// Age of the running slice; 0 while the loop waits for work or has ended.
// Reads the real clock rather than the coarse one: the coarse clock only
// advances while a watchdog or a loop publishes it, and this gauge must keep
// growing while a loop is stuck with the watchdog off.
double current_slice_seconds_of(const core::LoopRecord& record, std::uint64_t now_ns) {
  if (!record.active.load(std::memory_order_relaxed)) return 0.0;
  if (record.slice.idle.load(std::memory_order_relaxed)) return 0.0;
  const std::uint64_t start = record.slice.start_ns.load(std::memory_order_relaxed);
  if (start == 0 || start >= now_ns) return 0.0;
  return static_cast<double>(now_ns - start) / 1e9;
}

// Plain copies of one loop's stats, taken under the registry lock; the
// families (strings, vectors) are built after it is released.
struct HistogramSnapshot {
  std::uint64_t counts[base::LogHistogram::bucket_count];
  std::uint64_t sum_ns = 0;
  HistogramSnapshot() = default;
  explicit HistogramSnapshot(const base::LogHistogram& h) : sum_ns(h.sum_ns()) {
    for (int i = 0; i < base::LogHistogram::bucket_count; ++i) counts[i] = h.count(i);
  }
  std::uint64_t count() const {
    std::uint64_t total = 0;
    for (std::uint64_t c : counts) total += c;
    return total;
  }
};

struct LoopSnapshot {
  int index;
  bool active;
  std::uint64_t threshold_ns;
  double current_slice_seconds;
  HistogramSnapshot slice_duration;  // its count is stallwatch_slices_total
  HistogramSnapshot loop_lag;
  HistogramSnapshot stall_duration;  // its count is stallwatch_stalls_total summed over kinds
  std::uint64_t stalls[core::stall_kind_count];
  std::uint64_t reports;
  std::uint64_t reports_suppressed;
  std::uint64_t fibers_spawned;
  std::int64_t fibers_alive;
  std::int64_t ready_fibers;

  LoopSnapshot(const core::LoopRecord& r, std::uint64_t now_ns)
      : index(r.index),
        active(r.active.load(std::memory_order_relaxed)),
        threshold_ns(r.threshold_ns.load(std::memory_order_relaxed)),
        current_slice_seconds(current_slice_seconds_of(r, now_ns)),
        loop_lag(r.stats.loop_lag),
        stalls{},
        reports(r.stalls.reports.get()),
        reports_suppressed(r.stalls.reports_suppressed.get()),
        fibers_spawned(r.stats.fibers_spawned.get()),
        fibers_alive(r.stats.fibers_alive.load(std::memory_order_relaxed)),
        ready_fibers(r.stats.ready_fibers.load(std::memory_order_relaxed)) {
    slice_duration.sum_ns = r.stats.slice_duration.sum_ns();
    core::slice_duration_buckets(r, slice_duration.counts);
    stall_duration.sum_ns = r.stalls.stall_duration.sum_ns();
    core::stall_duration_buckets(r, stall_duration.counts, stalls);
  }
};

// Cumulative bucket counts of a histogram, as last published.
using Cumulative = std::array<std::uint64_t, base::LogHistogram::finite_buckets>;

// Raises h's finite cumulative buckets to at least `last`, then stores them
// in `last`. The slice histogram's first bucket is an estimate (slices that
// ended unrecorded) made from fields a running loop changes one at a time;
// read between two of those changes it may come out one lower than in the
// scrape before. Holding each finite bucket at its last published value
// keeps it a counter that only goes up, as Prometheus requires. The +Inf
// bucket (_count, equal to stallwatch_slices_total) is exact and is not
// held: no bucket is published above it.
void publish_no_lower(HistogramSnapshot& h, Cumulative& last) {
  const std::uint64_t total = h.count();
  std::uint64_t previous_cumulative = 0;
  std::uint64_t cumulative = 0;
  for (int i = 0; i < base::LogHistogram::finite_buckets; ++i) {
    cumulative += h.counts[i];
    const std::uint64_t published = std::min(std::max(cumulative, last[i]), total);
    last[i] = published;
    h.counts[i] = published - previous_cumulative;
    previous_cumulative = published;
  }
  h.counts[base::LogHistogram::finite_buckets] = total - previous_cumulative;
}

ClientMetric::Histogram to_histogram(const HistogramSnapshot& h) {
  return to_prometheus_histogram(h.counts, h.sum_ns);
}

// Every per-loop family, filled in one pass over the records.
struct LoopFamilies {
  MetricFamily slices = family("stallwatch_slices_total", "Scheduling slices run.", MetricType::Counter);
  MetricFamily slice_duration = family("stallwatch_slice_duration_seconds",
                                       "Length of scheduling slices.", MetricType::Histogram);
  MetricFamily current_slice = family("stallwatch_current_slice_seconds",
                                      "Age of the slice running now; 0 when the loop is idle.",
                                      MetricType::Gauge);
  MetricFamily stalls = family("stallwatch_stalls_total",
                               "Slices that ran past the threshold, by kind (cpu, blocked, preempted).",
                               MetricType::Counter);
  MetricFamily stall_duration = family("stallwatch_stall_duration_seconds", "Length of stalls.",
                                       MetricType::Histogram);
  MetricFamily reports = family("stallwatch_stall_reports_total", "Stall reports written to the log.",
                                MetricType::Counter);
  MetricFamily suppressed = family("stallwatch_stall_reports_suppressed_total",
                                   "Stall reports held back by the rate limit.", MetricType::Counter);
  MetricFamily loop_lag = family("stallwatch_loop_lag_seconds",
                                 "Delay from a fiber becoming ready (timer due, I/O ready) to running.",
                                 MetricType::Histogram);
  MetricFamily fibers = family("stallwatch_fibers", "Fibers alive.", MetricType::Gauge);
  MetricFamily ready_fibers = family("stallwatch_ready_fibers", "Fibers waiting in the ready queue.",
                                     MetricType::Gauge);
  MetricFamily fibers_spawned = family("stallwatch_fibers_spawned_total", "Fibers started.",
                                       MetricType::Counter);

  // The configured threshold: the largest among running loops, else the
  // largest any ended loop ran with. Loops of one process normally share it.
  std::uint64_t threshold_ns = 0;
  bool threshold_from_active = false;

  void add(const LoopSnapshot& r) {
    const std::vector<ClientMetric::Label> loop{{"loop", std::to_string(r.index)}};
    add_counter(slices, loop, r.slice_duration.count());
    add_histogram(slice_duration, loop, to_histogram(r.slice_duration));
    add_gauge(current_slice, loop, r.current_slice_seconds);
    for (int kind = 0; kind < core::stall_kind_count; ++kind) {
      add_counter(stalls, {loop[0], {"kind", std::string(kind_label(kind))}}, r.stalls[kind]);
    }
    add_histogram(stall_duration, loop, to_histogram(r.stall_duration));
    add_counter(reports, loop, r.reports);
    add_counter(suppressed, loop, r.reports_suppressed);
    add_histogram(loop_lag, loop, to_histogram(r.loop_lag));
    add_gauge(fibers, loop, static_cast<double>(r.fibers_alive));
    add_gauge(ready_fibers, loop, static_cast<double>(r.ready_fibers));
    add_counter(fibers_spawned, loop, r.fibers_spawned);

    const bool active = r.active;
    const std::uint64_t t = r.threshold_ns;
    if (active && !threshold_from_active) {
      threshold_ns = t;
      threshold_from_active = true;
    } else if (active == threshold_from_active) {
      threshold_ns = std::max(threshold_ns, t);
    }
  }
};

void append_if_any(std::vector<MetricFamily>& out, MetricFamily&& f) {
  if (!f.metric.empty()) out.push_back(std::move(f));
}

MetricFamily blocking_calls_family() {
  MetricFamily f = family("stallwatch_blocking_calls_total",
                          "Known blocking calls made on a loop thread, by function (capped; the rest "
                          "count as \"other\").",
                          MetricType::Counter);
  blocking::for_each_call_count([&](std::string_view function, std::uint64_t count) {
    add_counter(f, {{"function", std::string(function)}}, count);
  });
  return f;
}

void append_blocking_report_families(std::vector<MetricFamily>& out) {
  const blocking::ReportCounts counts = blocking::report_counts();
  MetricFamily reports = family("stallwatch_blocking_call_reports_total",
                                "Blocking-call sites logged with their stack (probes).", MetricType::Counter);
  add_counter(reports, {}, counts.reported);
  out.push_back(std::move(reports));
  MetricFamily suppressed = family("stallwatch_blocking_call_reports_suppressed_total",
                                   "Blocking-call reports held back by the rate limit (probes).",
                                   MetricType::Counter);
  add_counter(suppressed, {}, counts.suppressed);
  out.push_back(std::move(suppressed));
}

void append_accept_backoffs(std::vector<MetricFamily>& out) {
  MetricFamily backoffs = family("stallwatch_accept_backoffs_total",
                                 "Times a TcpListener::accept backed off because the process was out of "
                                 "descriptors (EMFILE, ENFILE).",
                                 MetricType::Counter);
  add_counter(backoffs, {}, accept_backoffs_total());
  out.push_back(std::move(backoffs));
}

// The accept queues of this process's listeners, by address, and the
// kernel's count of connections turned away at any listen queue.
void append_listen_families(std::vector<MetricFamily>& out) {
  const std::vector<ListenQueue> queues = listen_queues();
  if (!queues.empty()) {
    MetricFamily depth = family("stallwatch_listen_queue_depth",
                                "Connections completed by the kernel and waiting for accept, per listening address "
                                "of this process.",
                                MetricType::Gauge);
    MetricFamily limit = family("stallwatch_listen_queue_limit",
                                "Length of the accept queue, per listening address (the backlog capped by "
                                "net.core.somaxconn).",
                                MetricType::Gauge);
    for (const ListenQueue& q : queues) {
      add_gauge(depth, {{"address", q.address}}, static_cast<double>(q.queued));
      add_gauge(limit, {{"address", q.address}}, static_cast<double>(q.limit));
    }
    out.push_back(std::move(depth));
    out.push_back(std::move(limit));
  }
  if (const std::optional<ListenDropCounts> kernel = read_listen_drops()) {
    MetricFamily overflows = family("stallwatch_tcp_listen_overflows_total",
                                    "Connections the kernel turned away because an accept queue was full "
                                    "(TcpExt ListenOverflows, whole network namespace).",
                                    MetricType::Counter);
    add_counter(overflows, {}, kernel->overflows);
    out.push_back(std::move(overflows));
    MetricFamily drops = family("stallwatch_tcp_listen_drops_total",
                                "Connections dropped at a listening socket for any reason, overflows included "
                                "(TcpExt ListenDrops, whole network namespace).",
                                MetricType::Counter);
    add_counter(drops, {}, kernel->drops);
    out.push_back(std::move(drops));
  }
}

void append_pool_families(std::vector<MetricFamily>& out) {
  const pool::PoolStatsView pool = pool::pool_stats();
  MetricFamily pending = family("stallwatch_in_thread_pending",
                                "in_thread calls queued or running on the offload pool.", MetricType::Gauge);
  add_gauge(pending, {}, static_cast<double>(pool.pending));
  out.push_back(std::move(pending));

  MetricFamily duration = family("stallwatch_in_thread_duration_seconds",
                                 "Time in_thread calls took on the offload pool.", MetricType::Histogram);
  add_histogram(duration, {}, to_prometheus_histogram(pool.duration_buckets, pool.duration_sum_ns));
  out.push_back(std::move(duration));
}

}  // namespace

prometheus::ClientMetric::Histogram to_prometheus_histogram(
    const std::uint64_t (&counts)[base::LogHistogram::bucket_count], std::uint64_t sum_ns) {
  ClientMetric::Histogram h;
  h.bucket.reserve(base::LogHistogram::bucket_count);
  std::uint64_t cumulative = 0;
  for (int i = 0; i < base::LogHistogram::bucket_count; ++i) {
    cumulative += counts[i];
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < base::LogHistogram::finite_buckets ? base::LogHistogram::upper_bound_seconds(i)
                                                           : std::numeric_limits<double>::infinity();
    h.bucket.push_back(b);
  }
  h.sample_count = cumulative;
  h.sample_sum = static_cast<double>(sum_ns) / 1e9;
  return h;
}

prometheus::ClientMetric::Histogram to_prometheus_histogram(const base::LogHistogram& histogram) {
  std::uint64_t counts[base::LogHistogram::bucket_count];
  for (int i = 0; i < base::LogHistogram::bucket_count; ++i) counts[i] = histogram.count(i);
  return to_prometheus_histogram(counts, histogram.sum_ns());
}

std::vector<prometheus::MetricFamily> StatsCollectable::Collect() const {
  if (process_exiting.load(std::memory_order_acquire)) return {};

  const std::uint64_t now_ns = base::monotonic_ns();
  std::vector<LoopSnapshot> snapshots;
  {
    // Held across the snapshot so that concurrent scrapes publish in turn.
    std::lock_guard lock(published_mutex_);
    core::for_each_loop_record([&](core::LoopRecord& record) { snapshots.emplace_back(record, now_ns); });
    for (LoopSnapshot& snapshot : snapshots) {
      const auto index = static_cast<std::size_t>(snapshot.index);
      if (published_slice_buckets_.size() <= index) published_slice_buckets_.resize(index + 1, Cumulative{});
      publish_no_lower(snapshot.slice_duration, published_slice_buckets_[index]);
    }
  }
  LoopFamilies loops;
  for (const LoopSnapshot& snapshot : snapshots) loops.add(snapshot);

  std::vector<MetricFamily> out;
  if (!snapshots.empty()) {
    MetricFamily threshold = family("stallwatch_threshold_seconds",
                                    "The configured stall threshold.", MetricType::Gauge);
    add_gauge(threshold, {}, static_cast<double>(loops.threshold_ns) / 1e9);
    out.push_back(std::move(threshold));
  }
  append_if_any(out, std::move(loops.slices));
  append_if_any(out, std::move(loops.slice_duration));
  append_if_any(out, std::move(loops.current_slice));
  append_if_any(out, std::move(loops.stalls));
  append_if_any(out, std::move(loops.stall_duration));
  append_if_any(out, std::move(loops.reports));
  append_if_any(out, std::move(loops.suppressed));
  append_if_any(out, std::move(loops.loop_lag));
  append_if_any(out, std::move(loops.fibers));
  append_if_any(out, std::move(loops.ready_fibers));
  append_if_any(out, std::move(loops.fibers_spawned));
  append_if_any(out, blocking_calls_family());
  append_blocking_report_families(out);
  append_accept_backoffs(out);
  append_listen_families(out);
  append_pool_families(out);
  for (FamilySource source : family_sources().copy()) source(out);
  return out;
}

void add_family_source(FamilySource source) { family_sources().add(source); }

const std::shared_ptr<StatsCollectable>& shared_collectable() {
  // Leaked on purpose: civetweb workers and a service's own exposer may call
  // Collect() while static destructors run at exit, and an object that is
  // never destroyed cannot be used after its destruction.
  static const auto* instance = [] {
    // Touch every source first, so any function-local statics behind them
    // are constructed before the atexit handler is registered and hence are
    // destroyed only after it has run.
    core::for_each_loop_record([](core::LoopRecord&) {});
    blocking::for_each_call_count([](std::string_view, std::uint64_t) {});
    (void)pool::pool_stats();
    std::atexit([] { process_exiting.store(true, std::memory_order_release); });
    return new std::shared_ptr<StatsCollectable>(std::make_shared<StatsCollectable>());
  }();
  return *instance;
}

}  // namespace stallwatch::metrics
