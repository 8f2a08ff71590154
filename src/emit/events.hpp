// What stallwatch writes, as data: every line the library emits is one of
// these, handed to the emitter (emitter.hpp), which owns its format, the
// escaping of every field, the rate limit and the sink it goes to. Parts fill
// them with raw values (a fiber name as the user gave it); nothing here is
// escaped yet.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "symbolize/symbolizer.hpp"

namespace stallwatch::emit {

using symbolize::Frame;

// The loop of a line, or this for the process's own lines (the metrics
// endpoint, the fork server): those go to the process's sink.
inline constexpr int process_wide = -1;

struct FiberRef {
  std::uint64_t id = 0;  // 0: the scheduler (the loop's own work)
  std::string name;
};

// One sample of a stall (DESIGN.md's report). kind: "on-cpu", "blocked" or
// "preempted"; syscall: the call a blocked thread sits in.
struct StallSample {
  int loop = 0;
  FiberRef fiber;
  std::string kind = "on-cpu";
  std::string syscall;
  std::uint64_t wall_ns = 0;
  std::uint64_t cpu_ns = 0;
  std::uint64_t threshold_ns = 0;
  int sample = 1;
  // "ok", or why the stack is missing ("timeout", "in_switch", "exception",
  // "unwind_failed"), with the sentence the text line gives for it.
  std::string capture = "ok";
  std::string capture_note;
  std::vector<Frame> frames;
  int culprit = -1;            // frames[culprit]: the first application frame (culprit.hpp); -1: none
  std::uint64_t stack_id = 0;  // hash of the pcs; 0 without a stack
  int seen = 1;                // reports with this stack in the window, this one included
};

struct StallEnd {
  int loop = 0;
  FiberRef fiber;
  std::uint64_t wall_ns = 0;
  std::uint64_t cpu_ns = 0;
  int samples = 0;
};

// A probed blocking call made on a loop fiber (libstallwatch-probes), the
// first from its call site, or the one that ends the process in strict mode.
struct BlockingCall {
  int loop = 0;
  FiberRef fiber;
  std::string function;
  bool strict = false;
  std::vector<Frame> frames;
  int culprit = -1;  // as in StallSample
};

// Any other line: `text` for the text format (after "stallwatch: "), and
// `event` plus `fields` for JSON, which also carries the text as "message".
struct Field {
  std::string key;
  std::variant<std::string, std::int64_t, bool> value;
};

struct Message {
  int loop = process_wide;
  std::string event;
  std::string text;
  std::vector<Field> fields;
};

// Which rate limit a report counts against (each loop has one of each).
enum class ReportKind { stall = 0, blocking_call = 1 };
inline constexpr int report_kind_count = 2;

}  // namespace stallwatch::emit
