// stallwatch/allow_blocking.hpp — permit known blocking calls on a loop.
//
// With libstallwatch-probes loaded (LD_PRELOAD or linked), a known blocking
// libc call made by a fiber on a loop is counted and logged, and ends the
// process in strict mode (STALLWATCH_STRICT=1). Two ways to permit the known
// exceptions:
//
// 1. In code, a scope: blocking calls the current fiber makes while an
//    allow_blocking object lives are not flagged. Other fibers of the loop
//    stay checked, also while this one is parked inside the scope.
//
//      void load_config_once() {
//        stallwatch::allow_blocking allow;  // read at start-up, tiny file
//        config = parse(read_file("/etc/service.conf"));
//      }
//
// 2. From the environment, read when a loop starts:
//
//      STALLWATCH_ALLOW="getaddrinfo@libcurl,fsync"
//
//    A comma-separated list of entries `function` (a probed function, see
//    docs/PROBES.md) or `function@module`, permitted only when some frame of
//    the calling stack lies in a module whose file name is `module` or begins
//    with `module.` (`libcurl` matches `libcurl.so.4`). `*@module` permits every
//    probed function from that module. A malformed list makes run() throw
//    stallwatch::config_error naming the variable, the value, the bad entry
//    and what is accepted.
//
// An allow_blocking object is created and destroyed on the same thread, in
// the same fiber (it is a scope, not a handle to pass around). Creating one
// off a loop is allowed and has no effect.
#pragma once

#include <cstdint>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

class STALLWATCH_EXPORT allow_blocking {
 public:
  // Permits blocking calls of the calling fiber until destruction. Nests.
  // Allocates when the first scope of a thread opens.
  allow_blocking();
  ~allow_blocking();
  allow_blocking(const allow_blocking&) = delete;
  allow_blocking& operator=(const allow_blocking&) = delete;

 private:
  std::uint64_t fiber_id_;
};

}  // namespace v1
}  // namespace stallwatch
