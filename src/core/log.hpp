// The one place stallwatch writes its log lines: the Options::log_sink of the
// first loop that set one, else stderr. Any thread; NOT async-signal-safe.
#pragma once

#include <functional>
#include <string_view>

#include "stallwatch/config.hpp"

namespace stallwatch::core {

// Installs the sink and format from a loop's config (the first set sink wins).
void configure_log(const Config& config);
// Writes one line (no trailing newline needed).
void log_line(std::string_view line);
// The format reports should use (text or JSON lines).
log_format current_log_format();

}  // namespace stallwatch::core
