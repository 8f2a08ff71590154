// The symbolizer against addr2line: every pc of stacks captured inside deep
// inline chains (std::future::get, std::lock_guard, std::sort with a lambda
// comparator, a ranges pipeline) must symbolize frame for frame as
// `addr2line -f -i -C -e <module> <address>` prints it, run as a real child
// process per address. The chains are built -O2 -g into this program (built
// twice, PIE and not, SYMBOLIZER_TEST_PIE saying which; linked without
// -rdynamic) and into libinline_chains.so
// (tests/symbolizer/inline_chains.cpp); INLINE_CHAINS_SOURCE names the
// source, whose `// LINE:<name>` markers give the expected caller lines.
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "capture_thread.hpp"
#include "symbolizer/inline_chains.hpp"
#include "watchdog/backtrace.hpp"
#include "watchdog/capture_signal.hpp"
#include "symbolize/symbolizer.hpp"

namespace wd = stallwatch::watchdog;
using namespace std::chrono_literals;

namespace {

// One pc of a captured stack: frame #0 of a signal capture is the interrupted
// instruction, every other pc a return address.
struct Pc {
  std::uintptr_t pc;
  bool return_address;
};

// The file and load address of the object holding addr.
struct Module {
  std::string path;
  std::uintptr_t load_address = 0;
};

Module module_of(std::uintptr_t addr) {
  struct Search {
    std::uintptr_t addr;
    Module found;
  } search{addr, {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
          if (s->addr < lo || s->addr >= lo + ph.p_memsz) continue;
          s->found.path = info->dlpi_name != nullptr && info->dlpi_name[0] != '\0'
                              ? std::string(info->dlpi_name)
                              : std::filesystem::read_symlink("/proc/self/exe").string();
          s->found.load_address = info->dlpi_addr;
          return 1;
        }
        return 0;
      },
      &search);
  return search.found;
}

struct Expected {
  std::string function;
  std::string file;  // lexically normalised; empty for "??"
  int line = 0;
  bool operator==(const Expected&) const = default;
};

// doctest prints a char* as a pointer: strings go into messages as this.
doctest::String text(const std::string& s) { return s.c_str(); }

doctest::String toString(const std::vector<Expected>& frames) {
  std::string out;
  for (const Expected& f : frames) {
    out += "\n    " + f.function + " at " + (f.file.empty() ? "??" : f.file) + ":" + std::to_string(f.line);
  }
  return out.c_str();
}

std::string run(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  REQUIRE(pclose(pipe) == 0);
  return out;
}

// `addr2line -f -i -C` at the address looked up for pc, as (function,
// file, line) per frame: "(discriminator N)" dropped, "??:0" as no file.
std::vector<Expected> addr2line_frames(const Pc& p) {
  const std::uintptr_t lookup = p.return_address ? p.pc - 1 : p.pc;
  const Module m = module_of(lookup);
  REQUIRE(!m.path.empty());
  char address[32];
  std::snprintf(address, sizeof address, "0x%zx", static_cast<std::size_t>(lookup - m.load_address));
  const std::string out = run("addr2line -f -i -C -e '" + m.path + "' " + address);
  std::vector<Expected> frames;
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t fn_end = out.find('\n', pos);
    const std::size_t loc_end = out.find('\n', fn_end + 1);
    REQUIRE(loc_end != std::string::npos);
    Expected f;
    f.function = out.substr(pos, fn_end - pos);
    std::string location = out.substr(fn_end + 1, loc_end - fn_end - 1);
    if (const std::size_t d = location.find(" (discriminator"); d != std::string::npos) location.resize(d);
    const std::size_t colon = location.rfind(':');
    const std::string file = location.substr(0, colon);
    if (file != "??") f.file = std::filesystem::path(file).lexically_normal().string();
    f.line = f.file.empty() ? 0 : std::atoi(location.c_str() + colon + 1);
    frames.push_back(f);
    pos = loc_end + 1;
  }
  return frames;
}

stallwatch::symbolize::Symbolizer& symbolizer() {
  static stallwatch::symbolize::Symbolizer s;
  return s;
}

std::vector<Expected> stallwatch_frames(const Pc& p) {
  std::vector<Expected> frames;
  for (const stallwatch::symbolize::Frame& f : symbolizer().symbolize(p.pc, p.return_address)) {
    frames.push_back({f.function.empty() ? std::string("??") : f.function, f.file, f.file.empty() ? 0 : f.line});
  }
  return frames;
}

// Code built here (this program, libinline_chains.so), as opposed to the
// system's libraries.
bool built_here(const Pc& p) {
  const std::string path = module_of(p.return_address ? p.pc - 1 : p.pc).path;
  return path == std::filesystem::read_symlink("/proc/self/exe").string() ||
         path.ends_with("/libinline_chains.so");
}

// Every pc of the stack in code built here symbolizes as addr2line says;
// returns the frames of every pc. The system's libraries are left out of the
// comparison: there binutils 2.40's addr2line is itself wrong now and then
// (measured on Debian 12: without debug info it names the nearest preceding
// dynamic symbol even past that symbol's end; in glibc's DWARF 5 line
// tables it names the CU's primary file where the row names an included
// one, e.g. libc-start.c:58 for libc_start_call_main.h:58, which readelf
// --debug-dump=decodedline shows; at two symbols of one address it picks
// the other alias).
std::vector<stallwatch::symbolize::Frame> check_against_addr2line(const std::vector<Pc>& stack) {
  std::vector<stallwatch::symbolize::Frame> all;
  int compared = 0;
  for (const Pc& p : stack) {
    if (built_here(p)) {
      const std::vector<Expected> ours = stallwatch_frames(p);
      const std::vector<Expected> theirs = addr2line_frames(p);
      INFO("pc 0x" << std::hex << p.pc << " in " << text(module_of(p.pc).path));
      CHECK(ours == theirs);
      ++compared;
    }
    const auto& frames = symbolizer().symbolize(p.pc, p.return_address);
    all.insert(all.end(), frames.begin(), frames.end());
  }
  CHECK(compared >= 2);  // at least the chain's function and its caller
  return all;
}

// The line of `// LINE:<name>` in the chains' source.
int marker_line(const std::string& name) {
  const char* source = std::getenv("INLINE_CHAINS_SOURCE");
  REQUIRE(source != nullptr);
  std::ifstream in(source);
  std::string source_line;
  for (int n = 1; std::getline(in, source_line); ++n) {
    if (source_line.ends_with("// LINE:" + name)) return n;
  }
  FAIL("no marker LINE:" << text(name) << " in " << text(source));
  return 0;
}

// The frames of the first pc whose chain ends in a function named like
// `function` at the marker's line; checks that chain is inlined
// `min_inlined` levels deep, innermost first.
void check_chain(const std::vector<stallwatch::symbolize::Frame>& frames, const std::string& function, const std::string& marker,
                 int min_inlined) {
  const int line = marker_line(marker);
  int inlined_run = 0;
  for (const stallwatch::symbolize::Frame& f : frames) {
    if (f.inlined) {
      ++inlined_run;
      continue;
    }
    if (f.function.find(function) != std::string::npos && f.line == line &&
        f.file.ends_with("symbolizer/inline_chains.cpp")) {
      CHECK_MESSAGE(inlined_run >= min_inlined, text(function) << " has only " << inlined_run << " inlined levels");
      return;
    }
    inlined_run = 0;
  }
  std::string names;
  for (const stallwatch::symbolize::Frame& f : frames) names += "\n  " + f.function + " at " + f.file + ":" + std::to_string(f.line);
  FAIL("no frame " << text(function) << " at LINE:" << text(marker) << " (" << line << ") in" << text(names));
}

// libc's frames (the futex wait) get file:line from its separate debug info
// when /usr/lib/debug/.build-id holds it (Debian: libc6-dbg).
void check_separate_debug_info(const std::vector<stallwatch::symbolize::Frame>& frames) {
  for (const stallwatch::symbolize::Frame& f : frames) {
    if (!f.module.starts_with("libc.so") || f.build_id.size() < 3) continue;
    const std::string debug_file =
        "/usr/lib/debug/.build-id/" + f.build_id.substr(0, 2) + "/" + f.build_id.substr(2) + ".debug";
    if (!std::filesystem::exists(debug_file)) {
      MESSAGE("no " << text(debug_file) << " (libc6-dbg): separate debug info not checked");
      return;
    }
    CHECK_MESSAGE(!f.file.empty(),
                  text(f.function) << " in libc has no file:line although " << text(debug_file) << " is installed");
    return;
  }
  FAIL("no libc frame in the stack of a futex wait");
}

// ---- capturing inside the chains ----

thread_local std::vector<Pc>* probe_target = nullptr;

// Called from inside a comparator or a view: the stack from its caller out.
__attribute__((noinline)) void capture_probe() {
  if (probe_target == nullptr || !probe_target->empty()) return;
  void* pcs[64];
  const int n = wd::backtrace_here(pcs, 64);
  for (int i = 0; i < n; ++i) probe_target->push_back({reinterpret_cast<std::uintptr_t>(pcs[i]), true});
}

template <class F>
std::vector<Pc> probe_stack(F run_chain) {
  std::vector<Pc> stack;
  probe_target = &stack;
  run_chain();
  probe_target = nullptr;
  REQUIRE(!stack.empty());
  return stack;
}

// The stack of a thread blocked in body, captured by the watchdog's own
// signal handler once the thread waits in the kernel; then release() lets
// it finish.
template <class Body, class Release>
std::vector<Pc> blocked_stack(Body body, Release release) {
  wd::install_capture_handler(wd::default_capture_signal());
  std::vector<Pc> stack;
  stallwatch_test::CaptureThread thread(body);
  // Sleeping in the kernel: the wait has begun.
  const std::string stat = "/proc/self/task/" + std::to_string(thread.tid.load()) + "/stat";
  for (int i = 0; i < 500; ++i) {
    std::ifstream in(stat);
    std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (status.find(") S ") != std::string::npos) break;
    std::this_thread::sleep_for(2ms);
  }
  const bool captured = thread.capture();
  release();
  REQUIRE(captured);
  REQUIRE(thread.slot.outcome == wd::CaptureOutcome::captured);
  for (int i = 0; i < thread.slot.depth; ++i) stack.push_back({thread.slot.pcs[i], i > 0});
  return stack;
}

struct Chains {
  const char* where;
  int (*wait_for_future)(std::future<int>&);
  void (*lock_and_count)(std::mutex&, int&);
  void (*sort_descending)(std::vector<int>&, void (*)());
  long (*sum_odd_squares)(const std::vector<int>&, void (*)());
};

const Chains program{"program", in_program::wait_for_future, in_program::lock_and_count,
                     in_program::sort_descending, in_program::sum_odd_squares};
const Chains library{"library", in_library::wait_for_future, in_library::lock_and_count,
                     in_library::sort_descending, in_library::sum_odd_squares};

void check_all_chains(const Chains& c) {
  SUBCASE("std::future::get") {
    std::promise<int> promise;
    std::future<int> future = promise.get_future();
    int got = 0;
    const auto stack = blocked_stack([&] { got = c.wait_for_future(future); }, [&] { promise.set_value(42); });
    CHECK(got == 42);
    const std::vector<stallwatch::symbolize::Frame> frames = check_against_addr2line(stack);
    check_chain(frames, "wait_for_future", "future", 3);
    check_separate_debug_info(frames);
  }
  SUBCASE("std::lock_guard, contended") {
    std::mutex m;
    int counter = 0;
    m.lock();
    const auto stack = blocked_stack([&] { c.lock_and_count(m, counter); }, [&] { m.unlock(); });
    CHECK(counter == 1);
    check_chain(check_against_addr2line(stack), "lock_and_count", "lock_guard", 2);
  }
  SUBCASE("std::sort with a lambda comparator") {
    std::vector<int> v(40);
    std::iota(v.begin(), v.end(), 0);
    const auto stack = probe_stack([&] { c.sort_descending(v, capture_probe); });
    CHECK(v.front() == 39);
    check_chain(check_against_addr2line(stack), "sort_descending", "sort", 2);
  }
  SUBCASE("a ranges pipeline") {
    std::vector<int> v(10);
    std::iota(v.begin(), v.end(), 0);
    long sum = 0;
    const auto stack = probe_stack([&] { sum = c.sum_odd_squares(v, capture_probe); });
    CHECK(sum == 1 + 9 + 25 + 49 + 81);
    check_chain(check_against_addr2line(stack), "sum_odd_squares", "ranges", 3);
  }
}

}  // namespace

TEST_CASE("this program is built as meson says (PIE or not) and linked without -rdynamic") {
  const Module self = module_of(reinterpret_cast<std::uintptr_t>(&capture_probe));
  std::ifstream in(self.path, std::ios::binary);
  ElfW(Ehdr) header{};
  in.read(reinterpret_cast<char*>(&header), sizeof header);
  CHECK(header.e_type == (SYMBOLIZER_TEST_PIE ? ET_DYN : ET_EXEC));
  // Without -rdynamic its functions are not in the dynamic symbol table.
  CHECK(dlsym(RTLD_DEFAULT, "_ZN10in_program15wait_for_futureERSt6futureIiE") == nullptr);
  CHECK(dlsym(RTLD_DEFAULT, "_ZN10in_library15wait_for_futureERSt6futureIiE") != nullptr);
}

TEST_CASE("inline chains in the program symbolize as addr2line -f -i -C prints them") { check_all_chains(program); }

TEST_CASE("inline chains in a shared library symbolize as addr2line -f -i -C prints them") {
  check_all_chains(library);
}
