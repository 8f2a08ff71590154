// find_culprit (src/emit/culprit.hpp): the first frame of the
// application, past the runtimes, stallwatch, and code from system include
// directories; the rules extended by Config::not_app; and its two renderings.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "config/module_names.hpp"
#include "emit/culprit.hpp"

namespace wd = stallwatch::emit;

namespace {

wd::Frame frame(std::string function, std::string file, int line, std::string module, bool inlined = false) {
  wd::Frame f;
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
  const std::vector<wd::Frame> frames = {
      frame("Curl_poll", "", 0, "libcurl.so.4"),
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
