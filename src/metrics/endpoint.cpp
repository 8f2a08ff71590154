#include "metrics/endpoint.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <prometheus/exposer.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <optional>
#include <system_error>
#include <string>
#include <vector>

#include "base/text.hpp"
#include "config/address.hpp"
#include "emit/emitter.hpp"
#include "metrics/collectable.hpp"
#include "stallwatch/allow_blocking.hpp"

namespace stallwatch::metrics {
namespace {

// The endpoint's log lines: process-wide, in the process's format.
void log_started(const std::string& url) {
  emit::message(emit::process_wide, "metrics_endpoint", "metrics at " + url,
                {{"status", std::string("started")}, {"url", url}});
}

void log_not_started(std::string_view address, std::string_view error) {
  emit::message(emit::process_wide, "metrics_endpoint",
                "metrics endpoint not started at " + base::quoted(address) + ": " + std::string(error) +
                    "; the service runs on without /metrics (set STALLWATCH_METRICS_ADDR to another host:port, "
                    "or off)",
                {{"status", std::string("failed")}, {"address", std::string(address)}, {"error", std::string(error)}});
}

void log_stopped_for_service_exposer() {
  emit::message(emit::process_wide, "metrics_endpoint",
                "metrics now served by the service's own exposer; built-in endpoint stopped",
                {{"status", std::string("stopped")}, {"reason", std::string("service exposer")}});
}

// Why the server could not bind `host:port` (an IPv4 address): tries the
// same bind on a scratch socket, as the server does (with SO_REUSEADDR), and
// returns the system's reason. prometheus-cpp only says that binding failed.
std::string bind_failure_reason(const std::string& host, std::uint16_t port, const char* fallback) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return fallback;
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::system_category().message(errno);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string reason = fallback;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    reason = "cannot bind: " + std::system_category().message(errno);
  }
  close(fd);
  return reason;
}

// The IPv4 address to bind for `host`: itself when it is one, else the first
// IPv4 address the name resolves to (the server is then never asked to look
// a name up). Empty, with `error` set, when the name does not resolve.
std::string resolve_ipv4(const std::string& host, std::string& error) {
  in_addr numeric;
  if (inet_pton(AF_INET, host.c_str(), &numeric) == 1) return host;
  // A blocking lookup on purpose: it runs once, as the first loop starts and
  // before any of its fibers, so the blocking-call probes should not flag it.
  const allow_blocking allow;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    error = "cannot resolve " + host + " to an IPv4 address: " + gai_strerror(rc);
    return {};
  }
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr, text, sizeof text);
  freeaddrinfo(found);
  return text;
}

// The process's built-in endpoint. Never destroyed: its civetweb threads run
// until the process ends, and joining them from a static destructor (or in a
// forked child, where they do not exist) could hang the exit. Instead an
// atexit handler detaches the collectable, which waits for a scrape in flight.
struct EndpointState {
  std::mutex mutex;
  bool attempted = false;
  bool deferred = false;
  prometheus::Exposer* exposer = nullptr;
  pid_t owner_pid = 0;
};

EndpointState& endpoint_state() {
  static auto* state = new EndpointState;
  return *state;
}

void detach_at_exit() {
  EndpointState& s = endpoint_state();
  std::lock_guard lock(s.mutex);
  if (s.exposer == nullptr || s.owner_pid != getpid()) return;
  s.exposer->RemoveCollectable(std::weak_ptr<prometheus::Collectable>(shared_collectable()));
}

}  // namespace

EndpointStart start_endpoint(const std::string& address,
                             const std::shared_ptr<prometheus::Collectable>& collectable) {
  EndpointStart result;
  const std::optional<config::HostPort> hp = config::parse_host_port(address, result.error);
  if (!hp) return result;
  const std::string host = resolve_ipv4(hp->host, result.error);
  if (host.empty()) return result;
  try {
    result.exposer = std::make_unique<prometheus::Exposer>(host + ":" + std::to_string(hp->port), 2);
    result.exposer->RegisterCollectable(collectable);
    const std::vector<int> ports = result.exposer->GetListeningPorts();
    result.port = ports.empty() ? 0 : ports.front();
  } catch (const std::exception& e) {
    result.exposer.reset();
    result.error = bind_failure_reason(host, hp->port, e.what());
  }
  return result;
}

std::string ensure_endpoint(const Config& config, SayStarted say) {
  if (config.metrics_addr == "off") return {};
  EndpointState& s = endpoint_state();
  std::lock_guard lock(s.mutex);
  if (s.attempted || s.deferred) return {};
  s.attempted = true;

  EndpointStart start = start_endpoint(config.metrics_addr, shared_collectable());
  if (!start.exposer) {
    log_not_started(config.metrics_addr, start.error);
    return {};
  }
  s.exposer = start.exposer.release();
  s.owner_pid = getpid();
  std::atexit(detach_at_exit);
  std::string ignored;
  const std::string host = config::parse_host_port(config.metrics_addr, ignored)->host;
  std::string url = "http://" + host + ":" + std::to_string(start.port) + "/metrics";
  if (say == SayStarted::yes) log_started(url);
  return url;
}

void defer_to_service_exposer() {
  EndpointState& s = endpoint_state();
  std::lock_guard lock(s.mutex);
  s.deferred = true;
  if (s.exposer == nullptr || s.owner_pid != getpid()) return;
  // Not at exit and not on a civetweb thread, so joining its workers is safe.
  delete s.exposer;
  s.exposer = nullptr;
  log_stopped_for_service_exposer();
}

}  // namespace stallwatch::metrics
