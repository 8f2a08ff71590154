// The library side of the blocking-call probes: the per-fiber allow_blocking
// scopes, the check the interposers make before every probed call, and the
// recording of a flagged call (count, first-call-per-site report with its
// stack, rate limit, strict-mode exit). Runs on loop threads, never in a
// signal handler; the stack is taken with libunwind at the call itself.
#include "core/blocking_calls.hpp"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <utility>

#include "core/log.hpp"
#include "core/loop_record.hpp"
#include "core/thread_state.hpp"
#include "probes/probed_functions.hpp"
#include "stallwatch/allow_blocking.hpp"
#include "stallwatch/errors.hpp"
#include "watchdog/backtrace.hpp"
#include "watchdog/report.hpp"
#include "watchdog/symbolizer.hpp"

namespace stallwatch::core {
namespace {

constexpr int max_frames = 32;
// The frames that tell one call site from another (the same call instruction
// reached from different callers counts as different sites).
constexpr int call_site_frames = 8;
// Call sites remembered as "already reported"; past this, new sites are
// counted but no longer reported (said once in the log).
constexpr std::size_t max_call_sites = 4096;
constexpr std::chrono::seconds report_window{60};
constexpr std::string_view other_function = "other";

// ---- allow_blocking scopes, per fiber ----

// The thread state is per thread, but a scope belongs to the fiber that opened
// it: while that fiber is parked inside its scope, the other fibers of the
// loop stay checked. Few entries (fibers inside a scope right now).
struct AllowedFiber {
  std::uint64_t fiber_id;
  int depth;
};
thread_local std::vector<AllowedFiber> tls_allowed_fibers;

bool fiber_allowed(std::uint64_t fiber_id) {
  for (const AllowedFiber& f : tls_allowed_fibers) {
    if (f.fiber_id == fiber_id) return true;
  }
  return false;
}

// ---- forked children ----

// A child forked from a loop fiber inherits that thread's state, but no loop
// runs in it: its calls block nobody. Set by the first fork child handler
// (registered before any other of this library's); cleared when a loop starts.
std::atomic<bool> in_forked_child{false};

// The report writer of this process (below); a forked child drops its
// parent's, whose thread did not survive the fork, and starts its own.
class ReportWriter;
std::atomic<ReportWriter*> report_writer{nullptr};

__attribute__((constructor(101))) void watch_forks() {
  pthread_atfork(nullptr, nullptr, [] {
    in_forked_child.store(true, std::memory_order_relaxed);
    report_writer.store(nullptr, std::memory_order_relaxed);
  });
}

// ---- process-wide recording state ----

struct CallCount {
  std::string function;
  std::uint64_t count = 0;
};

struct RecordState {
  std::mutex mutex;
  bool strict = false;
  int reports_per_minute = 10;
  std::vector<AllowEntry> allow;
  std::vector<CallCount> counts;  // at most max_counted_functions, "other" included
  std::unordered_set<std::uint64_t> reported_sites;
  bool site_table_full_said = false;
  std::chrono::steady_clock::time_point window_start{};
  int reports_in_window = 0;
  std::uint64_t suppressed_in_window = 0;
  BlockingReportCounts totals;  // since start, for the metrics
};

RecordState& record_state() {
  // Never destroyed: fibers of other threads may record while statics die.
  static RecordState* s = new RecordState;
  return *s;
}

void count_call(RecordState& s, std::string_view function) {
  for (CallCount& c : s.counts) {
    if (c.function == function) {
      ++c.count;
      return;
    }
  }
  const std::string_view name = s.counts.size() + 1 < max_counted_functions ? function : other_function;
  for (CallCount& c : s.counts) {
    if (c.function == name) {
      ++c.count;
      return;
    }
  }
  s.counts.push_back(CallCount{std::string(name), 1});
}

// Opens a new rate window when the last one is over; returns the summary line
// for the reports the last window held back, or "".
std::string roll_report_window(RecordState& s, std::chrono::steady_clock::time_point now) {
  if (now - s.window_start < report_window) return {};
  std::string summary;
  if (s.suppressed_in_window > 0) {
    summary = "stallwatch: suppressed " + std::to_string(s.suppressed_in_window) +
              " blocking-call reports in the last minute (STALLWATCH_REPORTS_PER_MINUTE=" +
              std::to_string(s.reports_per_minute) + ")";
  }
  s.window_start = now;
  s.reports_in_window = 0;
  s.suppressed_in_window = 0;
  return summary;
}

// ---- the calling stack ----

struct Stack {
  void* pcs[max_frames];
  int size = 0;
};

// Base address of the module holding addr, or null.
const void* module_base(const void* addr) {
  Dl_info info;
  if (addr == nullptr || dladdr(addr, &info) == 0) return nullptr;
  return info.dli_fbase;
}

const void* probes_module_base() {
  static const void* base = module_base(dlsym(RTLD_DEFAULT, "stallwatch_probes_active"));
  return base;
}

// The stack of the code that made the blocking call: the frames from
// `return_address` (where stallwatch_probe_record returns to) outward, minus
// the interposer's own frame in libstallwatch-probes.
__attribute__((noinline)) Stack capture_caller_stack(const void* return_address) {
  Stack all;
  all.size = watchdog::backtrace_here(all.pcs, max_frames);
  int first = 0;
  for (int i = 0; i < all.size; ++i) {
    if (all.pcs[i] == return_address) {
      first = i;
      break;
    }
  }
  const void* probes = probes_module_base();
  while (probes != nullptr && first < all.size && module_base(all.pcs[first]) == probes) ++first;
  Stack stack;
  for (int i = first; i < all.size; ++i) stack.pcs[stack.size++] = all.pcs[i];
  return stack;
}

// The base of libstallwatch.so, or null when this code is linked into the
// program itself (the static archive the unit tests use).
const void* shared_library_base() {
  Dl_info info;
  link_map* own = nullptr;
  if (dladdr1(reinterpret_cast<const void*>(&stallwatch_probe_record), &info, reinterpret_cast<void**>(&own),
              RTLD_DL_LINKMAP) == 0) {
    return nullptr;
  }
  link_map* program = nullptr;
  void* self = dlopen(nullptr, RTLD_LAZY | RTLD_NOLOAD);
  if (self != nullptr) {
    dlinfo(self, RTLD_DI_LINKMAP, &program);
    dlclose(self);
  }
  return own != program ? info.dli_fbase : nullptr;
}

// libstallwatch's own calls are internal even where no InternalBlockingScope
// marks them: a log line written to stderr by an ending fiber, a contended
// lock of the offload pool's queue. pc: the caller's return address.
bool made_by_libstallwatch(const void* pc) {
  static const void* own = shared_library_base();
  return own != nullptr &&
         module_base(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(pc) - 1)) == own;
}

std::uint64_t call_site_key(std::string_view function, const Stack& stack) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&h](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (i * 8)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (char c : function) mix(static_cast<unsigned char>(c));
  for (int i = 0; i < std::min(stack.size, call_site_frames); ++i) mix(reinterpret_cast<std::uintptr_t>(stack.pcs[i]));
  return h;
}

std::string base_name(const char* path) {
  if (path == nullptr) return {};
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

// The file names of the modules holding the stack's frames (dladdr: cheap,
// no debug information read), for STALLWATCH_ALLOW's function@module.
std::vector<std::string> stack_modules(const Stack& stack) {
  std::vector<std::string> modules;
  for (int i = 0; i < stack.size; ++i) {
    Dl_info info;
    if (dladdr(reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(stack.pcs[i]) - 1), &info) != 0) {
      modules.push_back(base_name(info.dli_fname));
    }
  }
  return modules;
}

// ---- the report ----

// A report waiting for symbolization, or a ready line (summaries) when `line`
// is set; either is logged in the order submitted.
struct PendingReport {
  std::string line;
  std::string function;
  int loop = -1;
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  bool strict = false;
  Stack stack;
};

std::string hex(std::uint64_t v, int width) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

// Frames are written as in stall reports (watchdog/report.cpp).
std::string text_report(const PendingReport& r, const std::vector<watchdog::Frame>& frames) {
  std::string out = "stallwatch: blocking call " + r.function + " on loop=" + std::to_string(r.loop) +
                    " fiber=" + std::to_string(r.fiber_id) + " \"" + r.fiber_name + "\"";
  if (r.strict) {
    out += " in strict mode (STALLWATCH_STRICT=1): ending the process with status " +
           std::to_string(blocking_call_exit_status);
  } else {
    out += ", first from this call site";
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const watchdog::Frame& f = frames[i];
    out += "\n  #" + std::to_string(i) + " 0x" + hex(f.pc, 16) + " ";
    out += f.function.empty() ? std::string("??") : f.function;
    if (!f.file.empty()) out += " at " + f.file + ":" + std::to_string(f.line);
    out += " (" + (f.module.empty() ? std::string("??") : f.module) + "+0x" + hex(f.module_offset, 1) + ")";
    if (f.inlined) out += " inlined";
  }
  return out;
}

std::string json_report(const PendingReport& r, const std::vector<watchdog::Frame>& frames) {
  std::string out = "{\"event\":\"blocking_call\",\"function\":";
  watchdog::append_json_string(out, r.function);
  out += ",\"loop\":" + std::to_string(r.loop) + ",\"fiber\":" + std::to_string(r.fiber_id) + ",\"fiber_name\":";
  watchdog::append_json_string(out, r.fiber_name);
  out += ",\"strict\":" + std::string(r.strict ? "true" : "false");
  if (r.strict) out += ",\"exit_status\":" + std::to_string(blocking_call_exit_status);
  out += ",\"frames\":[";
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const watchdog::Frame& f = frames[i];
    if (i > 0) out += ',';
    out += "{\"pc\":\"0x" + hex(f.pc, 16) + "\",\"function\":";
    watchdog::append_json_string(out, f.function);
    out += ",\"file\":";
    watchdog::append_json_string(out, f.file);
    out += ",\"line\":" + std::to_string(f.line) + ",\"module\":";
    watchdog::append_json_string(out, f.module);
    out += ",\"offset\":\"0x" + hex(f.module_offset, 1) + "\",\"build_id\":";
    watchdog::append_json_string(out, f.build_id);
    out += f.inlined ? ",\"inlined\":true}" : ",\"inlined\":false}";
  }
  return out + "]}";
}

// Symbolizes and logs reports on its own thread, so a loop never reads debug
// information (which can take far longer than the call being reported). The
// thread starts with the first report and is a plain thread: its own calls
// are never flagged.
class ReportWriter {
 public:
  // Queues a report. Loop thread; returns at once.
  void submit(PendingReport report) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(report));
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    changed_.notify_all();
  }

  // Waits until every queued report is logged; false when timeout passed first.
  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return !queue_.empty(); });
      PendingReport report = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      try {
        log_line(report.line.empty() ? format(report) : report.line);
      } catch (...) {
        // Out of memory formatting one report: drop it, keep the writer alive.
      }
      lock.lock();
      busy_ = false;
      changed_.notify_all();
    }
  }

  std::string format(const PendingReport& report) {
    std::vector<watchdog::Frame> frames;
    {
      std::lock_guard lock(symbolizer_mutex_);
      if (!symbolizer_) symbolizer_ = std::make_unique<watchdog::Symbolizer>();
      for (int i = 0; i < report.stack.size; ++i) {
        const auto& at = symbolizer_->symbolize(reinterpret_cast<std::uintptr_t>(report.stack.pcs[i]), true);
        frames.insert(frames.end(), at.begin(), at.end());
      }
    }
    return current_log_format() == log_format::json ? json_report(report, frames) : text_report(report, frames);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<PendingReport> queue_;
  bool busy_ = false;
  bool started_ = false;
  std::mutex symbolizer_mutex_;
  std::unique_ptr<watchdog::Symbolizer> symbolizer_;  // not thread-safe: under symbolizer_mutex_
};

std::mutex report_writer_mutex;

ReportWriter& writer() {
  ReportWriter* w = report_writer.load(std::memory_order_acquire);
  if (w != nullptr) return *w;
  std::lock_guard lock(report_writer_mutex);
  w = report_writer.load(std::memory_order_relaxed);
  if (w == nullptr) {
    static const bool flush_at_exit = [] {
      // Reports queued as the process ends still reach the log.
      std::atexit([] { flush_blocking_call_reports(std::chrono::seconds(2)); });
      return true;
    }();
    (void)flush_at_exit;
    w = new ReportWriter;  // never destroyed: the detached thread uses it until exit
    report_writer.store(w, std::memory_order_release);
  }
  return *w;
}

[[noreturn]] void end_process() {
  std::fflush(nullptr);
  _exit(blocking_call_exit_status);
}

void record_blocking_call(std::string_view function, const Stack& stack) {
  if (stack.size > 0 && made_by_libstallwatch(stack.pcs[0])) return;
  RecordState& s = record_state();

  std::vector<AllowEntry> allow;
  bool strict = false;
  {
    std::lock_guard lock(s.mutex);
    allow = s.allow;
    strict = s.strict;
  }
  if (!allow.empty() && allow_list_permits(allow, function, stack_modules(stack))) return;

  bool report = false;
  std::string summary;
  std::string table_full;
  {
    std::lock_guard lock(s.mutex);
    count_call(s, function);
    if (!strict) {
      const std::uint64_t site = call_site_key(function, stack);
      if (!s.reported_sites.contains(site)) {
        summary = roll_report_window(s, std::chrono::steady_clock::now());
        if (s.reported_sites.size() >= max_call_sites) {
          if (!s.site_table_full_said) {
            s.site_table_full_said = true;
            table_full = "stallwatch: " + std::to_string(max_call_sites) +
                         " blocking-call sites reported; calls from new sites are counted but no longer reported";
          }
        } else if (s.reports_in_window < s.reports_per_minute) {
          ++s.reports_in_window;
          ++s.totals.reported;
          s.reported_sites.insert(site);
          report = true;
        } else {
          // Not marked as reported: the site is reported once the rate allows.
          ++s.suppressed_in_window;
          ++s.totals.suppressed;
        }
      }
    }
  }
  if (!strict && !report && summary.empty() && table_full.empty()) return;

  ReportWriter& w = writer();
  for (std::string* line : {&summary, &table_full}) {
    if (line->empty()) continue;
    PendingReport ready;
    ready.line = std::move(*line);
    w.submit(std::move(ready));
  }
  if (!strict && !report) return;

  const LoopRecord* loop = current_loop_record();
  PendingReport r;
  r.function = std::string(function);
  r.loop = loop != nullptr ? loop->index : -1;
  if (const FiberIdentity* fiber = current_fiber()) {
    r.fiber_id = fiber->id;
    if (fiber->name != nullptr) r.fiber_name.assign(fiber->name, fiber->name_len);
  }
  r.strict = strict;
  r.stack = stack;
  w.submit(std::move(r));
  if (strict) {
    // Symbolizing needs more stack than a fiber has: the writer does it
    // while this thread waits, then the process ends.
    w.flush(std::chrono::seconds(10));
    end_process();
  }
}

bool known_function(std::string_view name) {
  return std::find(std::begin(probes::probed_functions), std::end(probes::probed_functions), name) !=
         std::end(probes::probed_functions);
}

bool valid_module_name(std::string_view module) {
  return !module.empty() && std::all_of(module.begin(), module.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '+';
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

[[noreturn]] void throw_allow_error(std::string_view text, std::string_view entry, std::string_view problem) {
  std::string accepted = "*";
  for (std::string_view name : probes::probed_functions) accepted += ", " + std::string(name);
  throw config_error("stallwatch: STALLWATCH_ALLOW=\"" + std::string(text) + "\": entry \"" + std::string(entry) +
                     "\" " + std::string(problem) +
                     "; accepted: a comma-separated list of function or function@module (module: a file name "
                     "such as libcurl or libcurl.so.4), function one of: " +
                     accepted);
}

// The probes' entry point: records a call to `function` made from the stack
// above return_address. Keeps errno; the recording itself (locks, logs,
// writes) is never flagged.
void record_probed_call(const char* function, const void* return_address) noexcept {
  const int saved_errno = errno;
  {
    InternalBlockingScope internal;
    const Stack stack = capture_caller_stack(return_address);
    try {
      record_blocking_call(function, stack);
    } catch (...) {
      // Out of memory while reporting: the call still goes ahead, uncounted.
    }
  }
  errno = saved_errno;
}

}  // namespace

std::vector<AllowEntry> parse_allow_list(std::string_view text) {
  std::vector<AllowEntry> entries;
  if (trim(text).empty()) return entries;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view entry = trim(text.substr(start, end - start));
    start = end + 1;
    if (entry.empty()) throw_allow_error(text, entry, "is empty");
    const std::size_t at = entry.find('@');
    const std::string_view function = at == std::string_view::npos ? entry : entry.substr(0, at);
    if (function.empty()) throw_allow_error(text, entry, "has no function before '@'");
    if (function != "*" && !known_function(function)) throw_allow_error(text, entry, "names a function not probed");
    AllowEntry parsed{std::string(function), {}};
    if (at != std::string_view::npos) {
      const std::string_view module = entry.substr(at + 1);
      if (module.empty()) throw_allow_error(text, entry, "has no module after '@'");
      if (!valid_module_name(module)) {
        throw_allow_error(text, entry, "has a module that is not a file name (letters, digits, . _ - +)");
      }
      parsed.module = std::string(module);
    } else if (function == "*") {
      throw_allow_error(text, entry, "allows every call everywhere: name a module (*@module)");
    }
    entries.push_back(std::move(parsed));
  }
  return entries;
}

bool allow_list_permits(const std::vector<AllowEntry>& allow, std::string_view function,
                        const std::vector<std::string>& modules) {
  for (const AllowEntry& entry : allow) {
    if (entry.function != "*" && entry.function != function) continue;
    if (entry.module.empty()) return true;
    for (const std::string& m : modules) {
      if (m.starts_with(entry.module) && (m.size() == entry.module.size() || m[entry.module.size()] == '.')) {
        return true;
      }
    }
  }
  return false;
}

bool flush_blocking_call_reports(std::chrono::milliseconds timeout) {
  ReportWriter* w = report_writer.load(std::memory_order_acquire);
  return w == nullptr || w->flush(timeout);
}

void for_each_blocking_call_count(const std::function<void(std::string_view, std::uint64_t)>& fn) {
  std::vector<CallCount> counts;
  {
    RecordState& s = record_state();
    std::lock_guard lock(s.mutex);
    counts = s.counts;
  }
  for (const CallCount& c : counts) fn(c.function, c.count);
}

BlockingReportCounts blocking_call_report_counts() {
  RecordState& s = record_state();
  std::lock_guard lock(s.mutex);
  return s.totals;
}

void configure_blocking_calls(const Config& config) {
  const char* env = std::getenv("STALLWATCH_ALLOW");
  std::vector<AllowEntry> allow = parse_allow_list(env != nullptr ? env : "");
  {
    RecordState& s = record_state();
    std::lock_guard lock(s.mutex);
    s.strict = config.strict;
    s.reports_per_minute = config.reports_per_minute;
    s.allow = std::move(allow);
  }
  in_forked_child.store(false, std::memory_order_relaxed);
  check_probes_canary(config);
  warn_if_probes_misordered();
}

bool probes_interposed() {
  const void* marker = dlsym(RTLD_DEFAULT, "stallwatch_probes_active");
  const void* libc_only = dlsym(RTLD_DEFAULT, "gnu_get_libc_version");
  Dl_info probes;
  Dl_info libc;
  if (marker == nullptr || libc_only == nullptr || dladdr(marker, &probes) == 0 || dladdr(libc_only, &libc) == 0) {
    return false;
  }
  // Symbols bind to the first definition in load order: the probes must be
  // loaded before libc, and before libstallwatch.so, which interposes the
  // waits (sleep, poll, select …) too: reached first, it would forward them
  // to the probes as its own calls, never flagged. (A sanitizer runtime may
  // come before all three; its interceptors forward to the next definition.)
  Dl_info own;
  const bool own_shared = shared_library_base() != nullptr &&
                          dladdr(reinterpret_cast<const void*>(&stallwatch_probe_record), &own) != 0;
  struct Order {
    const char* probes;
    const char* libc;
    const char* libstallwatch;  // null when linked into the program
    int seen = 0;  // 1: probes first, 2: libc or libstallwatch first
  } order{probes.dli_fname, libc.dli_fname, own_shared ? own.dli_fname : nullptr};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* o = static_cast<Order*>(data);
        if (std::strcmp(info->dlpi_name, o->probes) == 0) o->seen = 1;
        else if (std::strcmp(info->dlpi_name, o->libc) == 0) o->seen = 2;
        else if (o->libstallwatch != nullptr && std::strcmp(info->dlpi_name, o->libstallwatch) == 0) o->seen = 2;
        return o->seen;
      },
      &order);
  return order.seen == 1;
}

void check_probes_canary(const Config& config) {
  if (!config.strict || probes_interposed()) return;
  const std::string message =
      "stallwatch: STALLWATCH_STRICT=1 but the blocking-call probes are not active: run with "
      "LD_PRELOAD=libstallwatch-probes.so (or link stallwatch-probes before stallwatch and libc), or set "
      "STALLWATCH_STRICT=0";
  log_line(message);
  throw config_error(message);
}

void warn_if_probes_misordered() {
  static std::atomic<bool> said{false};
  if (dlsym(RTLD_DEFAULT, "stallwatch_probes_active") == nullptr || probes_interposed() || said.exchange(true)) {
    return;
  }
  log_line(
      "stallwatch: libstallwatch-probes is loaded but not before libstallwatch and libc, so blocking calls "
      "(sleep, poll, select and others) are not flagged: link stallwatch-probes first (pkg-config --libs "
      "stallwatch-probes) or load it with LD_PRELOAD");
}

}  // namespace stallwatch::core

extern "C" bool stallwatch_probe_should_flag() noexcept {
  if (!stallwatch::core::on_loop_fiber()) [[likely]] return false;
  if (stallwatch::core::in_forked_child.load(std::memory_order_relaxed)) return false;
  return stallwatch::core::tls_allowed_fibers.empty() ||
         !stallwatch::core::fiber_allowed(stallwatch::core::running_fiber_id());
}

extern "C" __attribute__((noinline)) void stallwatch_probe_record(const char* function) noexcept {
  stallwatch::core::record_probed_call(function, __builtin_return_address(0));
}

namespace stallwatch {
inline namespace v1 {

allow_blocking::allow_blocking() : fiber_id_(core::running_fiber_id()) {
  for (core::AllowedFiber& f : core::tls_allowed_fibers) {
    if (f.fiber_id == fiber_id_) {
      ++f.depth;
      return;
    }
  }
  core::tls_allowed_fibers.push_back(core::AllowedFiber{fiber_id_, 1});
}

allow_blocking::~allow_blocking() {
  auto& fibers = core::tls_allowed_fibers;
  for (auto it = fibers.begin(); it != fibers.end(); ++it) {
    if (it->fiber_id == fiber_id_) {
      if (--it->depth == 0) fibers.erase(it);
      return;
    }
  }
}

}  // namespace v1
}  // namespace stallwatch
