// resolve_config (include/stallwatch/config.hpp): each STALLWATCH_* variable
// valid and invalid, precedence environment > Options > default, and errors
// that name the variable (or field), the value and what is accepted.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <csignal>
#include <string>
#include <utility>
#include <vector>

#include "config/address.hpp"
#include "stallwatch/config.hpp"

namespace {

using stallwatch::Config;
using stallwatch::config_error;
using stallwatch::Options;
using stallwatch::resolve_config;

const char* const all_variables[] = {
    "STALLWATCH_WATCHDOG",   "STALLWATCH_THRESHOLD_MS", "STALLWATCH_REPORTS_PER_MINUTE", "STALLWATCH_LOG_FORMAT",
    "STALLWATCH_METRICS_ADDR", "STALLWATCH_STRICT",     "STALLWATCH_STACK_KB",           "STALLWATCH_SIGNAL",
    "STALLWATCH_NOT_APP",    "STALLWATCH_SCHED_BATCH",
};

// Clears every STALLWATCH_* variable for the test and again after it (the
// test runner sets STALLWATCH_METRICS_ADDR=off; it is restored).
class CleanEnvironment {
 public:
  CleanEnvironment() {
    if (const char* addr = ::getenv("STALLWATCH_METRICS_ADDR")) saved_addr_ = addr, had_addr_ = true;
    clear();
  }
  ~CleanEnvironment() {
    clear();
    if (had_addr_) ::setenv("STALLWATCH_METRICS_ADDR", saved_addr_.c_str(), 1);
  }
  CleanEnvironment(const CleanEnvironment&) = delete;
  CleanEnvironment& operator=(const CleanEnvironment&) = delete;

  void set(const char* name, const char* value) { ::setenv(name, value, 1); }

 private:
  static void clear() {
    for (const char* name : all_variables) ::unsetenv(name);
  }
  std::string saved_addr_;
  bool had_addr_ = false;
};

// The message of the config_error resolve_config throws, or "" if none.
std::string error_of(const Options& options = {}) {
  try {
    resolve_config(options);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

std::string env_error(CleanEnvironment& env, const char* name, const char* value) {
  env.set(name, value);
  std::string message = error_of();
  ::unsetenv(name);
  return message;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("defaults match DESIGN.md") {
  CleanEnvironment env;
  const Config c = resolve_config({});
  CHECK(c.watchdog);
  CHECK(c.threshold == std::chrono::milliseconds(50));
  CHECK(c.reports_per_minute == 10);
  CHECK(c.log_format == stallwatch::log_format::text);
  CHECK(c.metrics_addr == "127.0.0.1:9464");
  CHECK_FALSE(c.strict);
  CHECK(c.stack_kb == 64);
  CHECK(c.capture_signal == 0);  // auto: chosen when the first loop starts
  CHECK(c.capture_signal_setting.empty());
  CHECK_FALSE(c.sched_batch);
}

TEST_CASE("the documented error format") {
  CleanEnvironment env;
  CHECK(env_error(env, "STALLWATCH_THRESHOLD_MS", "abc") ==
        "stallwatch: STALLWATCH_THRESHOLD_MS=\"abc\" is not valid: expected an integer from 1 to 600000");
}

TEST_CASE("STALLWATCH_WATCHDOG") {
  CleanEnvironment env;
  env.set("STALLWATCH_WATCHDOG", "off");
  CHECK_FALSE(resolve_config({}).watchdog);
  env.set("STALLWATCH_WATCHDOG", "on");
  Options options;
  options.watchdog = false;
  CHECK(resolve_config(options).watchdog);
  for (const char* bad : {"", "yes", "1", "ON", "on "}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_WATCHDOG", bad);
    CHECK(contains(message, "STALLWATCH_WATCHDOG=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "expected on or off"));
  }
}

TEST_CASE("STALLWATCH_THRESHOLD_MS") {
  CleanEnvironment env;
  env.set("STALLWATCH_THRESHOLD_MS", "1");
  CHECK(resolve_config({}).threshold == std::chrono::milliseconds(1));
  env.set("STALLWATCH_THRESHOLD_MS", "600000");
  CHECK(resolve_config({}).threshold == std::chrono::milliseconds(600000));
  for (const char* bad : {"0", "600001", "-5", "+5", "50ms", " 50", "50 ", "", "5.0", "99999999999999999999999"}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_THRESHOLD_MS", bad);
    CHECK(contains(message, "STALLWATCH_THRESHOLD_MS=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "an integer from 1 to 600000"));
  }
}

TEST_CASE("STALLWATCH_REPORTS_PER_MINUTE") {
  CleanEnvironment env;
  env.set("STALLWATCH_REPORTS_PER_MINUTE", "0");
  CHECK(resolve_config({}).reports_per_minute == 0);
  env.set("STALLWATCH_REPORTS_PER_MINUTE", "100000");
  CHECK(resolve_config({}).reports_per_minute == 100000);
  for (const char* bad : {"100001", "-1", "ten", "10/min"}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_REPORTS_PER_MINUTE", bad);
    CHECK(contains(message, "STALLWATCH_REPORTS_PER_MINUTE=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "an integer from 0 to 100000"));
  }
}

TEST_CASE("STALLWATCH_LOG_FORMAT") {
  CleanEnvironment env;
  env.set("STALLWATCH_LOG_FORMAT", "json");
  CHECK(resolve_config({}).log_format == stallwatch::log_format::json);
  env.set("STALLWATCH_LOG_FORMAT", "text");
  Options options;
  options.log_format = stallwatch::log_format::json;
  CHECK(resolve_config(options).log_format == stallwatch::log_format::text);
  for (const char* bad : {"JSON", "yaml", ""}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_LOG_FORMAT", bad);
    CHECK(contains(message, "STALLWATCH_LOG_FORMAT=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "expected text or json"));
  }
}

TEST_CASE("STALLWATCH_METRICS_ADDR: what validation accepts is what the endpoint serves") {
  CleanEnvironment env;
  for (const char* good : {"off", "0.0.0.0:9464", "localhost:1", "metrics-host.example:65535", "127.0.0.1:0"}) {
    CAPTURE(good);
    env.set("STALLWATCH_METRICS_ADDR", good);
    CHECK(resolve_config({}).metrics_addr == good);
  }
  // Each refused at validation, naming why: IPv6 is never accepted and then dropped.
  const std::pair<const char*, const char*> bad[] = {
      {"", "the port is missing"},
      {"localhost", "the port is missing"},
      {":9464", "the host is missing"},
      {"host:", "the port must be a number from 0 to 65535"},
      {"host:65536", "the port must be a number from 0 to 65535"},
      {"host:80x", "the port must be a number from 0 to 65535"},
      {"host:-1", "the port must be a number from 0 to 65535"},
      {"[::1]:9464", "IPv6 addresses are not served"},
      {"[fe80::1%eth0]:80", "IPv6 addresses are not served"},
      {"::1:9464", "IPv6 addresses are not served"},
      {"my host:80", "the host must be an IPv4 address or a host name"},
      {"bad/host:80", "the host must be an IPv4 address or a host name"},
      {"OFF", "the port is missing"},
      // Before: "IPv6 addresses are not served (and need brackets)".
      {"http://127.0.0.1:9464", "a URL scheme (http://) is not accepted: give host:port alone"},
      {"https://metrics.example:443", "a URL scheme (http://) is not accepted"},
  };
  for (const auto& [value, why] : bad) {
    CAPTURE(value);
    const auto message = env_error(env, "STALLWATCH_METRICS_ADDR", value);
    CHECK(contains(message, "STALLWATCH_METRICS_ADDR=\"" + std::string(value) + "\""));
    CHECK(contains(message, std::string(stallwatch::config::metrics_addr_accepted)));
    CHECK(contains(message, why));
  }
}

TEST_CASE("parse_host_port: the one grammar of addresses") {
  std::string why;
  const auto any_port = stallwatch::config::parse_host_port("0.0.0.0:0", why);
  REQUIRE(any_port);
  CHECK(any_port->host == "0.0.0.0");
  CHECK(any_port->port == 0);
  const auto named = stallwatch::config::parse_host_port("metrics.example.com:9464", why);
  REQUIRE(named);
  CHECK(named->host == "metrics.example.com");
  CHECK(named->port == 9464);
  CHECK_FALSE(stallwatch::config::parse_host_port("127.0.0.1:9464s", why));
  CHECK(why == "the port must be a number from 0 to 65535");
  CHECK_FALSE(stallwatch::config::parse_host_port("[::1]:9464", why));
  CHECK(contains(why, "IPv6"));
}

TEST_CASE("STALLWATCH_NOT_APP") {
  CleanEnvironment env;
  CHECK(resolve_config({}).not_app.empty());
  env.set("STALLWATCH_NOT_APP", " libcurl, libsqlite3.so.0 ,/opt/vendor/include/,libc++");
  CHECK(resolve_config({}).not_app ==
        std::vector<std::string>{"libcurl", "libsqlite3.so.0", "/opt/vendor/include/", "libc++"});
  env.set("STALLWATCH_NOT_APP", "");
  CHECK(resolve_config({}).not_app.empty());
  for (const char* bad : {",", "libcurl,", "lib curl", "vendor/include", "libcurl@x", "/opt/my dir/", "a,,b"}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_NOT_APP", bad);
    CHECK(contains(message, "STALLWATCH_NOT_APP=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "a comma-separated list of module file names"));
    CHECK(contains(message, "absolute source path prefixes"));
  }
  Options o;
  o.not_app = "libfoo,/srv/include/";
  CHECK(resolve_config(o).not_app == std::vector<std::string>{"libfoo", "/srv/include/"});
  o.not_app = "lib foo";
  CHECK(contains(error_of(o), "Options::not_app = \"lib foo\" is not valid"));
  env.set("STALLWATCH_NOT_APP", "libbar");
  CHECK(resolve_config(o).not_app == std::vector<std::string>{"libbar"});
}

TEST_CASE("STALLWATCH_SCHED_BATCH") {
  CleanEnvironment env;
  Options options;
  options.sched_batch = true;
  CHECK(resolve_config(options).sched_batch);
  env.set("STALLWATCH_SCHED_BATCH", "1");
  CHECK(resolve_config({}).sched_batch);
  env.set("STALLWATCH_SCHED_BATCH", "0");
  CHECK_FALSE(resolve_config(options).sched_batch);
  for (const char* bad : {"batch", "on", "2", ""}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_SCHED_BATCH", bad);
    CHECK(contains(message, "STALLWATCH_SCHED_BATCH=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "expected 1 or 0"));
  }
}

TEST_CASE("STALLWATCH_STRICT") {
  CleanEnvironment env;
  env.set("STALLWATCH_STRICT", "1");
  CHECK(resolve_config({}).strict);
  env.set("STALLWATCH_STRICT", "0");
  Options options;
  options.strict = true;
  CHECK_FALSE(resolve_config(options).strict);
  for (const char* bad : {"true", "2", "on", ""}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_STRICT", bad);
    CHECK(contains(message, "STALLWATCH_STRICT=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "expected 1 or 0"));
  }
}

TEST_CASE("STALLWATCH_STACK_KB") {
  CleanEnvironment env;
  env.set("STALLWATCH_STACK_KB", "16");
  CHECK(resolve_config({}).stack_kb == 16);
  env.set("STALLWATCH_STACK_KB", "65536");
  CHECK(resolve_config({}).stack_kb == 65536);
  for (const char* bad : {"15", "65537", "64k", "0x40", "-64"}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_STACK_KB", bad);
    CHECK(contains(message, "STALLWATCH_STACK_KB=\"" + std::string(bad) + "\""));
    CHECK(contains(message, "an integer from 16 to 65536"));
  }
}

TEST_CASE("STALLWATCH_SIGNAL") {
  CleanEnvironment env;
  env.set("STALLWATCH_SIGNAL", "auto");
  CHECK(resolve_config({}).capture_signal == 0);
  Options explicit_signal;
  explicit_signal.capture_signal = SIGRTMIN + 1;
  CHECK(resolve_config(explicit_signal).capture_signal == 0);  // the environment's auto wins
  CHECK(resolve_config(explicit_signal).capture_signal_setting.empty());
  env.set("STALLWATCH_SIGNAL", std::to_string(SIGRTMIN + 2).c_str());
  CHECK(resolve_config({}).capture_signal == SIGRTMIN + 2);
  CHECK(resolve_config({}).capture_signal_setting == "STALLWATCH_SIGNAL");
  env.set("STALLWATCH_SIGNAL", "SIGRTMIN+6");
  CHECK(resolve_config({}).capture_signal == SIGRTMIN + 6);
  env.set("STALLWATCH_SIGNAL", "SIGRTMAX-1");
  CHECK(resolve_config({}).capture_signal == SIGRTMAX - 1);
  env.set("STALLWATCH_SIGNAL", "SIGRTMAX");
  CHECK(resolve_config({}).capture_signal == SIGRTMAX);
  const std::string below = std::to_string(SIGRTMIN - 1);
  const std::string above = std::to_string(SIGRTMAX + 1);
  for (const std::string& bad : {below, above, std::string("11"), std::string("SIGUSR1"), std::string("SIGRTMIN+99"),
                                 std::string("SIGRTMIN-1"), std::string("SIGRTMIN+"), std::string(""),
                                 std::string("AUTO"), std::string("auto ")}) {
    CAPTURE(bad);
    const auto message = env_error(env, "STALLWATCH_SIGNAL", bad.c_str());
    CHECK(contains(message, "STALLWATCH_SIGNAL=\"" + bad + "\""));
    CHECK(contains(message, "expected auto, or a real-time signal number from " + std::to_string(SIGRTMIN) +
                                " to " + std::to_string(SIGRTMAX)));
  }
}

TEST_CASE("environment overrides Options, which override the defaults") {
  CleanEnvironment env;
  Options options;
  options.threshold = std::chrono::milliseconds(20);
  options.reports_per_minute = 3;
  options.metrics_addr = "127.0.0.1:9999";
  options.stack_kb = 128;
  options.capture_signal = SIGRTMIN + 1;
  options.watchdog = false;
  const Config from_options = resolve_config(options);
  CHECK(from_options.threshold == std::chrono::milliseconds(20));
  CHECK(from_options.reports_per_minute == 3);
  CHECK(from_options.metrics_addr == "127.0.0.1:9999");
  CHECK(from_options.stack_kb == 128);
  CHECK(from_options.capture_signal == SIGRTMIN + 1);
  CHECK(from_options.capture_signal_setting == "Options::capture_signal");
  CHECK_FALSE(from_options.watchdog);

  env.set("STALLWATCH_THRESHOLD_MS", "70");
  env.set("STALLWATCH_REPORTS_PER_MINUTE", "5");
  env.set("STALLWATCH_METRICS_ADDR", "off");
  env.set("STALLWATCH_STACK_KB", "256");
  env.set("STALLWATCH_SIGNAL", "SIGRTMIN+3");
  env.set("STALLWATCH_WATCHDOG", "on");
  const Config from_env = resolve_config(options);
  CHECK(from_env.threshold == std::chrono::milliseconds(70));
  CHECK(from_env.reports_per_minute == 5);
  CHECK(from_env.metrics_addr == "off");
  CHECK(from_env.stack_kb == 256);
  CHECK(from_env.capture_signal == SIGRTMIN + 3);
  CHECK(from_env.watchdog);
}

TEST_CASE("the log sink is carried over") {
  CleanEnvironment env;
  std::string seen;
  Options options;
  options.log_sink = [&](std::string_view line) { seen = line; };
  const Config c = resolve_config(options);
  REQUIRE(c.log_sink);
  c.log_sink("hello");
  CHECK(seen == "hello");
}

TEST_CASE("invalid Options fields are errors naming the field") {
  CleanEnvironment env;
  {
    Options o;
    o.threshold = std::chrono::milliseconds(0);
    CHECK(error_of(o) == "stallwatch: Options::threshold = 0 ms is not valid: expected an integer from 1 to 600000 ms");
  }
  {
    Options o;
    o.reports_per_minute = -1;
    CHECK(error_of(o) ==
          "stallwatch: Options::reports_per_minute = -1 is not valid: expected an integer from 0 to 100000");
  }
  {
    Options o;
    o.stack_kb = 8;
    CHECK(error_of(o) == "stallwatch: Options::stack_kb = 8 KiB is not valid: expected an integer from 16 to 65536 KiB");
  }
  {
    Options o;
    o.stack_kb = static_cast<std::size_t>(-1);
    CHECK(contains(error_of(o), "Options::stack_kb = 18446744073709551615 KiB"));
  }
  {
    Options o;
    o.metrics_addr = "nowhere";
    CHECK(error_of(o) == "stallwatch: Options::metrics_addr = \"nowhere\" is not valid: expected " +
                             std::string(stallwatch::config::metrics_addr_accepted) + " (the port is missing)");
  }
  {
    Options o;
    o.capture_signal = SIGSEGV;
    const auto message = error_of(o);
    CHECK(contains(message, "Options::capture_signal = " + std::to_string(SIGSEGV)));
    CHECK(contains(message, "real-time signal"));
    CHECK(contains(message, "leave it unset for auto"));
  }
  {
    Options o;
    o.log_format = static_cast<stallwatch::log_format>(7);
    CHECK(contains(error_of(o), "Options::log_format = log_format(7) is not valid: expected text or json"));
  }
}

TEST_CASE("a valid variable replaces an invalid field; an invalid variable is an error whatever the field") {
  CleanEnvironment env;
  Options options;
  options.threshold = std::chrono::milliseconds(0);
  env.set("STALLWATCH_THRESHOLD_MS", "30");
  CHECK(resolve_config(options).threshold == std::chrono::milliseconds(30));
  options.threshold = std::chrono::milliseconds(30);
  env.set("STALLWATCH_THRESHOLD_MS", "30 ms");
  CHECK(contains(error_of(options), "STALLWATCH_THRESHOLD_MS=\"30 ms\""));
}

TEST_CASE("values in errors are escaped and bounded") {
  CleanEnvironment env;
  const auto message = env_error(env, "STALLWATCH_LOG_FORMAT", "a\"b\nc");
  CHECK(contains(message, "STALLWATCH_LOG_FORMAT=\"a\\\"b\\x0ac\""));
  const std::string long_value(500, 'x');
  const auto long_message = env_error(env, "STALLWATCH_LOG_FORMAT", long_value.c_str());
  CHECK(long_message.size() < 250);
  CHECK(contains(long_message, "...\""));
}
