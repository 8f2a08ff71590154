// find_culprit (src/emit/culprit.hpp): the first frame of the
// application, past the runtimes, stallwatch, and code from system include
// directories; the rules extended by Config::not_app; and its two renderings.
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <sys/auxv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/module_names.hpp"
#include "emit/culprit.hpp"
#include "symbolize/symbolizer.hpp"

namespace wd = stallwatch::emit;

namespace {

wd::Frame frame(std::string function, std::string file, int line, std::string module, bool inlined = false,
                std::string module_path = {}) {
  wd::Frame f;
  f.module_path = std::move(module_path);
  f.function = std::move(function);
  f.file = std::move(file);
  f.line = line;
  f.module = std::move(module);
  f.inlined = inlined;
  return f;
}

// A stall in std::future::get: the libc futex wait, libstdc++'s waiting
// function, the chain inlined from <future> into the application's
// function, then its caller.
std::vector<wd::Frame> future_get_stack() {
  return {
      frame("__futex_abstimed_wait_common64", "nptl/futex-internal.c", 57, "libc.so.6"),
      frame("std::__atomic_futex_unsigned_base::_M_futex_wait_until(...)", "", 0, "libstdc++.so.6"),
      frame("_M_load_and_test_until", "/usr/include/c++/12/bits/atomic_futex.h", 111, "app", true),
      frame("wait", "/usr/lib/gcc/x86_64-linux-gnu/12/include/future", 342, "app", true),
      frame("user_fn(std::future<int>&)", "/src/app.cpp", 123, "app"),
      frame("main", "/src/app.cpp", 200, "app"),
  };
}

}  // namespace

TEST_CASE("the culprit is the first frame past the runtimes and the system headers") {
  const auto frames = future_get_stack();
  const wd::Frame* culprit = wd::find_culprit(frames, wd::default_culprit_rules());
  REQUIRE(culprit != nullptr);
  CHECK(culprit == &frames[4]);
  CHECK(wd::culprit_text(culprit) == "user_fn(std::future<int>&) at /src/app.cpp:123");
}

TEST_CASE("stallwatch and its probes are not the application") {
  const std::vector<wd::Frame> frames = {
      frame("stallwatch_probe_record", "", 0, "libstallwatch.so.0"),
      frame("usleep", "", 0, "libstallwatch-probes.so.0"),
      frame("clock_gettime", "", 0, "linux-vdso.so.1"),
      frame("handler()", "/src/app.cpp", 9, "app"),
  };
  CHECK(wd::find_culprit(frames, wd::default_culprit_rules()) == &frames[3]);
}

TEST_CASE("a module is matched by its name or its name continued by '.'") {
  CHECK(stallwatch::config::module_matches("libc.so.6", "libc"));
  CHECK(stallwatch::config::module_matches("libc.so.6", "libc.so.6"));
  CHECK_FALSE(stallwatch::config::module_matches("libcurl.so.4", "libc"));
  CHECK_FALSE(stallwatch::config::module_matches("libstallwatch-probes.so.0", "libstallwatch"));
}

TEST_CASE("not_app entries extend the defaults by module and by path prefix") {
  // A libcurl of the service's own, outside the system library directories.
  const std::vector<wd::Frame> frames = {
      frame("Curl_poll", "", 0, "libcurl.so.4", false, "/opt/curl/lib/libcurl.so.4"),
      frame("vendor::wait()", "/opt/vendor/include/wait.h", 3, "app", true),
      frame("fetch()", "/src/fetch.cpp", 17, "app"),
  };
  CHECK(wd::find_culprit(frames, wd::default_culprit_rules()) == &frames[0]);
  const wd::CulpritRules rules = wd::culprit_rules({"libcurl", "/opt/vendor/"});
  CHECK(wd::find_culprit(frames, rules) == &frames[2]);
}

TEST_CASE("no application frame: null, said as such in text and JSON") {
  const std::vector<wd::Frame> frames = {frame("read", "", 0, "libc.so.6"), frame("??", "", 0, "")};
  const wd::Frame* culprit = wd::find_culprit(frames, wd::default_culprit_rules());
  CHECK(culprit == nullptr);
  CHECK(wd::culprit_text(culprit) == "(no application frame)");
  std::string json;
  wd::append_culprit_json(json, culprit);
  CHECK(json == ",\"culprit\":null");
}

TEST_CASE("a culprit in JSON carries function, file, line and module, escaped") {
  const wd::Frame f = frame("f<\"x\">()", "/src/a.cpp", 5, "app");
  std::string json;
  wd::append_culprit_json(json, &f);
  CHECK(json == ",\"culprit\":{\"function\":\"f<\\\"x\\\">()\",\"file\":\"/src/a.cpp\",\"line\":5,\"module\":\"app\"}");
  // Without a file, the text names the function alone.
  const wd::Frame bare = frame("g()", "", 0, "app");
  CHECK(wd::culprit_text(&bare) == "g()");
}

TEST_CASE("the system's shared libraries, the vDSO and stallwatch's installed headers are not the application") {
  // Before: libcurl and libsqlite3 were named as culprits by offset, the
  // vDSO as "[vdso: PID]+0x7bd", and a template from
  // <prefix>/include/stallwatch/loop.hpp as the application's line.
  const std::vector<wd::Frame> frames = {
      frame("", "", 0, "[vdso: 22234]"),
      frame("Curl_poll", "", 0, "libcurl.so.4.8.0", false, "/usr/lib/x86_64-linux-gnu/libcurl.so.4.8.0"),
      frame("sqlite3_step", "", 0, "libsqlite3.so.0", false, "/lib/x86_64-linux-gnu/libsqlite3.so.0"),
      frame("PQexec", "", 0, "libpq.so.5", false, "/usr/lib64/libpq.so.5"),
      frame("xmlParse", "", 0, "libxml2.so.2", false, "/lib64/libxml2.so.2"),
      frame("stallwatch::v1::detail::TaskImpl<...>::invoke()", "/home/u/.local/include/stallwatch/loop.hpp", 140,
            "app", true),
      frame("handler()", "/src/app.cpp", 9, "app", false, "/srv/app/bin/app"),
  };
  CHECK(wd::find_culprit(frames, wd::default_culprit_rules()) == &frames.back());
  // A library beside the program, or under /usr/local/lib, is the application's until not_app names it.
  const std::vector<wd::Frame> own = {frame("vendor_wait", "", 0, "libvendor.so.1", false, "/usr/local/lib/libvendor.so.1")};
  CHECK(wd::find_culprit(own, wd::default_culprit_rules()) == &own[0]);
}

namespace {

// The frames the real symbolizer gives for pc, in whichever module maps it
// (a new symbolizer: it reads the mappings, libraries just loaded included).
std::vector<wd::Frame> symbolized(std::uintptr_t pc) {
  stallwatch::symbolize::Symbolizer symbolizer;
  return symbolizer.symbolize(pc, false);
}

}  // namespace

TEST_CASE("real system libraries and the real vDSO, as the symbolizer names them, are passed over") {
  // libdw is linked into every stallwatch program (under the multiarch directory).
  const auto libdw = symbolized(reinterpret_cast<std::uintptr_t>(&dwfl_begin) + 4);
  INFO("libdw: " << libdw.back().module_path);
  CHECK(libdw.back().module.starts_with("libdw"));
  CHECK(wd::find_culprit(libdw, wd::default_culprit_rules()) == nullptr);
  // libcurl and libsqlite3, when installed (scripts/install-deps.sh test).
  for (const std::string library : {"libcurl.so.4", "libsqlite3.so.0"}) {
    void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      MESSAGE(library << " is not installed: skipped");
      continue;
    }
    void* symbol = dlsym(handle, library == "libcurl.so.4" ? "curl_easy_perform" : "sqlite3_step");
    REQUIRE(symbol != nullptr);
    const auto frames = symbolized(reinterpret_cast<std::uintptr_t>(symbol) + 4);
    INFO(library << ": " << frames.back().module << " at " << frames.back().module_path);
    CHECK(frames.back().module.starts_with(library.substr(0, library.find('.'))));
    CHECK(wd::find_culprit(frames, wd::default_culprit_rules()) == nullptr);
  }
  // The vDSO, which libdw names "[vdso: PID]".
  const auto vdso = getauxval(AT_SYSINFO_EHDR);
  REQUIRE(vdso != 0);
  const auto frames = symbolized(static_cast<std::uintptr_t>(vdso) + 0x700);
  INFO("vdso: " << frames.back().module);
  CHECK(frames.back().module.starts_with("[vdso"));
  CHECK(wd::find_culprit(frames, wd::default_culprit_rules()) == nullptr);
}
