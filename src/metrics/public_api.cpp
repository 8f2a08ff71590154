// The public face of the metrics part: include/stallwatch/metrics.hpp.
#include "stallwatch/metrics.hpp"

#include <prometheus/exposer.h>

#include "metrics/collectable.hpp"
#include "metrics/endpoint.hpp"

namespace stallwatch {
inline namespace v1 {

std::shared_ptr<prometheus::Collectable> metrics_collectable() { return metrics::shared_collectable(); }

void register_metrics(prometheus::Exposer& exposer, const std::string& uri) {
  metrics::defer_to_service_exposer();
  exposer.RegisterCollectable(metrics::shared_collectable(), uri);
}

}  // namespace v1
}  // namespace stallwatch
