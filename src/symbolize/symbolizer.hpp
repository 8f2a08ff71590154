// Turns program counters into function, file:line, module+offset and
// build-id, with libdw over the process's own mappings and DWARF. Reads the
// ELF symbol tables too, so executables linked without -rdynamic still get
// names. One thread at a time (the watchdog's, or the blocking-call report
// writer's, under a lock): not thread-safe; caches every
// answer. NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace stallwatch::symbolize {

struct Frame {
  std::uintptr_t pc = 0;
  std::string function;          // demangled; empty when no symbol covers pc
  std::string file;              // source file, empty without debug info
  int line = 0;                  // 0 without debug info
  std::string module;            // file name of the mapped object, e.g. "libc.so.6"
  std::string module_path;       // its path as mapped, e.g. "/usr/lib/x86_64-linux-gnu/libc.so.6"
  std::uintptr_t module_offset = 0;
  std::string build_id;          // hex, empty when the object has none
  bool inlined = false;          // an inlined call inside the next frame (same pc)

  // The frame as one profile entry: function, else module+offset.
  std::string short_name() const;
};

class Symbolizer {
 public:
  Symbolizer();
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // The frames at pc, innermost first: the functions inlined at pc (each with
  // the file:line inside it), then the function that holds the code, at the
  // line that calls the outermost inline — frame for frame what
  // `addr2line -f -i -C` prints for the same address (names included; file
  // names normalised). return_address: pc is where a call returns to, so the
  // call itself (pc - 1) is looked up; false for the interrupted instruction
  // of frame #0. Never empty.
  const std::vector<Frame>& symbolize(std::uintptr_t pc, bool return_address);

  // The start addresses of the mapped modules, and loading one module's
  // symbol table and debug info now, so the first report does not pay for
  // it. Separate steps, so a caller can let others use the symbolizer
  // between modules.
  std::vector<std::uintptr_t> module_starts();
  void warm_up_module(std::uintptr_t start);

 private:
  struct DwflHandle;
  bool report_mappings();
  std::vector<Frame> resolve(std::uintptr_t pc, std::uintptr_t lookup);

  std::unique_ptr<DwflHandle> dwfl_;
  std::unordered_map<std::uintptr_t, std::vector<Frame>> cache_;  // key: lookup address
  std::uint64_t last_report_ns_ = 0;
};

// path joined to comp_dir when relative, then "/a/b/../c.cpp" → "/a/c.cpp".
std::string normalize_path(const std::string& comp_dir, const std::string& path);

}  // namespace stallwatch::symbolize
