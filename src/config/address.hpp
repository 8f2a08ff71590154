// The metrics address grammar, owned here so that what validation accepts is
// exactly what the endpoint serves: "host:port", host an IPv4 address or a
// host name, port 0–65535 (0: any free port). IPv6 is refused here, at
// validation, because the HTTP server Debian's prometheus-cpp is built with
// (civetweb) has no IPv6: an address is never accepted and then dropped.
// Pure; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stallwatch::config {

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

// What STALLWATCH_METRICS_ADDR and Options::metrics_addr accept, for errors.
inline constexpr std::string_view metrics_addr_accepted =
    "host:port (host an IPv4 address or a host name, port 0 to 65535, 0 for any free port), or off";

// Parses "host:port"; nullopt with `why` set to what is wrong otherwise.
std::optional<HostPort> parse_host_port(std::string_view text, std::string& why);

}  // namespace stallwatch::config
