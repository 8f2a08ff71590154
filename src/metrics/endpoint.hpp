// The top layer's entry point into metrics: start the /metrics endpoint once
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

// Whether ensure_endpoint logs a started endpoint itself, or its caller's
// own line says so (the watch's one line at start). A failure is logged alike.
enum class SayStarted { yes, by_caller };

// Starts prometheus-cpp's Exposer at config.metrics_addr unless it is "off"
// or already started. A bad address or a port in use is logged; never throws.
// Returns the URL this call started serving at (the bound port, for port 0),
// empty when it started nothing. Any thread.
std::string ensure_endpoint(const Config& config, SayStarted say = SayStarted::yes);

// Called when the service registers stallwatch's collectable with its own
// exposer: stops the built-in endpoint if it runs, and keeps ensure_endpoint
// from starting one. Any thread except a scrape.
void defer_to_service_exposer();

// One attempt at an exposer serving `collectable` at /metrics.
struct EndpointStart {
  std::unique_ptr<prometheus::Exposer> exposer;  // null on failure
  std::string error;                             // why, when exposer is null
  int port = 0;                                  // the bound port on success
};

// Parses the address (config/address.hpp), resolves a host name to its first IPv4 address
// (a blocking lookup, permitted for the probes), then starts an exposer.
// Never throws. Any thread.
EndpointStart start_endpoint(const std::string& address,
                             const std::shared_ptr<prometheus::Collectable>& collectable);

}  // namespace stallwatch::metrics
