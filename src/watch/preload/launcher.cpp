// stallwatch-watch: runs a program with its event loops watched, as heaptrack
// or valgrind run theirs: sets LD_PRELOAD to libstallwatch-watch.so and the
// STALLWATCH_* variables the options name, then execs the program in place
// (same pid, same exit status).
//
//   stallwatch-watch [--threshold-ms N] [--json] [--metrics-addr A] -- CMD ARGS...
#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include "stallwatch/config.hpp"

namespace {

constexpr const char* usage =
    "usage: stallwatch-watch [--threshold-ms N] [--json] [--metrics-addr HOST:PORT|off] -- CMD [ARGS...]\n"
    "Runs CMD with its epoll/poll/select loops watched by stallwatch (LD_PRELOAD=libstallwatch-watch.so):\n"
    "a slice of a loop longer than the threshold is reported on stderr, with its stack.\n"
    "  --threshold-ms N   report slices longer than N ms (1-600000; STALLWATCH_THRESHOLD_MS, default 50)\n"
    "  --json             reports as JSON lines (STALLWATCH_LOG_FORMAT=json)\n"
    "  --metrics-addr A   serve /metrics at A, or off (STALLWATCH_METRICS_ADDR, default 127.0.0.1:9464)\n"
    "Other STALLWATCH_* variables (STALLWATCH_STRICT, STALLWATCH_REPORTS_PER_MINUTE ...) pass through.\n";

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "stallwatch-watch: %s\n%s", message.c_str(), usage);
  std::exit(2);
}

// The preload library: beside this program (the build tree), else where
// meson installed it.
std::string watch_library() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.resize(dir.rfind('/') + 1);
    const std::string beside = dir + "libstallwatch-watch.so";
    if (access(beside.c_str(), R_OK) == 0) return beside;
  }
  return STALLWATCH_WATCH_LIBRARY;
}

// CMD as execvp would find it, or empty.
std::string find_program(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return cmd;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    const std::size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + cmd;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// An ELF executable without a program interpreter is linked statically:
// the dynamic loader, and so LD_PRELOAD, never runs in it.
bool statically_linked(const std::string& file) {
  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  Elf64_Ehdr eh{};
  bool is_static = false;
  if (pread(fd, &eh, sizeof eh, 0) == static_cast<ssize_t>(sizeof eh) && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
      eh.e_ident[EI_CLASS] == ELFCLASS64) {
    is_static = true;
    for (int i = 0; i < eh.e_phnum; ++i) {
      Elf64_Phdr ph{};
      if (pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * eh.e_phentsize)) != static_cast<ssize_t>(sizeof ph)) {
        is_static = false;
        break;
      }
      if (ph.p_type == PT_INTERP) {
        is_static = false;
        break;
      }
    }
  }
  close(fd);
  return is_static;
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (arg == "--json") {
      setenv("STALLWATCH_LOG_FORMAT", "json", 1);
    } else if (arg == "--threshold-ms" || arg == "--metrics-addr") {
      if (i + 1 >= argc) fail("option " + std::string(arg) + " needs a value");
      setenv(arg == "--threshold-ms" ? "STALLWATCH_THRESHOLD_MS" : "STALLWATCH_METRICS_ADDR", argv[++i], 1);
    } else if (arg.starts_with("--threshold-ms=") || arg.starts_with("--metrics-addr=")) {
      const std::size_t eq = arg.find('=');
      setenv(arg.starts_with("--threshold-ms") ? "STALLWATCH_THRESHOLD_MS" : "STALLWATCH_METRICS_ADDR",
             std::string(arg.substr(eq + 1)).c_str(), 1);
    } else if (arg.starts_with("-")) {
      fail("unknown option " + std::string(arg));
    } else {
      break;  // CMD without "--"
    }
  }
  if (i >= argc) fail("no command to run");

  // Every variable checked now, with the library's own grammar and words,
  // rather than by a line from inside the program.
  try {
    (void)stallwatch::resolve_config(stallwatch::Options{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }

  const std::string library = watch_library();
  if (access(library.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "stallwatch-watch: cannot read %s: %s\n", library.c_str(), std::strerror(errno));
    return 2;
  }
  const char* old = std::getenv("LD_PRELOAD");
  // After what is there: a sanitizer's runtime must stay first.
  const std::string preload = old != nullptr && *old != '\0' ? std::string(old) + ":" + library : library;
  setenv("LD_PRELOAD", preload.c_str(), 1);

  const std::string program = find_program(argv[i]);
  if (!program.empty() && statically_linked(program)) {
    std::fprintf(stderr,
                 "stallwatch-watch: %s is linked statically, so LD_PRELOAD cannot reach its waits: running it "
                 "unwatched\n",
                 argv[i]);
  }
  execvp(argv[i], argv + i);
  const int error = errno;
  std::fprintf(stderr, "stallwatch-watch: cannot run %s: %s\n", argv[i], std::strerror(error));
  return error == ENOENT ? 127 : 126;
}
