// resolve_config: Options merged with the STALLWATCH_* environment, validated.
//
// For each setting the environment wins over a set Options field, which wins
// over the default in DESIGN.md. Every value is checked in full: "50ms" is not
// 50, an empty variable is not "unset", and nothing falls back silently.
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/config.hpp"

namespace stallwatch {
inline namespace v1 {
namespace {

constexpr long long max_threshold_ms = 600000;
constexpr long long max_reports_per_minute = 100000;
constexpr long long min_stack_kb = 16;
constexpr long long max_stack_kb = 65536;

// Values are echoed in errors; keep them to one printable, bounded line.
std::string printable(std::string_view value) {
  constexpr std::size_t max_shown = 80;
  std::string out;
  for (std::size_t i = 0; i < value.size() && i < max_shown; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (value.size() > max_shown) out += "...";
  return out;
}

[[noreturn]] void reject_variable(std::string_view variable, std::string_view value, std::string_view accepted) {
  throw config_error("stallwatch: " + std::string(variable) + "=\"" + printable(value) + "\" is not valid: expected " +
                     std::string(accepted));
}

[[noreturn]] void reject_field(std::string_view field, std::string_view shown_value, std::string_view accepted) {
  throw config_error("stallwatch: Options::" + std::string(field) + " = " + std::string(shown_value) +
                     " is not valid: expected " + std::string(accepted));
}

// The variable's value when it is set (even to ""), else nullopt.
std::optional<std::string_view> variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string_view(value);
}

// A decimal integer with nothing before or after it: no sign, no spaces, no unit.
std::optional<long long> parse_decimal(std::string_view text) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  long long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string integer_range(long long lo, long long hi) {
  return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
}

// An integer setting: the variable if set, else the field if set, else the default.
long long resolve_integer(const char* name, std::string_view field, std::optional<long long> field_value,
                          std::string_view field_unit, long long lo, long long hi, long long fallback) {
  if (const auto text = variable(name)) {
    const auto value = parse_decimal(*text);
    if (!value || *value < lo || *value > hi) reject_variable(name, *text, integer_range(lo, hi));
    return *value;
  }
  if (field_value) {
    if (*field_value < lo || *field_value > hi) {
      reject_field(field, std::to_string(*field_value) + std::string(field_unit),
                   integer_range(lo, hi) + std::string(field_unit));
    }
    return *field_value;
  }
  return fallback;
}

// A two-word setting (on/off, 0/1): true for `yes`, false for `no`.
bool resolve_switch(const char* name, std::optional<bool> field_value, std::string_view yes, std::string_view no,
                    bool fallback) {
  if (const auto text = variable(name)) {
    if (*text == yes) return true;
    if (*text == no) return false;
    reject_variable(name, *text, std::string(yes) + " or " + std::string(no));
  }
  return field_value.value_or(fallback);
}

log_format resolve_log_format(std::optional<log_format> field_value) {
  constexpr std::string_view accepted = "text or json";
  if (const auto text = variable("STALLWATCH_LOG_FORMAT")) {
    if (*text == "text") return log_format::text;
    if (*text == "json") return log_format::json;
    reject_variable("STALLWATCH_LOG_FORMAT", *text, accepted);
  }
  if (field_value) {
    if (*field_value != log_format::text && *field_value != log_format::json) {
      reject_field("log_format", "log_format(" + std::to_string(static_cast<int>(*field_value)) + ")", accepted);
    }
    return *field_value;
  }
  return log_format::text;
}

bool is_port(std::string_view text) {
  const auto port = parse_decimal(text);
  return port && *port >= 1 && *port <= 65535;
}

bool is_host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

// "host:port" (host a name or IPv4 address), "[ipv6]:port", or "off". Checks
// the form only; whether the address resolves and binds is found out when
// the endpoint starts.
bool is_metrics_addr(std::string_view addr) {
  if (addr == "off") return true;
  if (!addr.empty() && addr.front() == '[') {
    const auto close = addr.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    const auto host = addr.substr(1, close - 1);
    for (char c : host) {
      if (!(c == ':' || c == '.' || c == '%' || is_host_name_char(c))) return false;
    }
    if (host.find(':') == std::string_view::npos) return false;
    return addr.size() > close + 1 && addr[close + 1] == ':' && is_port(addr.substr(close + 2));
  }
  const auto colon = addr.find(':');
  if (colon == 0 || colon == std::string_view::npos || addr.find(':', colon + 1) != std::string_view::npos) return false;
  for (char c : addr.substr(0, colon)) {
    if (!is_host_name_char(c)) return false;
  }
  return is_port(addr.substr(colon + 1));
}

std::string resolve_metrics_addr(const std::optional<std::string>& field_value) {
  constexpr std::string_view accepted = "host:port with a port from 1 to 65535, [ipv6]:port, or off";
  if (const auto text = variable("STALLWATCH_METRICS_ADDR")) {
    if (!is_metrics_addr(*text)) reject_variable("STALLWATCH_METRICS_ADDR", *text, accepted);
    return std::string(*text);
  }
  if (field_value) {
    if (!is_metrics_addr(*field_value)) reject_field("metrics_addr", "\"" + printable(*field_value) + "\"", accepted);
    return *field_value;
  }
  return "127.0.0.1:9464";
}

// "SIGRTMIN+n" / "SIGRTMAX-n" name a real-time signal the same way on every
// libc; a plain number is taken as is.
std::optional<long long> parse_signal(std::string_view text) {
  struct Named {
    std::string_view name;
    int number;
    char offset_sign;
  };
  const Named named[] = {{"SIGRTMIN", SIGRTMIN, '+'}, {"SIGRTMAX", SIGRTMAX, '-'}};
  for (const Named& base : named) {
    if (text.substr(0, base.name.size()) != base.name) continue;
    const auto rest = text.substr(base.name.size());
    if (rest.empty()) return base.number;
    if (rest.front() != base.offset_sign) return std::nullopt;
    const auto offset = parse_decimal(rest.substr(1));
    if (!offset || *offset > SIGRTMAX - SIGRTMIN) return std::nullopt;
    return base.offset_sign == '+' ? base.number + *offset : base.number - *offset;
  }
  return parse_decimal(text);
}

int resolve_capture_signal(std::optional<int> field_value) {
  const long long lo = SIGRTMIN;
  const long long hi = SIGRTMAX;
  const std::string accepted = "a real-time signal number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                               " (SIGRTMIN..SIGRTMAX), or SIGRTMIN+n";
  if (const auto text = variable("STALLWATCH_SIGNAL")) {
    const auto value = parse_signal(*text);
    if (!value || *value < lo || *value > hi) reject_variable("STALLWATCH_SIGNAL", *text, accepted);
    return static_cast<int>(*value);
  }
  if (field_value) {
    if (*field_value < lo || *field_value > hi) reject_field("capture_signal", std::to_string(*field_value), accepted);
    return *field_value;
  }
  return SIGRTMIN + 4;
}

bool is_module_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-' || c == '+';
}

// One STALLWATCH_NOT_APP entry: a module file name, or an absolute source
// path prefix (no blanks, no control characters).
bool is_not_app_entry(std::string_view entry) {
  if (entry.empty()) return false;
  if (entry.front() == '/') {
    for (char c : entry) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == ',') return false;
    }
    return true;
  }
  for (char c : entry) {
    if (!is_module_name_char(c)) return false;
  }
  return true;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "libcurl, /opt/vendor/include/" → its entries; nullopt when one is not
// valid. Blanks around entries are ignored; "" is no entry.
std::optional<std::vector<std::string>> parse_not_app(std::string_view text) {
  std::vector<std::string> entries;
  if (trim_blanks(text).empty()) return entries;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = trim_blanks(text.substr(start, end - start));
    if (!is_not_app_entry(entry)) return std::nullopt;
    entries.emplace_back(entry);
    start = end + 1;
  }
  return entries;
}

std::vector<std::string> resolve_not_app(const std::optional<std::string>& field_value) {
  constexpr std::string_view accepted =
      "a comma-separated list of module file names (letters, digits, . _ - +, e.g. libcurl or libsqlite3.so.0) "
      "and absolute source path prefixes (e.g. /opt/vendor/include/)";
  if (const auto text = variable("STALLWATCH_NOT_APP")) {
    auto entries = parse_not_app(*text);
    if (!entries) reject_variable("STALLWATCH_NOT_APP", *text, accepted);
    return std::move(*entries);
  }
  if (field_value) {
    auto entries = parse_not_app(*field_value);
    if (!entries) reject_field("not_app", "\"" + printable(*field_value) + "\"", accepted);
    return std::move(*entries);
  }
  return {};
}

template <class T>
std::optional<long long> widen(const std::optional<T>& value) {
  if (!value) return std::nullopt;
  return static_cast<long long>(*value);
}

}  // namespace

Config resolve_config(const Options& options) {
  Config config;
  config.watchdog = resolve_switch("STALLWATCH_WATCHDOG", options.watchdog, "on", "off", true);
  std::optional<long long> threshold_ms;
  if (options.threshold) threshold_ms = options.threshold->count();
  config.threshold = std::chrono::milliseconds(
      resolve_integer("STALLWATCH_THRESHOLD_MS", "threshold", threshold_ms, " ms", 1, max_threshold_ms, 50));
  config.reports_per_minute = static_cast<int>(resolve_integer("STALLWATCH_REPORTS_PER_MINUTE", "reports_per_minute",
                                                               widen(options.reports_per_minute), "", 0,
                                                               max_reports_per_minute, 10));
  config.log_format = resolve_log_format(options.log_format);
  config.metrics_addr = resolve_metrics_addr(options.metrics_addr);
  config.strict = resolve_switch("STALLWATCH_STRICT", options.strict, "1", "0", false);
  if (options.stack_kb && *options.stack_kb > static_cast<std::size_t>(max_stack_kb) &&
      !variable("STALLWATCH_STACK_KB")) {
    // Beyond long long's range too, so rejected here rather than narrowed.
    reject_field("stack_kb", std::to_string(*options.stack_kb) + " KiB", integer_range(min_stack_kb, max_stack_kb) + " KiB");
  }
  config.stack_kb = static_cast<std::size_t>(
      resolve_integer("STALLWATCH_STACK_KB", "stack_kb", widen(options.stack_kb), " KiB", min_stack_kb, max_stack_kb, 64));
  config.capture_signal = resolve_capture_signal(options.capture_signal);
  config.not_app = resolve_not_app(options.not_app);
  config.log_sink = options.log_sink;
  return config;
}

}  // namespace v1
}  // namespace stallwatch
