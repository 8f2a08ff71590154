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
#include <system_error>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "metrics/collectable.hpp"
#include "stallwatch/allow_blocking.hpp"
#include "watchdog/report.hpp"

namespace stallwatch::metrics {
namespace {

// Quotes a user-supplied value for a text log line: printable ASCII as is,
// quotes, backslashes and everything else escaped.
std::string quoted(std::string_view value) {
  std::string out = "\"";
  for (const unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// The endpoint's log lines, in the format the log is configured for.
void log_started(const std::string& url) {
  if (core::current_log_format() == log_format::json) {
    std::string line = "{\"event\":\"metrics_endpoint\",\"status\":\"started\",\"url\":";
    watchdog::append_json_string(line, url);
    core::log_line(line + "}");
  } else {
    core::log_line("stallwatch: metrics at " + url);
  }
}

void log_not_started(std::string_view address, std::string_view error) {
  if (core::current_log_format() == log_format::json) {
    std::string line = "{\"event\":\"metrics_endpoint\",\"status\":\"failed\",\"address\":";
    watchdog::append_json_string(line, address);
    line += ",\"error\":";
    watchdog::append_json_string(line, error);
    core::log_line(line + "}");
  } else {
    core::log_line("stallwatch: metrics endpoint not started at " + quoted(address) + ": " + std::string(error) +
                   "; the service runs on without /metrics (set STALLWATCH_METRICS_ADDR to another "
                   "host:port, or off)");
  }
}

void log_stopped_for_service_exposer() {
  if (core::current_log_format() == log_format::json) {
    core::log_line("{\"event\":\"metrics_endpoint\",\"status\":\"stopped\",\"reason\":\"service exposer\"}");
  } else {
    core::log_line("stallwatch: metrics now served by the service's own exposer; built-in endpoint stopped");
  }
}

struct HostPort {
  std::string_view host;
  std::string_view port;
};

HostPort split_host_port(std::string_view address) {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos) return {address, {}};
  return {address.substr(0, colon), address.substr(colon + 1)};
}

// Why the server could not bind `host:port` (an IPv4 address): tries the
// same bind on a scratch socket, as the server does (with SO_REUSEADDR), and
// returns the system's reason. prometheus-cpp only says that binding failed.
std::string bind_failure_reason(const std::string& host, std::string_view port, const char* fallback) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoul(std::string(port))));
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

std::string address_error(std::string_view address) {
  const HostPort hp = split_host_port(address);
  if (hp.port.data() == nullptr) return "expected host:port (or off)";
  if (hp.host.empty()) return "the host is missing: expected host:port, e.g. 127.0.0.1:9464";
  if (hp.host.front() == '[') {
    return "IPv6 addresses are not supported by the HTTP server (civetweb) this build uses; "
           "use an IPv4 address";
  }
  const bool host_name_chars = hp.host.find_first_not_of(
                                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") ==
                               std::string_view::npos;
  if (!host_name_chars) {
    return "the host must be an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface) or a host name";
  }
  if (hp.port.empty() || hp.port.size() > 5 ||
      hp.port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(hp.port)) > 65535) {
    return "the port must be a number from 0 to 65535 (0: any free port)";
  }
  return {};
}

EndpointStart start_endpoint(const std::string& address,
                             const std::shared_ptr<prometheus::Collectable>& collectable) {
  EndpointStart result;
  result.error = address_error(address);
  if (!result.error.empty()) return result;

  const HostPort hp = split_host_port(address);
  const std::string host = resolve_ipv4(std::string(hp.host), result.error);
  if (host.empty()) return result;
  try {
    result.exposer = std::make_unique<prometheus::Exposer>(host + ":" + std::string(hp.port), 2);
    result.exposer->RegisterCollectable(collectable);
    const std::vector<int> ports = result.exposer->GetListeningPorts();
    result.port = ports.empty() ? 0 : ports.front();
  } catch (const std::exception& e) {
    result.exposer.reset();
    result.error = bind_failure_reason(host, hp.port, e.what());
  }
  return result;
}

void ensure_endpoint(const Config& config) {
  if (config.metrics_addr == "off") return;
  EndpointState& s = endpoint_state();
  std::lock_guard lock(s.mutex);
  if (s.attempted || s.deferred) return;
  s.attempted = true;

  EndpointStart start = start_endpoint(config.metrics_addr, shared_collectable());
  if (!start.exposer) {
    log_not_started(config.metrics_addr, start.error);
    return;
  }
  s.exposer = start.exposer.release();
  s.owner_pid = getpid();
  std::atexit(detach_at_exit);
  const std::string host(split_host_port(config.metrics_addr).host);
  log_started("http://" + host + ":" + std::to_string(start.port) + "/metrics");
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
