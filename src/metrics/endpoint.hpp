// The scheduler's entry point into metrics: start the /metrics endpoint once
// per process, as the first loop's config says.
#pragma once

#include "stallwatch/config.hpp"

namespace stallwatch::metrics {

// Starts prometheus-cpp's Exposer at config.metrics_addr unless it is "off"
// or already started. A bad address or a port in use is logged; never throws.
// Any thread.
void ensure_endpoint(const Config& config);

}  // namespace stallwatch::metrics
