// bench/driver.cpp — runs every case on every implementation, each in its own
// child process, and prints the tables as Markdown (docs/BENCHMARKS.md quotes
// them). Cases of one kind run back to back across the implementations, so
// the machine's load drifts as little as possible between the columns.
//
//   stallwatch-bench [--quick | --cross-only]
//
// --quick runs every case with small sizes: a smoke test, not a measurement.
// --cross-only runs only the crossing-threads table (posts, submit, channels).
// Exits 1 when a case failed to run (a missed target is not a failure).
#include <spawn.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"

extern char** environ;

namespace {

struct Impl {
  const char* key;
  const char* title;
};

// Column order of the scheduler table.
constexpr Impl impls[] = {
    {"context", "Boost.Context (raw)"},
    {"fiber", "Boost.Fiber"},
    {"stallwatch", "stallwatch"},
};

// Column order of the crossing-threads table: Go's child is built only when
// the go tool is installed (golang-go).
constexpr Impl cross_impls[] = {
    {"fiber", "Boost.Fiber"},
    {"stallwatch", "stallwatch"},
    {"go", "Go (GOMAXPROCS=2)"},
};

struct Outcome {
  enum class Status { ok, unsupported, failed };
  Status status = Status::ok;
  std::vector<double> samples;
  long peak_rss_kib = -1;
  std::string error;
};

struct Summary {
  Outcome::Status status = Outcome::Status::unsupported;
  double median = 0;
  double min = 0;
  double rss_mib = 0;  // median peak RSS over the processes
  std::string error;
  bool ok() const { return status == Outcome::Status::ok; }
};

std::string exe_dir() {
  char buf[4096];
  ssize_t len = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (len <= 0) return ".";
  std::string path(buf, static_cast<std::size_t>(len));
  return path.substr(0, path.rfind('/'));
}

std::string slurp(FILE* f) {
  std::string text;
  std::rewind(f);
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
  return text;
}

std::string first_line(const std::string& text) {
  auto end = text.find('\n');
  return text.substr(0, end == std::string::npos ? text.size() : end);
}

// Starts `<impl>-bench <case> <n> <reps>`, waits for it and parses its output.
Outcome run_child(const Impl& impl, const std::string& case_name, std::uint64_t n, int reps) {
  Outcome outcome;
  std::string exe = exe_dir() + "/stallwatch-bench-" + impl.key;
  std::string n_arg = std::to_string(n);
  std::string reps_arg = std::to_string(reps);
  if (access(exe.c_str(), X_OK) != 0) {
    outcome.status = Outcome::Status::failed;
    outcome.error = "skipped: " + exe + " not built";
    return outcome;
  }
  char* argv[] = {exe.data(), const_cast<char*>(case_name.c_str()), n_arg.data(), reps_arg.data(), nullptr};

  FILE* out = std::tmpfile();
  FILE* err = std::tmpfile();
  if (out == nullptr || err == nullptr) {
    std::perror("stallwatch-bench: tmpfile");
    std::exit(1);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fileno(out), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fileno(err), STDERR_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    outcome.status = Outcome::Status::failed;
    outcome.error = "cannot start " + exe + ": " + std::strerror(rc);
    std::fclose(out);
    std::fclose(err);
    return outcome;
  }
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }

  std::string text = slurp(out);
  std::string errors = slurp(err);
  std::fclose(out);
  std::fclose(err);

  if (WIFEXITED(status) && WEXITSTATUS(status) == bench::exit_unsupported) {
    outcome.status = Outcome::Status::unsupported;
    return outcome;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    outcome.status = Outcome::Status::failed;
    outcome.error = WIFSIGNALED(status) ? std::string("killed by ") + strsignal(WTERMSIG(status))
                                        : "exit " + std::to_string(WEXITSTATUS(status));
    if (!errors.empty()) outcome.error += ": " + first_line(errors);
    return outcome;
  }
  outcome.peak_rss_kib = usage.ru_maxrss;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::string line = first_line(text.substr(pos));
    pos += line.size() + 1;
    if (line.rfind("peak_rss_kib ", 0) == 0) {
      outcome.peak_rss_kib = std::strtol(line.c_str() + 13, nullptr, 10);
    } else if (!line.empty()) {
      outcome.samples.push_back(std::strtod(line.c_str(), nullptr));
    }
  }
  return outcome;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t mid = v.size() / 2;
  return v.size() % 2 == 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

// One implementation's samples of one case, gathered over several processes.
struct Samples {
  std::vector<double> values;
  std::vector<double> rss_mib;
  std::optional<Summary> failure;  // set by the first process that failed (or a skip)
};

void add_process(Samples& into, const Impl& impl, const std::string& case_name, std::uint64_t n, int reps) {
  if (into.failure) return;
  Outcome o = run_child(impl, case_name, n, reps);
  if (o.status != Outcome::Status::ok) {
    Summary failed;
    failed.status = o.status;
    failed.error = o.error;
    into.failure = failed;
    return;
  }
  into.values.insert(into.values.end(), o.samples.begin(), o.samples.end());
  into.rss_mib.push_back(static_cast<double>(o.peak_rss_kib) / 1024.0);
}

Summary summarize(const Samples& samples) {
  if (samples.failure) return *samples.failure;
  Summary summary;
  if (samples.values.empty()) {
    summary.status = Outcome::Status::failed;
    summary.error = "no samples";
    return summary;
  }
  summary.status = Outcome::Status::ok;
  summary.median = median_of(samples.values);
  summary.min = *std::min_element(samples.values.begin(), samples.values.end());
  summary.rss_mib = median_of(samples.rss_mib);
  return summary;
}

struct CaseSpec {
  std::string name;   // the child's case
  std::string title;  // the table's row
  std::string unit;
  std::uint64_t n;
  int reps;
  int processes;
  bool memory;  // also show peak RSS
};

struct Row {
  CaseSpec spec;
  std::vector<Summary> cells;  // one per impl
};

std::string cell_text(const Summary& s, bool rss) {
  char buf[128];
  switch (s.status) {
    case Outcome::Status::unsupported:
      return "n/a";
    case Outcome::Status::failed:
      return s.error.rfind("skipped", 0) == 0 ? s.error : "failed (" + s.error + ")";
    case Outcome::Status::ok:
      break;
  }
  if (rss) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", s.rss_mib);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f (min %.1f)", s.median, s.min);
  }
  return buf;
}

void print_machine() {
  struct utsname u {};
  uname(&u);
  std::string model = "unknown";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::strncmp(line, "model name", 10) == 0) {
        const char* colon = std::strchr(line, ':');
        model = colon != nullptr ? colon + 2 : line;
        model = first_line(model);
        break;
      }
    }
    std::fclose(f);
  }
  std::printf("Machine: %ld CPUs (nproc), %s, kernel %s %s\n\n", sysconf(_SC_NPROCESSORS_ONLN), model.c_str(), u.sysname,
              u.release);
}

std::string loadavg() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "unknown";
  char buf[128] = {};
  if (std::fgets(buf, sizeof buf, f) == nullptr) buf[0] = '\0';
  std::fclose(f);
  std::string s = first_line(buf);
  // The first three fields: 1, 5 and 15 minute averages.
  std::size_t cut = 0;
  for (int i = 0; i < 3 && cut != std::string::npos; ++i) cut = s.find(' ', cut + 1);
  return s.substr(0, cut);
}

const Summary& cell(const std::vector<Row>& rows, const std::string& name, std::uint64_t n, const char* impl) {
  for (const auto& row : rows) {
    if (row.spec.name != name || row.spec.n != n) continue;
    for (std::size_t i = 0; i < std::size(impls); ++i) {
      if (std::strcmp(impls[i].key, impl) == 0) return row.cells[i];
    }
  }
  static const Summary missing;
  return missing;
}

// One line of the targets table. ratio = numerator / denominator; met when
// it is on the right side of the limit.
void print_ratio(const char* target, const char* how, const Summary& num, const Summary& den, bool use_rss, double limit,
                 bool at_most) {
  if (!num.ok() || !den.ok()) {
    std::printf("| %s | %s | not measured | not measured |\n", target, how);
    return;
  }
  double a = use_rss ? num.rss_mib : num.median;
  double b = use_rss ? den.rss_mib : den.median;
  double ratio = a / b;
  bool met = at_most ? ratio <= limit : ratio >= limit;
  std::printf("| %s | %s | %.2f | %s |\n", target, how, ratio, met ? "met" : "**missed**");
}

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

double mem_available_mib() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  char line[256];
  double mib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "MemAvailable:", 13) == 0) mib = std::strtod(line + 13, nullptr) / 1024.0;
  }
  std::fclose(f);
  return mib;
}

// The machine is shared: a memory case whose smaller run, scaled up, would
// take more than half of the memory available now is skipped, not run into
// the OOM killer. Returns why, or nothing when the case may run.
std::optional<std::string> too_big_for_this_machine(const std::vector<Row>& done, const CaseSpec& spec, std::size_t impl) {
  if (!spec.memory) return std::nullopt;
  for (const auto& row : done) {
    if (row.spec.name != spec.name || !row.spec.memory || row.spec.n >= spec.n || !row.cells[impl].ok()) continue;
    double projected = row.cells[impl].rss_mib * static_cast<double>(spec.n) / static_cast<double>(row.spec.n);
    double available = mem_available_mib();
    if (projected > available / 2) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "skipped: projected %.1f GiB from the %s run, more than half of the %.1f GiB available",
                    projected / 1024, with_commas(row.spec.n).c_str(), available / 1024);
      return buf;
    }
  }
  return std::nullopt;
}

// Work crossing loops and threads: posts into a loop, submit round trips,
// and a channel between two threads against Boost.Fiber and Go. Returns
// false when a case failed to run.
bool run_cross_threads(std::uint64_t scale) {
  const std::vector<CaseSpec> specs = {
      {"post_1", "post into one loop, 1 producer thread", "items/s", 1'000'000 / scale, 3, 3, false},
      {"post_4", "post into one loop, 4 producer threads", "items/s", 1'000'000 / scale, 3, 3, false},
      {"submit_p50", "submit round trip between two loops, p50", "µs", 20'000 / scale, 3, 3, false},
      {"submit_p99", "submit round trip between two loops, p99", "µs", 20'000 / scale, 3, 3, false},
      {"channel_2loops", "channel of 1024 between two threads' fibers", "items/s", 2'000'000 / scale, 3, 5, false},
  };
  std::vector<Row> rows;
  for (const auto& spec : specs) {
    std::vector<Samples> gathered(std::size(cross_impls));
    for (int round = 0; round < spec.processes; ++round) {
      for (std::size_t i = 0; i < std::size(cross_impls); ++i) {
        std::fprintf(stderr, "stallwatch-bench: %s: %s (process %d of %d) ...\n", spec.title.c_str(),
                     cross_impls[i].title, round + 1, spec.processes);
        add_process(gathered[i], cross_impls[i], spec.name, spec.n, spec.reps);
      }
    }
    Row row{spec, {}};
    for (const auto& samples : gathered) row.cells.push_back(summarize(samples));
    rows.push_back(row);
  }

  std::printf("Crossing threads (wall clock; throughput: median items/s, min is the slowest repetition;\n"
              "round trips: the median over repetitions of each repetition's percentile):\n\n| case | unit |");
  for (const auto& impl : cross_impls) std::printf(" %s |", impl.title);
  std::printf("\n|---|---|");
  for (std::size_t i = 0; i < std::size(cross_impls); ++i) std::printf("---|");
  std::printf("\n");
  bool failed = false;
  for (const auto& row : rows) {
    std::printf("| %s | %s |", row.spec.title.c_str(), row.spec.unit.c_str());
    for (const auto& c : row.cells) {
      std::printf(" %s |", cell_text(c, false).c_str());
      failed = failed || (c.status == Outcome::Status::failed && c.error.rfind("skipped", 0) != 0);
    }
    std::printf("\n");
  }
  const Row& channel = rows.back();
  std::printf("\nTargets (ratios of medians):\n\n| target | ratio | value | result |\n|---|---|---|---|\n");
  print_ratio("channel: at least Boost.Fiber's throughput", "stallwatch / Boost.Fiber", channel.cells[1],
              channel.cells[0], false, 1.0, false);
  print_ratio("channel: within 1.5× of Go's throughput", "Go / stallwatch", channel.cells[2], channel.cells[1], false,
              1.5, true);
  std::printf("\n");
  return !failed;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && std::strcmp(argv[1], "--cross-only") == 0) {
    setenv("STALLWATCH_METRICS_ADDR", "off", 1);
    unsetenv("STALLWATCH_WATCHDOG");
    print_machine();
    std::printf("Load average before: %s\n\n", loadavg().c_str());
    const bool ok = run_cross_threads(1);
    std::printf("Load average after: %s\n", loadavg().c_str());
    return ok ? 0 : 1;
  }
  // Children inherit the environment: no metrics endpoint, and no
  // STALLWATCH_WATCHDOG, which would override the Options the cases set.
  setenv("STALLWATCH_METRICS_ADDR", "off", 1);
  unsetenv("STALLWATCH_WATCHDOG");

  const std::uint64_t scale = quick ? 100 : 1;
  const std::vector<CaseSpec> specs = {
      {"pingpong", "yield ping-pong, 2 fibers", "ns/yield", 2'000'000 / scale, 3, 5, false},
      {"pingpong_2fn", "yield ping-pong, 2 fibers in different functions", "ns/yield", 2'000'000 / scale, 3, 5, false},
      {"yield_1000", "yield among 1,000 fibers", "ns/yield", 2'000'000 / scale, 3, 5, false},
      {"spawn_join", "spawn+join, one at a time", "ns/fiber", 200'000 / scale, 3, 5, false},
      {"in_thread", "in_thread round trip", "ns/call", 50'000 / scale, 3, 3, false},
      {"sync_fast_path", "Semaphore/Mutex uncontended (owner check included)", "ns/pair", 10'000'000 / scale, 3, 3, false},
      {"parked", with_commas(100'000 / scale) + " parked fibers", "CPU ms to park all", 100'000 / scale, 1, 3, true},
      {"parked", with_commas(1'000'000 / scale) + " parked fibers", "CPU ms to park all", 1'000'000 / scale, 1, 1, true},
  };

  print_machine();
  std::printf("Load average before: %s\n\n", loadavg().c_str());
  std::printf("Median over repetitions (min in brackets). Times are the measuring thread's CPU time\n"
              "(CLOCK_THREAD_CPUTIME_ID), so other processes on this shared machine do not count;\n"
              "in_thread is wall-clock time, because it waits for another thread.\n\n");

  // The implementations take turns, one process each per round, so that a
  // slow spell of this shared machine (it comes and goes for seconds at a
  // time) hits all three alike.
  std::vector<Row> rows;
  for (const auto& spec : specs) {
    std::vector<Samples> gathered(std::size(impls));
    for (std::size_t i = 0; i < std::size(impls); ++i) {
      if (auto reason = too_big_for_this_machine(rows, spec, i)) {
        Summary skipped;
        skipped.status = Outcome::Status::failed;
        skipped.error = *reason;
        gathered[i].failure = skipped;
      }
    }
    for (int round = 0; round < spec.processes; ++round) {
      for (std::size_t i = 0; i < std::size(impls); ++i) {
        std::fprintf(stderr, "stallwatch-bench: %s: %s (process %d of %d) ...\n", spec.title.c_str(), impls[i].title,
                     round + 1, spec.processes);
        add_process(gathered[i], impls[i], spec.name, spec.n, spec.reps);
      }
    }
    Row row{spec, {}};
    for (const auto& samples : gathered) row.cells.push_back(summarize(samples));
    rows.push_back(row);
  }

  // The watchdog's cost: the same ping-pong with it on and off, in
  // alternating processes so that drift in load hits both alike.
  const Impl& sw = impls[2];
  const int pairs = quick ? 1 : 5;
  std::vector<double> on_samples;
  std::vector<double> off_samples;
  std::string watchdog_error;
  for (int p = 0; p < pairs && watchdog_error.empty(); ++p) {
    std::fprintf(stderr, "stallwatch-bench: watchdog on/off pair %d of %d ...\n", p + 1, pairs);
    for (const char* name : {"pingpong", "pingpong_watchdog_off"}) {
      Outcome o = run_child(sw, name, 2'000'000 / scale, 5);
      if (o.status != Outcome::Status::ok) {
        watchdog_error = std::string(name) + ": " + (o.error.empty() ? "n/a" : o.error);
        break;
      }
      auto& into = std::strcmp(name, "pingpong") == 0 ? on_samples : off_samples;
      into.insert(into.end(), o.samples.begin(), o.samples.end());
    }
  }

  std::printf("| case | unit |");
  for (const auto& impl : impls) std::printf(" %s |", impl.title);
  std::printf("\n|---|---|");
  for (std::size_t i = 0; i < std::size(impls); ++i) std::printf("---|");
  std::printf("\n");
  for (const auto& row : rows) {
    std::printf("| %s | %s |", row.spec.title.c_str(), row.spec.unit.c_str());
    for (const auto& c : row.cells) std::printf(" %s |", cell_text(c, false).c_str());
    std::printf("\n");
    if (row.spec.memory) {
      std::printf("| %s | peak RSS |", row.spec.title.c_str());
      for (const auto& c : row.cells) std::printf(" %s |", cell_text(c, true).c_str());
      std::printf("\n");
    }
  }

  std::printf("\nWatchdog overhead (stallwatch yield ping-pong, %d alternating process pairs, 5 reps each):\n\n", pairs);
  Summary on;
  Summary off;
  if (watchdog_error.empty() && !on_samples.empty() && !off_samples.empty()) {
    on.status = off.status = Outcome::Status::ok;
    on.median = median_of(on_samples);
    off.median = median_of(off_samples);
    on.min = *std::min_element(on_samples.begin(), on_samples.end());
    off.min = *std::min_element(off_samples.begin(), off_samples.end());
    std::printf("| watchdog | ns/yield |\n|---|---|\n| on | %.2f (min %.2f) |\n| off | %.2f (min %.2f) |\n\n", on.median,
                on.min, off.median, off.min);
  } else {
    on.status = off.status = Outcome::Status::failed;
    std::printf("not measured: %s\n\n", watchdog_error.c_str());
  }

  const std::uint64_t pp = 2'000'000 / scale;
  const std::uint64_t sj = 200'000 / scale;
  std::printf("Targets (ratios of medians):\n\n| target | ratio | value | result |\n|---|---|---|---|\n");
  print_ratio("yield ≤ 2× raw Boost.Context switch", "stallwatch / raw", cell(rows, "pingpong", pp, "stallwatch"),
              cell(rows, "pingpong", pp, "context"), false, 2.0, true);
  print_ratio("yield ≥ 3× faster than Boost.Fiber", "Boost.Fiber / stallwatch", cell(rows, "pingpong", pp, "fiber"),
              cell(rows, "pingpong", pp, "stallwatch"), false, 3.0, false);
  print_ratio("spawn+join ≥ 3× faster than Boost.Fiber", "Boost.Fiber / stallwatch", cell(rows, "spawn_join", sj, "fiber"),
              cell(rows, "spawn_join", sj, "stallwatch"), false, 3.0, false);
  print_ratio("100,000 parked fibers: peak RSS ≤ ¼ of Boost.Fiber", "stallwatch / Boost.Fiber", cell(rows, "parked", 100'000 / scale, "stallwatch"),
              cell(rows, "parked", 100'000 / scale, "fiber"), true, 0.25, true);
  const Summary& million = cell(rows, "parked", 1'000'000 / scale, "stallwatch");
  std::printf("| 1,000,000 parked fibers run | - | %s | %s |\n", million.ok() ? "ran" : million.error.c_str(),
              million.ok() ? "met" : "**missed**");
  print_ratio("watchdog on / off ≤ 1.02", "on / off", on, off, false, 1.02, true);

  std::printf("\n");
  const bool cross_ok = run_cross_threads(scale);

  std::printf("Load average after: %s\n", loadavg().c_str());

  bool failed = !watchdog_error.empty() || !cross_ok;
  for (const auto& row : rows) {
    for (const auto& c : row.cells) {
      failed = failed || (c.status == Outcome::Status::failed && c.error.rfind("skipped", 0) != 0);
    }
  }
  return failed ? 1 : 0;
}
