// stallwatch-demo: an HTTP/1.1 service with endpoints that stall its loop on
// purpose (/cpu, /block) and endpoints that cooperate (/sleep, /offload,
// /process), so the watchdog has something to catch. See docs/DEMO.md.
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <latch>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <stallwatch/config.hpp>
#include <stallwatch/in_process.hpp>
#include <stallwatch/loop.hpp>
#include <stallwatch/loop_handle.hpp>

#include "server.hpp"

namespace {

struct CommandLine {
  demo::ServerConfig server;
  int threads = 1;
};

constexpr char usage[] =
    "usage: stallwatch-demo [--port N] [--threads N] [--header-timeout-ms N] [--drain-timeout-ms N]\n"
    "  --port N               listen on 127.0.0.1:N (1..65535, default 8080)\n"
    "  --threads N            loops, each on its own thread and listener (1..256, default 1)\n"
    "  --header-timeout-ms N  close idle or slow clients after N ms (1..3600000, default 10000)\n"
    "  --drain-timeout-ms N   on SIGINT/SIGTERM, wait N ms for busy requests (0..3600000, default 10000)\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "stallwatch-demo: %s\n%s", message.c_str(), usage);
  std::exit(2);
}

long parse_number(std::string_view option, std::string_view text, long low, long high) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
    usage_error(std::string(option) + " '" + std::string(text) + "': expected an integer " + std::to_string(low) +
                ".." + std::to_string(high));
  }
  return value;
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  for (int i = 1; i < argc; ++i) {
    const std::string_view option = argv[i];
    if (option == "--help" || option == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error("unknown option or missing value: " + std::string(option));
    const std::string_view value = argv[++i];
    if (option == "--port") {
      cl.server.port = static_cast<std::uint16_t>(parse_number(option, value, 1, 65535));
    } else if (option == "--threads") {
      cl.threads = static_cast<int>(parse_number(option, value, 1, 256));
    } else if (option == "--header-timeout-ms") {
      cl.server.header_timeout = std::chrono::milliseconds(parse_number(option, value, 1, 3'600'000));
    } else if (option == "--drain-timeout-ms") {
      cl.server.drain_timeout = std::chrono::milliseconds(parse_number(option, value, 0, 3'600'000));
    } else {
      usage_error("unknown option: " + std::string(option));
    }
  }
  return cl;
}

std::string metrics_location() {
  try {
    const std::string addr = stallwatch::resolve_config(stallwatch::Options{}).metrics_addr;
    return addr == "off" ? "metrics off (STALLWATCH_METRICS_ADDR=off)" : "metrics at http://" + addr + "/metrics";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const CommandLine cl = parse_command_line(argc, argv);

  // Before any thread exists: the in_process children are forks of this
  // single-threaded snapshot.
  stallwatch::start_process_server();

  // SIGINT/SIGTERM are taken by sigwait below, never delivered to a loop.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::vector<int> stop_fds;
  for (int i = 0; i < cl.threads; ++i) stop_fds.push_back(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));

  // One loop per thread (stallwatch::run_loops); the loops report a start-up
  // failure here at once, not only when they have all ended.
  std::latch ready(cl.threads);
  std::mutex error_mutex;
  std::string first_error;
  std::atomic<int> loops_started{0};
  std::thread loops([&] {
    try {
      stallwatch::run_loops(static_cast<std::size_t>(cl.threads), [&](std::size_t i) {
        ++loops_started;
        bool counted = false;
        try {
          demo::serve(cl.server, stop_fds[i], [&] {
            counted = true;
            ready.count_down();
          });
        } catch (const std::exception& e) {
          std::lock_guard lock(error_mutex);
          if (first_error.empty()) first_error = e.what();
        }
        if (!counted) ready.count_down();
      });
    } catch (const std::exception& e) {  // before any loop started (a bad option), or a thread not started
      std::lock_guard lock(error_mutex);
      if (first_error.empty()) first_error = e.what();
      ready.count_down(cl.threads - loops_started.load());
    }
  });
  ready.wait();

  int exit_code = 0;
  {
    std::unique_lock lock(error_mutex);
    if (!first_error.empty()) {
      std::fprintf(stderr, "stallwatch-demo: %s\n", first_error.c_str());
      exit_code = 1;
    }
  }
  if (exit_code == 0) {
    std::printf("stallwatch-demo: listening on http://127.0.0.1:%u with %d loop%s; %s\n", cl.server.port,
                cl.threads, cl.threads == 1 ? "" : "s", metrics_location().c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::printf("stallwatch-demo: %s, draining connections\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
  }
  const std::uint64_t one = 1;
  for (int fd : stop_fds) {
    if (::write(fd, &one, sizeof one) < 0) std::perror("stallwatch-demo: eventfd write");
  }
  loops.join();
  if (exit_code == 0) {
    std::printf("stallwatch-demo: stopped\n");
  }
  return exit_code;
}
