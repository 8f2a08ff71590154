// The two formats of every line stallwatch writes: DESIGN.md's text lines and
// JSON lines carrying the same fields. Every field from outside (fiber names,
// function and file names, exception messages) is escaped here, so no value
// can break a line or forge another. Pure: any thread; NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <string>

#include "emit/events.hpp"
#include "stallwatch/config.hpp"

namespace stallwatch::emit {

// One line, or for a text stall report several joined by '\n' (no trailing
// newline); one JSON object in JSON mode. Frames are left out when seen > 1.
std::string format(const StallSample& s, log_format format);
std::string format(const StallEnd& e, log_format format);
std::string format(const BlockingCall& b, log_format format);
std::string format(const Message& m, log_format format);
// The summary of `count` reports of `kind` held back on `loop` in the window
// of `window_s` seconds that just closed.
std::string format_suppressed(int loop, ReportKind kind, std::uint64_t count, int window_s, log_format format);

// "212 ms", "0.1 ms": whole milliseconds from 10 ms up, one decimal below.
std::string format_ms(std::uint64_t ns);

}  // namespace stallwatch::emit
