// The strict-mode canary: STALLWATCH_STRICT=1 promises that every probed
// blocking call ends the process, which holds only while libstallwatch-probes
// comes before libc. Checked as each loop starts.
#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cstring>
#include <string>

#include "blocking/blocking_calls.hpp"
#include "blocking/call_stack.hpp"
#include "core/loop_record.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/errors.hpp"

namespace stallwatch::blocking {

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
  const bool own_shared = libstallwatch_shared_base() != nullptr &&
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
  // Said before the refusal is thrown: a program that lets it end the process still shows it.
  const core::OwnWait own_wait;
  emit::message_and_flush(emit::process_wide, "config_error", message.substr(std::string("stallwatch: ").size()));
  throw config_error(message);
}

void warn_if_probes_misordered() {
  static std::atomic<bool> said{false};
  if (dlsym(RTLD_DEFAULT, "stallwatch_probes_active") == nullptr || probes_interposed() || said.exchange(true)) {
    return;
  }
  emit::message(emit::process_wide, "probes_misordered",
                "libstallwatch-probes is loaded but not before libstallwatch and libc, so blocking calls (sleep, "
                "poll, select and others) are not flagged: link stallwatch-probes first (pkg-config --libs "
                "stallwatch-probes) or load it with LD_PRELOAD");
}

}  // namespace stallwatch::blocking
