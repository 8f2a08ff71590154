// The strict-mode canary: STALLWATCH_STRICT=1 promises that every probed
// blocking call ends the process, which holds only while libstallwatch-probes
// comes before libc. Checked as each loop starts.
#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <string>

#include "blocking/blocking_calls.hpp"
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
  // loaded before libc. (A sanitizer runtime may come before both; its
  // interceptors forward to the next definition, the probes'.)
  struct Order {
    const char* probes;
    const char* libc;
    int seen = 0;  // 1: probes first, 2: libc first
  } order{probes.dli_fname, libc.dli_fname};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* o = static_cast<Order*>(data);
        if (std::strcmp(info->dlpi_name, o->probes) == 0) o->seen = 1;
        else if (std::strcmp(info->dlpi_name, o->libc) == 0) o->seen = 2;
        return o->seen;
      },
      &order);
  return order.seen == 1;
}

void check_probes_canary(const Config& config) {
  if (!config.strict || probes_interposed()) return;
  const std::string message =
      "stallwatch: STALLWATCH_STRICT=1 but the blocking-call probes are not active: run with "
      "LD_PRELOAD=libstallwatch-probes.so (or link stallwatch-probes before libc), or set STALLWATCH_STRICT=0";
  emit::message(emit::process_wide, "config_error", message.substr(std::string("stallwatch: ").size()));
  throw config_error(message);
}

}  // namespace stallwatch::blocking
