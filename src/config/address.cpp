#include "config/address.hpp"

#include <charconv>

namespace stallwatch::config {
namespace {

bool is_host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

}  // namespace

std::optional<HostPort> parse_host_port(std::string_view text, std::string& why) {
  if (text.find("://") != std::string_view::npos) {
    // "http://host:port" would otherwise be read as an IPv6 address.
    why = "a URL scheme (http://) is not accepted: give host:port alone, such as 127.0.0.1:9464";
    return std::nullopt;
  }
  if (!text.empty() && text.front() == '[') {
    why = "IPv6 addresses are not served: the HTTP server of this build (civetweb) has no IPv6; use an IPv4 "
          "address such as 127.0.0.1";
    return std::nullopt;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    why = "the port is missing";
    return std::nullopt;
  }
  const std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.empty()) {
    why = "the host is missing";
    return std::nullopt;
  }
  for (const char c : host) {
    if (c == ':') {
      why = "IPv6 addresses are not served (and need brackets); use an IPv4 address such as 127.0.0.1";
      return std::nullopt;
    }
    if (!is_host_name_char(c)) {
      why = "the host must be an IPv4 address or a host name (letters, digits, '-', '.', '_')";
      return std::nullopt;
    }
  }
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || port.front() < '0' || port.front() > '9' || error != std::errc() ||
      end != port.data() + port.size() || value > 65535) {
    why = "the port must be a number from 0 to 65535";
    return std::nullopt;
  }
  return HostPort{std::string(host), static_cast<std::uint16_t>(value)};
}

}  // namespace stallwatch::config
