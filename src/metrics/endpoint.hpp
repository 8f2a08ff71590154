// The scheduler's entry point into metrics: start the /metrics endpoint once
// per process, as the first loop's config says.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "stallwatch/config.hpp"

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace stallwatch::metrics {

// Starts prometheus-cpp's Exposer at config.metrics_addr unless it is "off"
// or already started. A bad address or a port in use is logged; never throws.
// Any thread.
void ensure_endpoint(const Config& config);

// Called when the service registers stallwatch's collectable with its own
// exposer: stops the built-in endpoint if it runs, and keeps ensure_endpoint
// from starting one. Any thread except a scrape.
void defer_to_service_exposer();

// Checks a STALLWATCH_METRICS_ADDR value other than "off": an IPv4 address or
// a host name, a colon, a port 0–65535 (0: any free port). IPv6 is refused:
// the HTTP server is built without it. Returns what is wrong, or an empty
// string when it is fine. Pure; any thread.
std::string address_error(std::string_view address);

// One attempt at an exposer serving `collectable` at /metrics.
struct EndpointStart {
  std::unique_ptr<prometheus::Exposer> exposer;  // null on failure
  std::string error;                             // why, when exposer is null
  int port = 0;                                  // the bound port on success
};

// Validates the address, resolves a host name to its first IPv4 address
// (a blocking lookup, permitted for the probes), then starts an exposer.
// Never throws. Any thread.
EndpointStart start_endpoint(const std::string& address,
                             const std::shared_ptr<prometheus::Collectable>& collectable);

}  // namespace stallwatch::metrics
