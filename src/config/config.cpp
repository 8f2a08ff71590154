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

#include "base/text.hpp"
#include "config/address.hpp"
#include "config/module_names.hpp"
#include "stallwatch/config.hpp"

namespace stallwatch {
inline namespace v1 {
namespace {

constexpr long long max_threshold_ms = 600000;
constexpr long long max_reports_per_minute = 100000;
constexpr long long min_stack_kb = 16;
constexpr long long max_stack_kb = 65536;

// Values are echoed in errors; keep them to one printable, bounded line.
constexpr std::size_t max_shown = 80;

[[noreturn]] void reject_variable(std::string_view variable, std::string_view value, std::string_view accepted) {
  throw config_error("stallwatch: " + std::string(variable) + "=" + base::quoted(value, max_shown) + " is not valid: expected " +
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

// "host:port" as config/address.hpp parses it, or "off".
std::string resolve_metrics_addr(const std::optional<std::string>& field_value) {
  std::string why;
  const std::string accepted(config::metrics_addr_accepted);
  if (const auto text = variable("STALLWATCH_METRICS_ADDR")) {
    if (*text != "off" && !config::parse_host_port(*text, why)) {
      reject_variable("STALLWATCH_METRICS_ADDR", *text, accepted + " (" + why + ")");
    }
    return std::string(*text);
  }
  if (field_value) {
    if (*field_value != "off" && !config::parse_host_port(*field_value, why)) {
      reject_field("metrics_addr", base::quoted(*field_value, max_shown), accepted + " (" + why + ")");
    }
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

// 0 for auto; `setting` says where an explicit signal came from.
int resolve_capture_signal(std::optional<int> field_value, std::string& setting) {
  const long long lo = SIGRTMIN;
  const long long hi = SIGRTMAX;
  const std::string numbers = "a real-time signal number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                              " (SIGRTMIN..SIGRTMAX), or SIGRTMIN+n";
  if (const auto text = variable("STALLWATCH_SIGNAL")) {
    if (*text == "auto") return 0;
    const auto value = parse_signal(*text);
    if (!value || *value < lo || *value > hi) reject_variable("STALLWATCH_SIGNAL", *text, "auto, or " + numbers);
    setting = "STALLWATCH_SIGNAL";
    return static_cast<int>(*value);
  }
  if (field_value) {
    // Options has no spelling of auto but leaving the field unset.
    if (*field_value < lo || *field_value > hi) {
      reject_field("capture_signal", std::to_string(*field_value), numbers + "; leave it unset for auto");
    }
    setting = "Options::capture_signal";
    return *field_value;
  }
  return 0;
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
  return config::is_module_name(entry);
}

// "libcurl, /opt/vendor/include/" → its entries; nullopt when one is not
// valid. Blanks around entries are ignored; "" is no entry.
std::optional<std::vector<std::string>> parse_not_app(std::string_view text) {
  std::vector<std::string> entries;
  if (config::trim_blanks(text).empty()) return entries;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = config::trim_blanks(text.substr(start, end - start));
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
    if (!entries) reject_field("not_app", base::quoted(*field_value, max_shown), accepted);
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
  config.sched_batch = resolve_switch("STALLWATCH_SCHED_BATCH", options.sched_batch, "1", "0", false);
  if (options.stack_kb && *options.stack_kb > static_cast<std::size_t>(max_stack_kb) &&
      !variable("STALLWATCH_STACK_KB")) {
    // Beyond long long's range too, so rejected here rather than narrowed.
    reject_field("stack_kb", std::to_string(*options.stack_kb) + " KiB", integer_range(min_stack_kb, max_stack_kb) + " KiB");
  }
  config.stack_kb = static_cast<std::size_t>(
      resolve_integer("STALLWATCH_STACK_KB", "stack_kb", widen(options.stack_kb), " KiB", min_stack_kb, max_stack_kb, 64));
  config.capture_signal = resolve_capture_signal(options.capture_signal, config.capture_signal_setting);
  config.not_app = resolve_not_app(options.not_app);
  config.log_sink = options.log_sink;
  return config;
}

}  // namespace v1
}  // namespace stallwatch
