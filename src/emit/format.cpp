#include "emit/format.hpp"

#include <cinttypes>
#include <cstdio>
#include <map>

#include "stallwatch/watchdog.hpp"
#include "base/text.hpp"
#include "emit/advice.hpp"
#include "emit/culprit.hpp"

namespace stallwatch::emit {
namespace {

using base::append_json_string;
using base::append_quoted;

void append_fiber_text(std::string& out, const FiberRef& fiber) {
  out += "fiber=" + std::to_string(fiber.id);
  if (fiber.id == 0 && fiber.name.empty()) {
    out += " \"scheduler\"";  // a foreign loop's thread (src/watch/) has its own name
  } else if (!fiber.name.empty()) {
    out.push_back(' ');
    append_quoted(out, fiber.name);
  }
}

void append_fiber_json(std::string& out, const FiberRef& fiber) {
  out += ",\"fiber\":" + std::to_string(fiber.id) + ",\"fiber_name\":";
  append_json_string(out, fiber.id == 0 && fiber.name.empty() ? std::string("scheduler") : fiber.name);
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

void append_frames_text(std::string& out, const std::vector<Frame>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    out += "\n  #" + std::to_string(i) + " 0x" + hex64(f.pc, 16) + " ";
    out += f.function.empty() ? std::string("??") : base::one_line(f.function);
    if (!f.file.empty()) out += " at " + base::one_line(f.file) + ":" + std::to_string(f.line);
    out += " (" + (f.module.empty() ? std::string("??") : base::one_line(f.module)) + "+0x" +
           hex64(f.module_offset, 1) + ")";
    if (f.inlined) out += " inlined";
  }
}

void append_frames_json(std::string& out, const std::vector<Frame>& frames) {
  out += ",\"frames\":[";
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const Frame& f = frames[i];
    if (i > 0) out.push_back(',');
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
  out += "]";
}

// "build-id module=hex ..." for the distinct modules of the stack.
std::string build_id_line(const std::vector<Frame>& frames) {
  std::map<std::string, std::string> ids;
  for (const Frame& f : frames) {
    if (!f.module.empty() && !f.build_id.empty()) ids.emplace(f.module, f.build_id);
  }
  std::string line;
  for (const auto& [module, id] : ids) line += " " + base::one_line(module) + "=" + base::one_line(id);
  return line;
}

std::string describe_kind(const StallSample& s) {
  return s.kind == "blocked" ? "blocked in " + base::one_line(s.syscall) : base::one_line(s.kind);
}

const Frame* culprit_of(const std::vector<Frame>& frames, int culprit) {
  return culprit >= 0 && static_cast<std::size_t>(culprit) < frames.size() ? &frames[static_cast<std::size_t>(culprit)]
                                                                            : nullptr;
}

const char* report_noun(ReportKind kind) { return kind == ReportKind::stall ? "stall" : "blocking-call"; }

}  // namespace

std::string format_ms(std::uint64_t ns) {
  char buf[32];
  if (ns >= 10'000'000) {
    std::snprintf(buf, sizeof buf, "%" PRIu64 " ms", (ns + 500'000) / 1'000'000);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f ms", to_ms(ns));
  }
  return buf;
}

std::string format(const StallSample& s, log_format format) {
  std::string out;
  if (format == log_format::json) {
    out = "{\"event\":\"stall\",\"loop\":" + std::to_string(s.loop);
    append_fiber_json(out, s.fiber);
    out += ",\"kind\":";
    append_json_string(out, s.kind);
    out += ",\"syscall\":";
    append_json_string(out, s.syscall);
    out += ",\"wall_ms\":" + json_number(to_ms(s.wall_ns)) + ",\"cpu_ms\":" + json_number(to_ms(s.cpu_ns)) +
           ",\"threshold_ms\":" + json_number(to_ms(s.threshold_ns)) + ",\"sample\":" + std::to_string(s.sample) +
           ",\"capture\":";
    append_json_string(out, s.capture);
    out += ",\"stack_id\":\"" + hex64(s.stack_id, 16) + "\",\"seen\":" + std::to_string(s.seen);
    append_culprit_json(out, culprit_of(s.frames, s.culprit));
    append_frames_json(out, s.seen <= 1 ? s.frames : std::vector<Frame>{});
    out += "}";
    return out;
  }
  out = "stallwatch: stall loop=" + std::to_string(s.loop) + " ";
  append_fiber_text(out, s.fiber);
  out += " " + describe_kind(s) + " for " + format_ms(s.wall_ns);
  if (s.capture_note.empty()) out += " in " + culprit_text(culprit_of(s.frames, s.culprit));
  out += " (cpu " + format_ms(s.cpu_ns) + ", threshold " + format_ms(s.threshold_ns) + ") sample " +
         std::to_string(s.sample);
  if (!s.capture_note.empty()) {
    out += "\n  (stack not captured: " + base::one_line(s.capture_note) + ")";
  } else if (s.seen > 1) {
    out += "\n  (same stack as an earlier report: stack " + hex64(s.stack_id, 16) + ", seen " +
           std::to_string(s.seen) + " times)";
  } else {
    append_frames_text(out, s.frames);
    out += "\n  stack " + hex64(s.stack_id, 16);
    const std::string ids = build_id_line(s.frames);
    if (!ids.empty()) out += ", build-id" + ids;
  }
  return out;
}

std::string format(const StallEnd& e, log_format format) {
  if (format == log_format::json) {
    std::string out = "{\"event\":\"stall_ended\",\"loop\":" + std::to_string(e.loop);
    append_fiber_json(out, e.fiber);
    out += ",\"wall_ms\":" + json_number(to_ms(e.wall_ns)) + ",\"cpu_ms\":" + json_number(to_ms(e.cpu_ns)) +
           ",\"samples\":" + std::to_string(e.samples) + "}";
    return out;
  }
  std::string out = "stallwatch: stall ended loop=" + std::to_string(e.loop) + " ";
  append_fiber_text(out, e.fiber);
  out += " after " + format_ms(e.wall_ns) + " (cpu " + format_ms(e.cpu_ns) + "), " + std::to_string(e.samples) +
         (e.samples == 1 ? " sample" : " samples");
  return out;
}

std::string format(const BlockingCall& b, log_format format) {
  if (format == log_format::json) {
    std::string out = "{\"event\":\"blocking_call\",\"function\":";
    append_json_string(out, b.function);
    out += ",\"loop\":" + std::to_string(b.loop);
    append_fiber_json(out, b.fiber);
    out += ",\"strict\":" + std::string(b.strict ? "true" : "false");
    if (b.strict) out += ",\"exit_status\":" + std::to_string(strict_exit_status);
    append_culprit_json(out, culprit_of(b.frames, b.culprit));
    append_frames_json(out, b.frames);
    out += ",\"advice\":";
    append_json_string(out, std::string(advice_for(b.function)));
    return out + "}";
  }
  std::string out = "stallwatch: blocking call " + base::one_line(b.function) + " on loop=" + std::to_string(b.loop) +
                    " ";
  append_fiber_text(out, b.fiber);
  out += " in " + culprit_text(culprit_of(b.frames, b.culprit));
  if (b.strict) {
    out += ", in strict mode (STALLWATCH_STRICT=1): ending the process with status " +
           std::to_string(strict_exit_status);
  } else {
    out += ", first from this call site";
  }
  out += "\n  advice: " + std::string(advice_for(b.function));
  append_frames_text(out, b.frames);
  return out;
}

std::string format(const Message& m, log_format format) {
  if (format == log_format::json) {
    std::string out = "{\"event\":";
    append_json_string(out, m.event);
    if (m.loop != process_wide) out += ",\"loop\":" + std::to_string(m.loop);
    for (const Field& f : m.fields) {
      out.push_back(',');
      append_json_string(out, f.key);
      out.push_back(':');
      if (const auto* text = std::get_if<std::string>(&f.value)) {
        append_json_string(out, *text);
      } else if (const auto* number = std::get_if<std::int64_t>(&f.value)) {
        out += std::to_string(*number);
      } else {
        out += std::get<bool>(f.value) ? "true" : "false";
      }
    }
    out += ",\"message\":";
    append_json_string(out, m.text);
    return out + "}";
  }
  return "stallwatch: " + base::one_line(m.text);
}

std::string format_suppressed(int loop, ReportKind kind, std::uint64_t count, int window_s, log_format format) {
  if (format == log_format::json) {
    return "{\"event\":\"suppressed\",\"reports\":\"" + std::string(report_noun(kind)) +
           "\",\"loop\":" + std::to_string(loop) + ",\"count\":" + std::to_string(count) +
           ",\"window_s\":" + std::to_string(window_s) + "}";
  }
  const std::string window = window_s == 60 ? "minute" : std::to_string(window_s) + " s";
  return "stallwatch: suppressed " + std::to_string(count) + " " + report_noun(kind) + " reports on loop " +
         std::to_string(loop) + " in the last " + window;
}

}  // namespace stallwatch::emit
