// stallwatch/metrics.hpp — serve stallwatch's metrics from the service's own
// Prometheus exposer instead of stallwatch's built-in endpoint.
//
// By default the first loop starts a /metrics endpoint at
// STALLWATCH_METRICS_ADDR (127.0.0.1:9464; "off" disables it). A service that
// already runs a prometheus-cpp Exposer for its own Registry can serve
// stallwatch's metrics next to its own instead, on the same port:
//
//   prometheus::Exposer exposer{"0.0.0.0:8080"};
//   auto registry = std::make_shared<prometheus::Registry>();
//   exposer.RegisterCollectable(registry);        // the service's own metrics
//   stallwatch::register_metrics(exposer);        // stallwatch_* next to them
//   return stallwatch::run([] { serve(); });
//
// The metric names, types and labels are listed in docs/METRICS.md. Every
// value is read from plain per-loop stats when the exposer scrapes; nothing
// here runs on a loop's hot path.
//
// Threads: both functions may be called from any thread, before or after
// loops start, but not from inside a scrape. Collect() on the returned
// collectable may be called from any thread at any time (the exposer's
// worker threads call it); it takes a short internal lock.
#pragma once

#include <memory>
#include <string>

#include "stallwatch/export.hpp"

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace stallwatch {
inline namespace v1 {

// The collectable that reads every loop's stats at scrape time. The same
// process-wide object on every call; it lives until the process ends. Use it
// with any prometheus-cpp exposer (RegisterCollectable takes a weak_ptr; the
// object outlives it). Does not stop the built-in endpoint by itself.
STALLWATCH_EXPORT std::shared_ptr<prometheus::Collectable> metrics_collectable();

// Registers metrics_collectable() with `exposer` at `uri`, and makes the
// service's exposer the only one: the built-in endpoint is stopped if it
// runs (waiting for its server threads to finish), and no loop starts it
// afterwards. Call it before run() to never open the built-in port at all. Nothing needs undoing before
// `exposer` is destroyed: it holds only a weak reference.
STALLWATCH_EXPORT void register_metrics(prometheus::Exposer& exposer, const std::string& uri = "/metrics");

}  // namespace v1
}  // namespace stallwatch
