#include "watchdog/report.hpp"

#include <cinttypes>
#include <cstdio>
#include <map>

#include "watchdog/culprit.hpp"

namespace stallwatch::watchdog {
namespace {

const char* capture_note(const StallSample& s) {
  if (s.timed_out) return "the thread did not answer the capture signal in time";
  switch (s.outcome) {
    case CaptureOutcome::captured:
      return nullptr;
    case CaptureOutcome::in_switch:
      return "a context switch was in progress";
    case CaptureOutcome::exception:
      return "an exception was unwinding";
    case CaptureOutcome::unwind_failed:
      return "the unwinder could not start";
  }
  return nullptr;
}

const char* capture_field(const StallSample& s) {
  if (s.timed_out) return "timeout";
  switch (s.outcome) {
    case CaptureOutcome::captured:
      return "ok";
    case CaptureOutcome::in_switch:
      return "in_switch";
    case CaptureOutcome::exception:
      return "exception";
    case CaptureOutcome::unwind_failed:
      return "unwind_failed";
  }
  return "ok";
}

const char* kind_field(core::StallKind kind) {
  switch (kind) {
    case core::StallKind::cpu:
      return "on-cpu";
    case core::StallKind::blocked:
      return "blocked";
    case core::StallKind::preempted:
      return "preempted";
  }
  return "on-cpu";
}

// Text: the fiber name in quotes, with quotes, backslashes and control
// characters escaped so one report never forges another line.
void append_quoted(std::string& out, std::string_view s) {
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

void append_fiber_text(std::string& out, std::uint64_t id, const std::string& name) {
  out += "fiber=" + std::to_string(id);
  if (id == 0) {
    out += " \"scheduler\"";
  } else if (!name.empty()) {
    out.push_back(' ');
    append_quoted(out, name);
  }
}

std::string hex64(std::uint64_t v, int width) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%0*" PRIx64, width, v);
  return buf;
}

double to_ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

std::string json_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

void append_frame_text(std::string& out, int index, const Frame& f) {
  out += "\n  #" + std::to_string(index) + " 0x" + hex64(f.pc, 16) + " ";
  out += f.function.empty() ? std::string("??") : f.function;
  if (!f.file.empty()) out += " at " + f.file + ":" + std::to_string(f.line);
  out += " (" + (f.module.empty() ? std::string("??") : f.module) + "+0x" + hex64(f.module_offset, 1) + ")";
  if (f.inlined) out += " inlined";
}

// "build-id module=hex ..." for the distinct modules of the stack.
std::string build_id_line(const std::vector<Frame>& frames) {
  std::map<std::string, std::string> ids;
  for (const Frame& f : frames) {
    if (!f.module.empty() && !f.build_id.empty()) ids.emplace(f.module, f.build_id);
  }
  std::string line;
  for (const auto& [module, id] : ids) line += " " + module + "=" + id;
  return line;
}

void append_frame_json(std::string& out, const Frame& f) {
  out += "{\"pc\":\"0x" + hex64(f.pc, 16) + "\",\"function\":";
  append_json_string(out, f.function);
  out += ",\"file\":";
  append_json_string(out, f.file);
  out += ",\"line\":" + std::to_string(f.line) + ",\"module\":";
  append_json_string(out, f.module);
  out += ",\"offset\":\"0x" + hex64(f.module_offset, 1) + "\",\"build_id\":";
  append_json_string(out, f.build_id);
  out += f.inlined ? ",\"inlined\":true}" : ",\"inlined\":false}";
}

const Frame* culprit_of(const StallSample& s) {
  const bool valid = s.culprit >= 0 && static_cast<std::size_t>(s.culprit) < s.frames.size();
  return valid ? &s.frames[static_cast<std::size_t>(s.culprit)] : nullptr;
}

}  // namespace

std::uint64_t stack_hash(const std::uintptr_t* pcs, int depth) {
  std::uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < depth; ++i) {
    std::uint64_t v = pcs[i];
    for (int b = 0; b < 8; ++b) {
      h ^= v & 0xff;
      h *= 1099511628211ull;
      v >>= 8;
    }
  }
  return h;
}

std::string format_ms(std::uint64_t ns) {
  char buf[32];
  if (ns >= 10'000'000) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " ms", (ns + 500'000) / 1'000'000);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f ms", to_ms(ns));
  }
  return buf;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (const std::size_t n = utf8_sequence(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++i;
    }
  }
  out.push_back('"');
}

std::string format_sample(const StallSample& s, log_format format) {
  std::string out;
  if (format == log_format::json) {
    out = "{\"event\":\"stall\",\"loop\":" + std::to_string(s.loop) + ",\"fiber\":" + std::to_string(s.fiber_id) +
          ",\"fiber_name\":";
    append_json_string(out, s.fiber_id == 0 ? std::string("scheduler") : s.fiber_name);
    out += ",\"kind\":\"" + std::string(kind_field(s.kind.kind)) + "\",\"syscall\":";
    append_json_string(out, s.kind.syscall);
    out += ",\"wall_ms\":" + json_number(to_ms(s.wall_ns)) + ",\"cpu_ms\":" + json_number(to_ms(s.cpu_ns)) +
           ",\"threshold_ms\":" + json_number(to_ms(s.threshold_ns)) + ",\"sample\":" + std::to_string(s.sample) +
           ",\"capture\":\"" + capture_field(s) + "\",\"stack_id\":\"" + hex64(s.stack_id, 16) +
           "\",\"seen\":" + std::to_string(s.seen);
    append_culprit_json(out, culprit_of(s));
    out += ",\"frames\":[";
    if (s.seen <= 1) {
      for (std::size_t i = 0; i < s.frames.size(); ++i) {
        if (i > 0) out.push_back(',');
        append_frame_json(out, s.frames[i]);
      }
    }
    out += "]}";
    return out;
  }
  out = "stallwatch: stall loop=" + std::to_string(s.loop) + " ";
  append_fiber_text(out, s.fiber_id, s.fiber_name);
  out += " " + s.kind.describe() + " for " + format_ms(s.wall_ns);
  if (capture_note(s) == nullptr) out += " in " + culprit_text(culprit_of(s));
  out += " (cpu " + format_ms(s.cpu_ns) +
         ", threshold " + format_ms(s.threshold_ns) + ") sample " + std::to_string(s.sample);
  if (const char* note = capture_note(s)) {
    out += "\n  (stack not captured: ";
    out += note;
    out += ")";
  } else if (s.seen > 1) {
    out += "\n  (same stack as an earlier report: stack " + hex64(s.stack_id, 16) + ", seen " +
           std::to_string(s.seen) + " times)";
  } else {
    for (std::size_t i = 0; i < s.frames.size(); ++i) append_frame_text(out, static_cast<int>(i), s.frames[i]);
    out += "\n  stack " + hex64(s.stack_id, 16);
    const std::string ids = build_id_line(s.frames);
    if (!ids.empty()) out += ", build-id" + ids;
  }
  return out;
}

std::string format_end(const StallEnd& e, log_format format) {
  if (format == log_format::json) {
    std::string out = "{\"event\":\"stall_ended\",\"loop\":" + std::to_string(e.loop) +
                      ",\"fiber\":" + std::to_string(e.fiber_id) + ",\"fiber_name\":";
    append_json_string(out, e.fiber_id == 0 ? std::string("scheduler") : e.fiber_name);
    out += ",\"wall_ms\":" + json_number(to_ms(e.wall_ns)) + ",\"cpu_ms\":" + json_number(to_ms(e.cpu_ns)) +
           ",\"samples\":" + std::to_string(e.samples) + "}";
    return out;
  }
  std::string out = "stallwatch: stall ended loop=" + std::to_string(e.loop) + " ";
  append_fiber_text(out, e.fiber_id, e.fiber_name);
  out += " after " + format_ms(e.wall_ns) + " (cpu " + format_ms(e.cpu_ns) + "), " + std::to_string(e.samples) +
         (e.samples == 1 ? " sample" : " samples");
  return out;
}

std::string format_suppressed(int loop, std::uint64_t count, log_format format) {
  if (format == log_format::json) {
    return "{\"event\":\"suppressed\",\"loop\":" + std::to_string(loop) + ",\"count\":" + std::to_string(count) +
           ",\"window_s\":60}";
  }
  return "stallwatch: suppressed " + std::to_string(count) + " stall reports on loop " + std::to_string(loop) +
         " in the last minute";
}

}  // namespace stallwatch::watchdog
