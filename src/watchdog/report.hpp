// Stall reports and their two formats: DESIGN.md's text lines and JSON lines
// carrying the same fields. Pure formatting: any thread; NOT
// async-signal-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stallwatch/config.hpp"
#include "watchdog/sigsafe/capture_slot.hpp"
#include "watchdog/symbolizer.hpp"
#include "watchdog/thread_probe.hpp"

namespace stallwatch::watchdog {

struct StallSample {
  int loop = 0;
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  Classification kind;
  std::uint64_t wall_ns = 0;
  std::uint64_t cpu_ns = 0;
  std::uint64_t threshold_ns = 0;
  int sample = 1;
  // captured, or why there is no stack; timeout when the thread did not answer.
  CaptureOutcome outcome = CaptureOutcome::captured;
  bool timed_out = false;
  std::vector<Frame> frames;
  int culprit = -1;            // index in frames of the first application frame (culprit.hpp), or -1
  std::uint64_t stack_id = 0;  // hash of the pcs; 0 without a stack
  int seen = 1;                // reports with this stack in the window, this one included
};

struct StallEnd {
  int loop = 0;
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  std::uint64_t wall_ns = 0;
  std::uint64_t cpu_ns = 0;
  int samples = 0;
};

// The stack id of a capture: FNV-1a over its pcs.
std::uint64_t stack_hash(const std::uintptr_t* pcs, int depth);

// One report, ready for the sink: text lines joined by '\n' (no trailing
// newline), or one JSON object. Frames are omitted when seen > 1.
std::string format_sample(const StallSample& s, log_format format);
std::string format_end(const StallEnd& e, log_format format);
std::string format_suppressed(int loop, std::uint64_t count, log_format format);

// JSON string escaping (quotes, backslash, control characters as \uXXXX;
// invalid UTF-8 bytes as \u00XX so the line stays valid).
void append_json_string(std::string& out, std::string_view s);

// "212 ms", "0.1 ms": whole milliseconds from 10 ms up, one decimal below.
std::string format_ms(std::uint64_t ns);

}  // namespace stallwatch::watchdog
